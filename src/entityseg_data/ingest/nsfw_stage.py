"""The NSFW stage: score catalog images with CLIP (cached embeddings), store verdicts."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from entityseg_data.catalog import Catalog, ImageRecord
from entityseg_data.config.ingest import IngestConfig
from entityseg_data.errors import DataError
from entityseg_data.ingest.filters import Verdict
from entityseg_data.ingest.report import ProgressEvent, ProgressFn
from entityseg_data.workspace import Workspace

NSFW_BATCH = 256


def score_nsfw(
    ws: Workspace,
    cat: Catalog,
    config: IngestConfig,
    images: Sequence[ImageRecord],
    on_scored: Callable[[int, Verdict], None] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[str, int]:
    """Score ``images`` for NSFW, store the verdicts and set rejected images' status (only
    those still accepted); returns (model key, number scored)."""
    import numpy as np

    from entityseg_data.catalog.embeddings import EmbeddingCache, cache_path
    from entityseg_data.ingest.filters import nsfw
    from entityseg_data.ingest.filters.clip import load_clip

    clip = load_clip(
        config.clip_model,
        config.clip_pretrained,
        allow_random=config.allow_random_clip,
        device=config.clip_device,
    )
    cache = EmbeddingCache(cache_path(ws.cache_dir, clip.key))
    scored = 0
    try:
        score: Callable[[np.ndarray], np.ndarray]  # (N, D) image embeddings -> (N,) scores
        if config.nsfw_method == "probe":
            if not config.nsfw_probe:
                raise DataError("nsfw_method=probe needs ingest.nsfw_probe=/path/to/probe.npz")
            weight, bias = nsfw.load_probe(config.nsfw_probe)
            score = functools.partial(nsfw.probe_scores, weight=weight, bias=bias)
        else:
            nsfw_text = nsfw.embed_texts(clip, cache, list(config.nsfw_prompts))
            safe_text = nsfw.embed_texts(clip, cache, list(config.safe_prompts))
            scale = nsfw.logit_scale(clip)
            score = functools.partial(
                nsfw.zero_shot_scores, nsfw_text=nsfw_text, safe_text=safe_text, scale=scale
            )
        for i in range(0, len(images), NSFW_BATCH):
            batch = images[i : i + NSFW_BATCH]
            items = [(r.sha256, str(ws.image_path(r))) for r in batch]
            emb = nsfw.embed_images(clip, cache, items, batch_size=config.clip_batch_size)
            have = [r for r in batch if r.sha256 in emb]
            if not have:
                continue
            mat = np.stack([emb[r.sha256] for r in have])
            scores = score(mat)
            verdicts = nsfw.verdicts(
                scores,
                config.nsfw_threshold,
                method=config.nsfw_method,
                model_key=clip.key,
                random=clip.random,
            )
            with cat.transaction():
                for r, v in zip(have, verdicts):
                    cat.set_verdict(r.id, v.filter, v.verdict, v.reason, v.score)
                    if not v.passed:
                        cat.set_image_status(r.id, "rejected", only_if="accepted")
            for r, v in zip(have, verdicts):
                if on_scored is not None:
                    on_scored(r.id, v)
            scored += len(have)
            if progress is not None:
                progress(ProgressEvent("nsfw", "nsfw", "scored", len(have)))
    finally:
        cache.close()
    return clip.key, scored
