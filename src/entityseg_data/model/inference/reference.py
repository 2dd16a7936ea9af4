"""A straightforward re-implementation of the official post-processing (REFERENCE.md 6.1 / 6.2).

Every query of every view is taken to full resolution in float32, exactly as the official
``inference_whole_views`` does. It needs ``Q x H x W x 4`` bytes several times over (tens of GB at
12 MP), so it is NOT used for prediction: it is the ground truth of the tests and the peer of the
benchmark. :mod:`.postprocess` computes the same result in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from entityseg_data.model.inference.views import ViewGeometry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ReferenceOutput:
    """Official outputs, rows sorted by descending class score.

    ``masks`` (Q, H, W) bool, mutually disjoint; ``class_scores`` (Q,) entity probabilities;
    ``scores`` (Q,) final scores (double sigmoid; 0 for an empty mask); ``query_index`` (Q,).
    """

    masks: np.ndarray
    class_scores: np.ndarray
    scores: np.ndarray
    query_index: np.ndarray


def reference_fused_probs(mask_logits: torch.Tensor, geometry: ViewGeometry) -> torch.Tensor:
    """(Q, H, W) float32 fused probabilities: the official upsample / cut / resize / sigmoid /
    average, crops first (in order) then the full view (view 0), with a ``1e-16`` count start.

    ``mask_logits``: (Q, V, Hp/4, Wp/4) torch float32, V in ``geometry`` order (view 0 = full).
    """
    import torch
    import torch.nn.functional as F

    q, v, h4, w4 = mask_logits.shape
    h, w = geometry.original_hw
    up = F.interpolate(mask_logits, size=(h4 * 4, w4 * 4), mode="bilinear", align_corners=False)
    num = torch.zeros((q, h, w), dtype=torch.float32)
    den = torch.full((h, w), 1e-16, dtype=torch.float32)
    probs = []
    for k in range(v):
        hv, wv = geometry.resized_hw[k]
        oh, ow = geometry.region_hw(k)
        m = up[:, k : k + 1, :hv, :wv]
        m = F.interpolate(m, size=(oh, ow), mode="bilinear", align_corners=False)[:, 0]
        probs.append(m.sigmoid())
    full = [k for k in range(v) if geometry.regions[k] == (0, 0, w, h)]
    first_full = full[0] if full else None
    order = [k for k in range(v) if k != first_full] + full[:1]
    for k in order:
        x0, y0, x1, y1 = geometry.regions[k]
        num[:, y0:y1, x0:x1] += probs[k]
        den[y0:y1, x0:x1] += 1
    return num / den


def reference_postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    geometry: ViewGeometry,
    *,
    mask2former: bool = False,
    topk: int = 100,
) -> ReferenceOutput:
    """The official CropFormer post-processing (or, with ``mask2former``, the single-view
    ``instance_inference_nonoverlap``: top-``topk`` queries, ``logit > 0``).

    ``class_logits`` (Q, 2) [entity, no-object]; ``mask_logits`` (Q, V, Hp/4, Wp/4).
    """
    import torch

    scores_q = class_logits.float().softmax(-1)[:, 0]
    if mask2former:
        k = min(topk, scores_q.shape[0])
        keep = scores_q.topk(k, sorted=False).indices
        scores_q, mask_logits = scores_q[keep], mask_logits[keep]
        fused = reference_fused_probs(mask_logits, geometry)  # single view: sigmoid(logit)
        binary = reference_fused_logits(mask_logits, geometry) > 0
        index = keep
    else:
        fused = reference_fused_probs(mask_logits, geometry)
        binary = fused > 0.5
        index = torch.arange(scores_q.shape[0])
    h, w = geometry.original_hw
    id_map = torch.zeros((h, w), dtype=torch.int64)
    asc = torch.sort(scores_q, stable=True).indices
    for i in asc.tolist():
        id_map[binary[i]] = i + 1
    desc = asc.flip(0)
    masks = torch.stack([id_map == i + 1 for i in desc.tolist()]) if len(desc) else None
    assert masks is not None  # Q >= 1 (ModelConfig)
    fd = fused[desc]
    msum = masks.float().flatten(1).sum(1)
    sig = (fd.sigmoid() * masks.float()).flatten(1).sum(1)
    final = scores_q[desc] * sig / (msum + 1e-6)
    return ReferenceOutput(
        masks=masks.numpy(),
        class_scores=scores_q[desc].numpy(),
        scores=final.numpy(),
        query_index=index[desc].numpy(),
    )


def reference_fused_logits(mask_logits: torch.Tensor, geometry: ViewGeometry) -> torch.Tensor:
    """(Q, H, W) mask logits of a single full view at the original size (Mask2Former's
    ``sem_seg_postprocess``: upsample to padded, cut, resize)."""
    import torch.nn.functional as F

    _, _, h4, w4 = mask_logits.shape
    hv, wv = geometry.resized_hw[0]
    up = F.interpolate(mask_logits[:, :1], size=(h4 * 4, w4 * 4), mode="bilinear")
    up = up[:, :, :hv, :wv]
    return F.interpolate(up, size=geometry.original_hw, mode="bilinear", align_corners=False)[:, 0]
