"""Separable bilinear interpolation that can be evaluated on any window of the output.

``F.interpolate(x, size, mode="bilinear", align_corners=False)`` computes every output pixel
from its two nearest source rows and columns: ``out = (x00*w0 + x01*w1)*h0 + (x10*w0 + x11*w1)*h1``
(width first, then height, as PyTorch's CPU kernel does). Keeping the per-axis index and weight
tables lets the post-processing evaluate exactly those values on a tile, for a few queries at a
time, instead of materialising ``Q x H x W`` maps. :func:`compose_axes` folds two such axes
(the x4 upsampling of the mask logits, then the resize to the original image) into one small
dense matrix per output window, which the fusion applies as two matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Axis:
    """Index/weight table of one axis: ``out[i] = src[i0[i]] * w0[i] + src[i1[i]] * w1[i]``."""

    i0: np.ndarray  # (out,) int64
    i1: np.ndarray  # (out,) int64
    w0: np.ndarray  # (out,) float32
    w1: np.ndarray  # (out,) float32
    #: ``out[i] = src[i]`` for every ``i`` (same size: scale 1, every weight 1 and 0)
    identity: bool = False

    def window(self, start: int, stop: int) -> tuple[int, int]:
        """Source range ``[lo, hi)`` that outputs ``[start, stop)`` read."""
        return int(self.i0[start]), int(self.i1[stop - 1]) + 1


def linear_axis(in_size: int, out_size: int) -> Axis:
    """PyTorch's ``align_corners=False`` source indices and weights (float32 arithmetic):
    ``src = max(scale * (i + 0.5) - 0.5, 0)``, ``scale = in / out``."""
    f = np.float32
    scale = f(in_size) / f(out_size)
    dst = np.arange(out_size, dtype=np.float32)
    src = scale * (dst + f(0.5)) - f(0.5)
    src = np.maximum(src, f(0.0)).astype(np.float32)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(np.float32), f(0.0), f(1.0)).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1).astype(np.int64)
    return Axis(
        i0=i0, i1=i1, w0=(f(1.0) - lam).astype(np.float32), w1=lam, identity=in_size == out_size
    )


def apply_cols(x: torch.Tensor, axis: Axis, start: int, stop: int, offset: int) -> torch.Tensor:
    """Interpolate the last dim of ``x`` (torch, ``x[..., k]`` = source column ``k + offset``)
    for output columns ``[start, stop)``. An identity axis returns the columns themselves (a view
    of ``x``: the weights 1 and 0 give the same values, finite ``x``)."""
    import torch

    if axis.identity:
        return x[..., start - offset : stop - offset]
    dev = x.device
    shape = (*x.shape[:-1], stop - start)
    # torch.gather is ~7x faster than index_select along the last dim on CPU
    i0 = torch.from_numpy(axis.i0[start:stop] - offset).to(dev).expand(shape)
    i1 = torch.from_numpy(axis.i1[start:stop] - offset).to(dev).expand(shape)
    w0 = torch.from_numpy(axis.w0[start:stop]).to(dev)
    w1 = torch.from_numpy(axis.w1[start:stop]).to(dev)
    out = torch.gather(x, -1, i0).mul_(w0)
    return out.add_(torch.gather(x, -1, i1).mul_(w1))


def apply_rows(x: torch.Tensor, axis: Axis, start: int, stop: int, offset: int) -> torch.Tensor:
    """Interpolate dim -2 of ``x`` for output rows ``[start, stop)`` (source row ``k + offset``
    is ``x[..., k, :]``). An identity axis returns the rows themselves (a view of ``x``)."""
    import torch

    if axis.identity:
        return x[..., start - offset : stop - offset, :]
    dev = x.device
    i0 = torch.from_numpy(axis.i0[start:stop] - offset).to(dev)
    i1 = torch.from_numpy(axis.i1[start:stop] - offset).to(dev)
    w0 = torch.from_numpy(axis.w0[start:stop]).to(dev)[:, None]
    w1 = torch.from_numpy(axis.w1[start:stop]).to(dev)[:, None]
    out = x.index_select(-2, i0).mul_(w0)
    return out.add_(x.index_select(-2, i1).mul_(w1))


def compose_axes(outer: Axis, inner: Axis, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Output entries ``[start, stop)`` of ``inner`` then ``outer`` (``out = outer(inner(src))``)
    as one dense linear map: ``(matrix (stop - start, hi - lo) float32, lo)`` with
    ``out[i] = sum_k matrix[i, k] * src[lo + k]``. Every output reads at most four source
    entries (two of ``inner``'s outputs, each from two sources); the weights are multiplied and
    summed in float64 and rounded once. :func:`apply_cols` / :func:`apply_rows` of ``outer``
    over ``inner``'s output compute the same values step by step (rounding after each step:
    the two agree within float32 rounding, ~1e-7 relative).
    """
    i = np.arange(start, stop)
    mids = (outer.i0[i], outer.i1[i])
    outer_w = (outer.w0[i].astype(np.float64), outer.w1[i].astype(np.float64))
    lo = int(min(inner.i0[m].min() for m in mids))
    hi = int(max(inner.i1[m].max() for m in mids)) + 1
    matrix = np.zeros((stop - start, hi - lo))
    rows = np.arange(stop - start)
    for mid, w in zip(mids, outer_w):
        np.add.at(matrix, (rows, inner.i0[mid] - lo), w * inner.w0[mid])
        np.add.at(matrix, (rows, inner.i1[mid] - lo), w * inner.w1[mid])
    return matrix.astype(np.float32), lo
