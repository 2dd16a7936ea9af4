"""Ingest settings (sources, downloader, normalisation, de-duplication, filters)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IngestConfig:
    """How images enter the workspace.

    Sizes are in pixels, byte limits in bytes, times in seconds.
    """

    min_side: int = 0
    max_aspect: float = 0.0
    max_pixels: int = 178_956_970
    max_bytes: int = 100_000_000
    workers: int = 8
    per_host_rps: float = 10.0
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    max_redirects: int = 5
    phash_threshold: int = 6
    nsfw_enabled: bool = True
    nsfw_threshold: float = 0.5
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    allow_random_clip: bool = False
