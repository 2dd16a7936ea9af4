"""Workspaces for the selection tests: images with known prediction confidence, covered area,
source and CLIP embedding (written into the workspace's embedding cache as the NSFW stage
would), so the expected choice is known."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spec:
    source: str
    score: float | None  # mean entity score of the prediction (None: no prediction)
    rows: int  # rows of the 16x16 image covered by the 2 predicted entities
    embedding: tuple[float, ...] | None  # None: not in the cache


def populate(ws, specs, *, model_version="test:model"):
    """Add one 16x16 PNG per spec with its prediction and cached embedding; returns ids."""
    from PIL import Image

    from entityseg_data.annotation.select import embedding_file
    from entityseg_data.catalog.embeddings import EmbeddingCache
    from entityseg_data.catalog.predictions import write_prediction
    from entityseg_data.masks.types import ImageMasks

    cfg = ws.config()
    ids, vecs = [], {}
    ws.images_dir.mkdir(parents=True, exist_ok=True)
    with ws.catalog() as cat:
        start = cat.count_images()
        for k, spec in enumerate(specs):
            arr = np.full((16, 16, 3), (start + k) % 256, np.uint8)
            arr[0, 0] = [(start + k) // 256, 7, 9]
            path = ws.images_dir / f"tmp{start + k}.png"
            Image.fromarray(arr).save(path)
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            final = ws.images_dir / f"{sha}.png"
            path.rename(final)
            iid = cat.add_image(
                sha256=sha,
                source=spec.source,
                source_id=str(start + k),
                width=16,
                height=16,
                file_path=ws.relpath(final),
                mime="image/png",
                bytes=final.stat().st_size,
            )
            ids.append(iid)
            if spec.score is not None:
                lm = np.zeros((16, 16), np.int32)
                half = max(1, spec.rows // 2)
                lm[:half] = 1
                lm[half : spec.rows] = 2
                present = [v for v in (1, 2) if (lm == v).any()]
                m = ImageMasks.from_label_map(
                    lm, image_id=iid, ids=present, scores=[spec.score] * len(present)
                )
                write_prediction(ws.root, cat, m, model_version)
            if spec.embedding is not None:
                v = np.asarray(spec.embedding, np.float32)
                vecs[sha] = v / np.linalg.norm(v)
    if vecs:
        with EmbeddingCache(embedding_file(ws, cfg.ingest)) as cache:
            cache.put_images(vecs)
    return ids


def cluster_specs(seed=0, sizes=(12, 6, 3, 2, 1), dim=8, spread=0.03, sources=("coco", "ade20k")):
    """Specs on unit-sphere clusters of unequal sizes (scores and cover vary); with the labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim))
    specs, labels = [], []
    for c, n in enumerate(sizes):
        for _ in range(n):
            v = centers[c] / np.linalg.norm(centers[c]) + spread * rng.normal(size=dim)
            specs.append(
                Spec(
                    source=sources[len(specs) % len(sources)],
                    score=float(rng.uniform(0.3, 0.95)),
                    rows=int(rng.integers(2, 16)),
                    embedding=tuple(float(x) for x in v),
                )
            )
            labels.append(c)
    return specs, labels
