"""Synthetic pre-annotated images for the browser tests and the UI benchmark.

A scene of :func:`entityseg_data.synthetic.make_scene` is written as a JPEG into the workspace's
catalog, and its label map, with some entities cut into pieces (the over-segmentation a model
gives, that an annotator fixes with a polygon), becomes the image's stage-1 pre-annotation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

MODEL_VERSION = "scene-preannotation"


@dataclass(frozen=True)
class SceneImage:
    """One image added to a workspace: its id, size and the pre-annotation's label map
    (entity ``k`` of the prediction is ``label_map == k``; its Label Studio region id is
    ``f"{image_id}_{k}"``)."""

    image_id: int
    height: int
    width: int
    label_map: np.ndarray

    def region_id(self, k: int) -> str:
        return f"{self.image_id}_{k}"

    @property
    def n_regions(self) -> int:
        return int(self.label_map.max())


def scene_label_map(seed: int, height: int, width: int, n_regions: int) -> tuple[np.ndarray, Any]:
    """(rgb, label map with exactly ``n_regions`` ids 1..n): a synthetic scene whose largest
    entities are cut into vertical strips until there are ``n_regions`` of them (fewer scene
    entities than asked: cut more; more: the smallest are merged into their neighbour)."""
    from entityseg_data.synthetic import make_scene

    rgb, lm, _info = make_scene(seed, height, width, n_things=min(12, max(3, n_regions // 3)))
    lm = lm.astype(np.int32)
    ids, counts = np.unique(lm[lm > 0], return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    # too many: merge the smallest into label 0 first, then fill 0 from the nearest row pixel
    if len(order) > n_regions:
        keep = set(order[:n_regions].tolist())
        lm = np.where(np.isin(lm, list(keep)), lm, 0)
    out = np.zeros_like(lm)
    nxt = 1
    for k in order:
        if k not in set(np.unique(lm).tolist()):
            continue
        out[lm == k] = nxt
        nxt += 1
    # pixels left at 0 take the label to their left (then right) so every pixel is covered
    if (out == 0).any():
        for _ in range(2):
            idx = np.where(out > 0, np.arange(width)[None, :], 0)
            np.maximum.accumulate(idx, axis=1, out=idx)
            filled = np.take_along_axis(out, idx, axis=1)
            out = np.where(out == 0, filled, out)
            out = out[:, ::-1]
    # too few: cut the largest region into two vertical halves until there are enough
    while out.max() < n_regions:
        ids, counts = np.unique(out, return_counts=True)
        big = ids[np.argmax(counts)]
        _ys, xs = np.nonzero(out == big)
        mid = int(np.median(xs))
        piece = (out == big) & (np.arange(width)[None, :] >= mid)
        if not piece.any() or piece.sum() == counts.max():
            break
        out[piece] = out.max() + 1
    return rgb, out.astype(np.uint16)


def add_scene_image(
    ws: Any,
    *,
    seed: int,
    height: int,
    width: int,
    n_regions: int,
    label_map: np.ndarray | None = None,
    quality: int = 92,
) -> SceneImage:
    """Write a synthetic scene into the workspace (JPEG, catalog row ``accepted``) with a
    stage-1 pre-annotation of ``n_regions`` disjoint entities covering the image (or the given
    ``label_map``)."""
    from PIL import Image

    from entityseg_data.catalog.predictions import write_prediction
    from entityseg_data.masks import rle as rle_utils

    rgb, lm = scene_label_map(seed, height, width, n_regions)
    if label_map is not None:
        lm = label_map.astype(np.uint16)
    tmp = ws.images_dir / f"scene-{seed}-{height}x{width}.tmp.jpg"
    Image.fromarray(rgb).save(tmp, quality=quality)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    final = ws.images_dir / f"{sha}.jpg"
    tmp.rename(final)
    with ws.catalog() as cat:
        iid = cat.add_image(
            sha256=sha,
            source="scene",
            source_id=f"{seed}-{height}x{width}",
            width=width,
            height=height,
            file_path=ws.relpath(final),
            mime="image/jpeg",
            bytes=final.stat().st_size,
        )
        rles = rle_utils.label_map_to_rles(lm)
        payload = {
            "image_id": iid,
            "height": height,
            "width": width,
            "entities": [
                {"id": str(k), "segmentation": r, "score": 0.9} for k, r in sorted(rles.items())
            ],
        }
        write_prediction(ws.root, cat, payload, MODEL_VERSION)
    return SceneImage(image_id=iid, height=height, width=width, label_map=lm)
