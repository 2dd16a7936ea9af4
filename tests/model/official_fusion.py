"""The official post-processing (oracle README 3.4), recomputed for the parity tests only (the
toolkit's own fusion lives in model/inference)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def official_fusion(logits, masks, view_hw, crops, out_hw):
    """logits (Q, 2), masks (Q, V, h, w) -> (final masks (Q, H, W) bool in descending score
    order, final scores (Q,), fused probabilities (Q, H, W))."""
    scores = logits.softmax(-1)[:, 0]
    hp, wp = masks.shape[-2] * 4, masks.shape[-1] * 4
    up = F.interpolate(masks, size=(hp, wp), mode="bilinear", align_corners=False)
    H, W = out_hw
    num = torch.zeros(masks.shape[0], H, W)
    den = torch.full((H, W), 1e-16)
    probs = []
    for v in range(masks.shape[1]):
        h, w = view_hw[v]
        size = (
            (H, W)
            if v == 0
            else (crops[v - 1][3] - crops[v - 1][1], crops[v - 1][2] - crops[v - 1][0])
        )
        p = F.interpolate(up[None, :, v, :h, :w], size=size, mode="bilinear", align_corners=False)
        probs.append(p[0].sigmoid())
    for (x0, y0, x1, y1), p in zip(crops, probs[1:]):
        num[:, y0:y1, x0:x1] += p
        den[y0:y1, x0:x1] += 1
    num += probs[0]
    den += 1
    fused = num / den
    binary = fused > 0.5
    order = torch.argsort(scores)  # ascending
    ids = torch.zeros(H, W, dtype=torch.long)
    for q in order.tolist():
        ids[binary[q]] = q + 1
    desc = torch.argsort(scores, descending=True)
    final = torch.stack([ids == q + 1 for q in desc.tolist()])
    fm = final.float()
    mask_scores = (fused[desc].sigmoid() * fm).flatten(1).sum(1) / (fm.flatten(1).sum(1) + 1e-6)
    return final, scores[desc] * mask_scores, fused


def unpack_masks(npz) -> np.ndarray:
    q = npz["final_scores"].shape[0]
    h, w = (int(v) for v in npz["original_hw"])
    return np.unpackbits(npz["final_masks_packbits"], count=q * h * w).reshape(q, h, w).astype(bool)
