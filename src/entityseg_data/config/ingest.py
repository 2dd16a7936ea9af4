"""Ingest settings (sources, downloader, normalisation, de-duplication, filters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from entityseg_data.config_fields import Checked, bounded

# a MIME type: type/subtype (lower case)
MIME_PATTERN = r"[a-z0-9][a-z0-9.+-]*/[a-z0-9*][a-z0-9.+*-]*"

DEFAULT_NSFW_PROMPTS: tuple[str, ...] = (
    "a photo of a naked person",
    "a nude photo",
    "pornography",
    "an explicit sexual photo",
    "a photo of genitals",
    "a topless woman",
    "a photo of a person in lingerie posing provocatively",
    "graphic gore with blood and wounds",
)
DEFAULT_SAFE_PROMPTS: tuple[str, ...] = (
    "a photo of a street",
    "a photo of a room",
    "a photo of people wearing clothes",
    "a landscape photo",
    "a photo of animals",
    "a photo of food",
    "a photo of objects on a table",
    "a photo of a person in swimwear at the beach",
    "a cartoon drawing",
    "a photo of a building",
)


@dataclass(frozen=True)
class IngestConfig(Checked):
    """How images enter the workspace.

    Sizes are in pixels, byte limits in bytes, times in seconds, rates in requests per second.
    A value of 0 disables a limit unless stated otherwise. Values are checked when the config
    is built: an error names the key, the value and the allowed range.

    Fields:
        min_side: reject images whose upright short side is below this (resolution filter).
        max_aspect: reject images whose long/short side ratio exceeds this (aspect filter).
        max_pixels: decompression-bomb limit: images with more pixels are never decoded.
        max_bytes: largest accepted original (download or local file).
        limit: at most this many new items per source in one run.
        workers: concurrent fetch/decode threads.
        per_host_rps: requests per second to one host (token bucket, shared by all workers).
        connect_timeout / timeout: connect timeout and read timeout per socket read; a whole
            download is also cut after ``total_timeout``.
        retries / backoff: retries of transient failures (timeouts, resets, 429, 5xx) with
            exponential backoff ``backoff * 2**attempt`` (plus jitter; Retry-After honoured).
        max_redirects: redirects followed per URL (loops are detected and reported).
        allowed_mime: accepted image content types (``application/octet-stream`` and a missing
            header fall through to the magic-number check).
        user_agent: HTTP User-Agent.
        retry_failed: on a rerun, fetch again items that failed transiently.
        phash_threshold: near-duplicate when the pHash Hamming distance is <= this (-1: off).
        near_duplicate_keep: ``first`` keeps the image already in the catalog; ``largest``
            replaces it by a bigger near-duplicate while it has no annotations.
        prefilter: use sizes/tags declared by a source (LAION, Unsplash) to skip downloads.
        laion_reject_tags: LAION ``NSFW`` column values rejected before download.
        laion_max_punsafe: reject before download when LAION-5B's ``punsafe`` >= this (0: off).
        normalized_quality: JPEG quality of normalised copies of JPEG originals (others: PNG).
        domain_tags: extra domain tags recorded on every image of the run.
        nsfw_enabled / nsfw_threshold: reject when the NSFW score is >= the threshold.
        nsfw_method: ``zero_shot`` (prompts) or ``probe`` (a linear probe over embeddings).
        nsfw_probe: ``.npz`` with ``weight`` (D,) and ``bias`` () for ``probe``.
        nsfw_prompts / safe_prompts: zero-shot prompt sets; score = softmax mass of the NSFW ones.
        clip_model / clip_pretrained: open_clip model name (or ``local-dir:DIR``) and pretrained
            tag or local weights file.
        allow_random_clip: allow an untrained CLIP when ``clip_pretrained`` is empty (demos and
            tests only: the scores are meaningless and are labelled so).
        clip_device / clip_batch_size: where and how many images per CLIP forward pass.
        iconic_enabled / iconic_threshold: the optional iconic-image heuristic (see
            ``filters/iconic.py``); reject when the iconic score is >= the threshold.
    """

    min_side: int = bounded(0, ge=0)
    max_aspect: float = bounded(0.0, ge=1, off=0)
    max_pixels: int = bounded(178_956_970, ge=0)
    max_bytes: int = bounded(100_000_000, ge=0)
    limit: int = bounded(0, ge=0)
    workers: int = bounded(8, ge=1)
    per_host_rps: float = bounded(10.0, ge=0)
    connect_timeout: float = bounded(10.0, gt=0)
    timeout: float = bounded(30.0, gt=0)
    total_timeout: float = bounded(300.0, ge=0)
    retries: int = bounded(3, ge=0)
    backoff: float = bounded(0.5, ge=0)
    max_redirects: int = bounded(5, ge=0)
    allowed_mime: tuple[str, ...] = bounded(
        (
            "image/jpeg",
            "image/png",
            "image/webp",
            "image/tiff",
            "image/bmp",
            "image/gif",
            "image/avif",
        ),
        pattern=MIME_PATTERN,
        nonempty=True,
        text="a non-empty list of MIME types such as image/jpeg",
    )
    user_agent: str = "entityseg-data/0.1 (dataset ingest; +https://github.com/entityseg-data)"
    retry_failed: bool = True
    phash_threshold: int = bounded(6, ge=0, le=64, off=-1)
    near_duplicate_keep: Literal["first", "largest"] = "first"
    prefilter: bool = True
    laion_reject_tags: tuple[str, ...] = ("NSFW",)
    laion_max_punsafe: float = bounded(0.0, ge=0, le=1)
    normalized_quality: int = bounded(95, ge=1, le=100)
    domain_tags: tuple[str, ...] = ()
    nsfw_enabled: bool = True
    nsfw_threshold: float = bounded(0.5, ge=0, le=1)
    nsfw_method: Literal["zero_shot", "probe"] = "zero_shot"
    nsfw_probe: str = ""
    nsfw_prompts: tuple[str, ...] = DEFAULT_NSFW_PROMPTS
    safe_prompts: tuple[str, ...] = DEFAULT_SAFE_PROMPTS
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    allow_random_clip: bool = False
    clip_device: str = "cpu"
    clip_batch_size: int = bounded(16, ge=1)
    iconic_enabled: bool = False
    iconic_threshold: float = bounded(0.6, ge=0, le=1)
