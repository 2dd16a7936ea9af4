"""Deterministic random COCO GT / results for the evaluation tests (small images)."""

from __future__ import annotations

import math

import numpy as np

from entityseg_data.masks import rle as rle_utils


def _half_diag(h: int, w: int, ratio: float = 0.02) -> bool:
    """True when ratio x diagonal is (nearly) a half-integer: the official tool (Python round
    of a double) and faster-coco-eval (float32 ratio) round those differently."""
    v = ratio * math.sqrt(h * h + w * w)
    return abs(v - math.floor(v) - 0.5) < 1e-4


def _blob(rng, h, w, border=False, tiny=False):
    m = np.zeros((h, w), np.uint8)
    if tiny:
        y, x = rng.integers(0, h), rng.integers(0, w)
        m[y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = 1
        return m
    for _ in range(rng.integers(1, 4)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = y0 + rng.integers(2, max(3, h // 2)), x0 + rng.integers(2, max(3, w // 2))
        if border:
            y0 = 0 if rng.random() < 0.5 else y0
            x1 = w if rng.random() < 0.5 else x1
        m[y0:y1, x0:x1] = 1
    if rng.random() < 0.5:  # holes / ragged edges
        m &= (rng.random((h, w)) > 0.05).astype(np.uint8)
    return m


def make_dataset(seed: int, n_images: int = 12, overlapping: bool = True, many: bool = False):
    """(gt dict, results list). Covers: crowd GT, images without GT, images without predictions,
    tied scores, masks touching the border, tiny masks inside their band, >100 predictions."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    aid = 1
    for i in range(n_images):
        while True:
            h, w = int(rng.integers(20, 150)), int(rng.integers(20, 150))
            if not _half_diag(h, w):
                break
        iid = 1000 + 7 * i
        images.append({"id": iid, "height": h, "width": w, "file_name": f"img{iid}.jpg"})
        kind = i % 6
        # ground truth: disjoint label map (+ crowd)
        n_gt = 0 if kind == 1 else int(rng.integers(1, 9))
        lm = np.zeros((h, w), np.int32)
        for k in range(n_gt):
            m = _blob(rng, h, w, border=rng.random() < 0.4, tiny=rng.random() < 0.15)
            lm[m > 0] = k + 1
        gt_masks = [(lm == k + 1).astype(np.uint8) for k in range(n_gt)]
        gt_masks = [m for m in gt_masks if m.any()]
        for _j, m in enumerate(gt_masks):
            rle = rle_utils.encode(m)
            crowd = int(rng.random() < 0.12)
            area = float(rle_utils.area(rle))
            anns.append(
                {
                    "id": aid,
                    "image_id": iid,
                    "category_id": int(rng.integers(1, 5)),
                    "segmentation": rle,
                    "area": area,
                    "bbox": rle_utils.bbox(rle),
                    "iscrowd": crowd,
                }
            )
            aid += 1
        # predictions
        if kind == 2:
            continue
        n_pred = int(rng.integers(101, 140)) if (many and kind == 3) else int(rng.integers(0, 25))
        preds = []
        if not overlapping:
            plm = np.zeros((h, w), np.int32)
            for k in range(n_pred):
                src = gt_masks[k % len(gt_masks)] if gt_masks and rng.random() < 0.6 else None
                m = _blob(rng, h, w, tiny=rng.random() < 0.2) if src is None else src.copy()
                if src is not None:  # perturb
                    m = np.roll(m, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
                plm[m > 0] = k + 1
            preds = [(plm == k + 1).astype(np.uint8) for k in range(n_pred)]
            preds = [m for m in preds if m.any()]
        else:
            for _ in range(n_pred):
                if gt_masks and rng.random() < 0.6:
                    m = gt_masks[int(rng.integers(0, len(gt_masks)))].copy()
                    m = np.roll(m, int(rng.integers(-4, 5)), axis=int(rng.integers(0, 2)))
                    if rng.random() < 0.5:
                        m |= _blob(rng, h, w, tiny=True)
                else:
                    m = _blob(rng, h, w, border=rng.random() < 0.3, tiny=rng.random() < 0.2)
                preds.append(m)
        for m in preds:
            score = float(rng.choice([0.5, 0.9])) if rng.random() < 0.4 else float(rng.random())
            results.append(
                {
                    "image_id": iid,
                    "category_id": 1,
                    "segmentation": rle_utils.encode(m),
                    "score": score,
                }
            )
    gt = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 5)],
    }
    return gt, results
