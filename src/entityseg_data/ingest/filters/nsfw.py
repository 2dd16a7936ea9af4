"""NSFW filter over open_clip image embeddings.

Two scorers, both returning a probability-like score in [0, 1] per image:

* ``zero_shot``: softmax over cosine similarities (times the model's logit scale) to the NSFW
  prompts and the safe prompts; the score is the probability mass of the NSFW prompts;
* ``probe``: ``sigmoid(embedding @ weight + bias)``, a linear probe trained elsewhere on the same
  embeddings (``.npz`` with ``weight`` (D,) and ``bias`` ()).

Embeddings are computed once per (model, weights, image sha256) and cached
(:class:`EmbeddingCache`), so changing the threshold, the prompts or the probe costs no image
forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from entityseg_data.catalog.embeddings import EmbeddingCache
from entityseg_data.errors import ConfigError, DataError
from entityseg_data.ingest.filters.base import Verdict
from entityseg_data.ingest.filters.clip import ClipModel

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)
NAME = "nsfw"


def load_image_for_clip(path: str | Path, min_side: int = 448) -> Image.Image:
    """Open an image file upright in RGB with the toolkit's one decoder, cheaply reduced (JPEG
    draft) to a short side of at least ``min_side`` pixels. Raises DataError naming the file."""
    from entityseg_data.io.images import open_upright

    return open_upright(path, draft_min_side=min_side)


def embed_images(
    clip: ClipModel,
    cache: EmbeddingCache,
    items: Sequence[tuple[str, str]],
    *,
    batch_size: int = 16,
    progress: Callable[[int], object] | None = None,
) -> dict[str, np.ndarray]:
    """L2-normalised image embeddings (D,) for ``items`` = [(sha256, file path)], from the cache
    when present, computed in batches (and cached) otherwise. Unreadable files are skipped
    (logged) and absent from the result."""
    import torch

    wanted = list(dict.fromkeys(items))
    out = cache.get_images([s for s, _ in wanted])
    todo = [(s, p) for s, p in wanted if s not in out]
    if progress and len(out):
        progress(len(wanted) - len(todo))
    for i in range(0, len(todo), max(1, batch_size)):
        batch = todo[i : i + batch_size]
        tensors, keys = [], []
        for sha, path in batch:
            try:
                tensors.append(clip.preprocess(load_image_for_clip(path)))
                keys.append(sha)
            except (OSError, ValueError, DataError) as exc:
                log.warning("nsfw: cannot read %s: %s", path, exc)
        if tensors:
            with torch.inference_mode():
                feats = clip.model.encode_image(torch.stack(tensors).to(clip.device))
                feats = torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()
            new = {k: feats[j] for j, k in enumerate(keys)}
            cache.put_images(new)
            out.update(new)
        if progress:
            progress(len(batch))
    return out


def embed_texts(clip: ClipModel, cache: EmbeddingCache, prompts: Sequence[str]) -> np.ndarray:
    """(P, D) L2-normalised text embeddings (cached per prompt)."""
    import torch

    have = cache.get_texts(prompts)
    missing = [p for p in prompts if p not in have]
    if missing:
        with torch.inference_mode():
            feats = clip.model.encode_text(clip.tokenizer(missing).to(clip.device))
            feats = torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()
        new = dict(zip(missing, feats))
        cache.put_texts(new)
        have.update(new)
    return np.stack([have[p] for p in prompts])


def logit_scale(clip: ClipModel) -> float:
    scale = getattr(clip.model, "logit_scale", None)
    return float(scale.exp().item()) if scale is not None else 100.0


def zero_shot_scores(
    image_emb: np.ndarray, nsfw_text: np.ndarray, safe_text: np.ndarray, scale: float
) -> np.ndarray:
    """(N,) NSFW probability mass of (N, D) image embeddings against (P, D) NSFW and (Q, D) safe
    prompt embeddings (all L2-normalised): ``softmax(scale * cos)`` summed over the NSFW ones."""
    if len(nsfw_text) == 0 or len(safe_text) == 0:
        raise ConfigError("zero-shot NSFW needs at least one NSFW and one safe prompt")
    logits = scale * image_emb @ np.concatenate([nsfw_text, safe_text]).T  # (N, P+Q)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return p[:, : len(nsfw_text)].sum(axis=1)


def load_probe(path: str | Path) -> tuple[np.ndarray, float]:
    """``(weight (D,), bias)`` of a linear probe saved with ``np.savez(path, weight=, bias=)``."""
    try:
        with np.load(path) as data:
            weight = np.asarray(data["weight"], np.float32).reshape(-1)
            bias = float(np.asarray(data["bias"]).reshape(()))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"{path}: not a linear-probe .npz with 'weight' and 'bias': {exc}"
        ) from None
    return weight, bias


def probe_scores(image_emb: np.ndarray, weight: np.ndarray, bias: float) -> np.ndarray:
    """(N,) ``sigmoid(emb @ weight + bias)``; raises DataError on a dimension mismatch."""
    if image_emb.shape[1] != weight.shape[0]:
        raise DataError(
            f"linear probe expects {weight.shape[0]}-d embeddings, the CLIP gives "
            f"{image_emb.shape[1]}-d: the probe was trained for another model"
        )
    return 1.0 / (1.0 + np.exp(-(image_emb @ weight + bias)))


def verdicts(
    scores: np.ndarray, threshold: float, *, method: str, model_key: str, random: bool
) -> list[Verdict]:
    """Reject when score >= threshold. Reasons name the model; untrained models say so."""
    tag = f"{method}, {model_key}"
    if random:
        tag = f"UNTRAINED CLIP, meaningless: {tag}"
    out = []
    for s in scores:
        s = float(s)
        if s >= threshold:
            out.append(Verdict(NAME, False, f"nsfw score {s:.3f} >= {threshold} ({tag})", s))
        else:
            out.append(Verdict(NAME, True, f"nsfw score {s:.3f} < {threshold} ({tag})", s))
    return out
