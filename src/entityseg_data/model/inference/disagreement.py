"""How much the full-image view and the crop views of CropFormer disagree about each entity.

CropFormer segments the full image and overlapping crops and fuses them; where the views
disagree about a mask, the fused mask is a compromise, a sign of an uncertain entity (selection
uses it to choose what to annotate next: docs/selection.md). Per kept query, at the mask logits'
resolution (1/4 of each view's input):

* each crop view's mask: ``logit > 0`` over the crop's grid;
* the full view's mask sampled (nearest) at the centre of each crop-grid cell, mapped through
  original pixel coordinates;
* disagreement = ``1 - sum(intersections) / sum(unions)`` over the crop views (0 when neither
  view sees the query anywhere in the crops).

No fusion is involved and nothing is computed at the original resolution: one boolean compare
of ``(K, h/4, w/4)`` per crop view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from entityseg_data.model.inference.views import ViewGeometry

if TYPE_CHECKING:
    import torch


def _grid(n_out: int, lo: int, hi: int, n_full: int, extent: int) -> np.ndarray:
    """Full-view grid index (nearest) of the centres of ``n_out`` cells spanning [lo, hi) in
    original pixels, on a full-view grid of ``n_full`` cells spanning [0, extent)."""
    centres = lo + (np.arange(n_out) + 0.5) * (hi - lo) / n_out
    return np.clip(np.floor(centres * n_full / extent), 0, n_full - 1).astype(np.int64)


def view_disagreement(
    mask_logits: torch.Tensor, geometry: ViewGeometry, queries: Sequence[int] | np.ndarray
) -> np.ndarray | None:
    """(K,) float32 disagreement in [0, 1] of the ``queries`` (indices into ``mask_logits``).

    ``mask_logits``: (Q, V, Hp/4, Wp/4) torch tensor of the views in ``geometry`` order (one
    view covering the whole image, the others crops). Returns None when there is no full view
    or no crop view (Mask2Former, ``full_only``, ``crops_only``)."""
    import torch

    h, w = geometry.original_hw
    full = [v for v in range(geometry.num_views) if geometry.regions[v] == (0, 0, w, h)]
    crops = [v for v in range(geometry.num_views) if v not in full]
    if not full or not crops:
        return None
    q = torch.as_tensor(np.asarray(queries, dtype=np.int64), device=mask_logits.device)
    if q.numel() == 0:
        return np.zeros(0, dtype=np.float32)
    f = full[0]
    h4, w4 = int(mask_logits.shape[-2]), int(mask_logits.shape[-1])

    def cells(v: int) -> tuple[int, int]:
        hv, wv = geometry.resized_hw[v]
        return max(1, min(h4, round(hv / 4))), max(1, min(w4, round(wv / 4)))

    fr, fc = cells(f)
    full_mask = mask_logits[q, f, :fr, :fc] > 0  # (K, fr, fc)
    inter = torch.zeros(int(q.numel()), dtype=torch.float64, device=mask_logits.device)
    union = torch.zeros_like(inter)
    for v in crops:
        x0, y0, x1, y1 = geometry.regions[v]
        cr, cc = cells(v)
        crop_mask = mask_logits[q, v, :cr, :cc] > 0  # (K, cr, cc)
        rows = torch.as_tensor(_grid(cr, y0, y1, fr, h), device=mask_logits.device)
        cols = torch.as_tensor(_grid(cc, x0, x1, fc, w), device=mask_logits.device)
        sampled = full_mask[:, rows][:, :, cols]  # (K, cr, cc)
        inter += (crop_mask & sampled).flatten(1).sum(1).double()
        union += (crop_mask | sampled).flatten(1).sum(1).double()
    out = torch.where(union > 0, 1.0 - inter / union.clamp(min=1), torch.zeros_like(union))
    return out.cpu().numpy().astype(np.float32)


__all__ = ["view_disagreement"]
