"""Separable bilinear interpolation that can be evaluated on any window of the output.

``F.interpolate(x, size, mode="bilinear", align_corners=False)`` computes every output pixel
from its two nearest source rows and columns, axis by axis. Keeping the per-axis index and
weight tables (:func:`linear_axis`) lets the post-processing evaluate those values on a tile,
for a few queries at a time, instead of materialising ``Q x H x W`` maps: :func:`compose_axes`
folds two such axes (the x4 upsampling of the mask logits, then the resize to the original
image) into one small dense matrix per output window, which the fusion applies as products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Axis:
    """Index/weight table of one axis: ``out[i] = src[i0[i]] * w0[i] + src[i1[i]] * w1[i]``."""

    i0: np.ndarray  # (out,) int64
    i1: np.ndarray  # (out,) int64
    w0: np.ndarray  # (out,) float32
    w1: np.ndarray  # (out,) float32

    def window(self, start: int, stop: int) -> tuple[int, int]:
        """Source range ``[lo, hi)`` that outputs ``[start, stop)`` read."""
        return int(self.i0[start]), int(self.i1[stop - 1]) + 1


def linear_axis(in_size: int, out_size: int) -> Axis:
    """PyTorch's ``align_corners=False`` source indices and weights on CPU:
    ``src = max(scale * (i + 0.5) - 0.5, 0)`` with ``scale = float32(in / out)``.

    PyTorch's vectorised CPU kernels compute ``scale * (i + 0.5) - 0.5`` as one fused
    multiply-add (rounded once to float32); rounding the product first, as plain float32
    arithmetic does, moves ``src`` by an ulp (~6e-5 at a few hundred pixels) and the
    interpolated values by as much. The product of two float32 numbers is exact in float64, so
    computing it there and rounding once reproduces the fused result bitwise.
    """
    f = np.float32
    scale = np.float64(f(in_size) / f(out_size))
    dst = np.arange(out_size, dtype=np.float64) + 0.5  # exact in float32 too
    src = (scale * dst - 0.5).astype(np.float32)
    src = np.maximum(src, f(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(np.float32), f(0.0), f(1.0)).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1).astype(np.int64)
    return Axis(i0=i0, i1=i1, w0=(f(1.0) - lam).astype(np.float32), w1=lam)


def compose_axes(outer: Axis, inner: Axis, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Output entries ``[start, stop)`` of ``inner`` then ``outer`` (``out = outer(inner(src))``)
    as one dense linear map: ``(matrix (stop - start, hi - lo) float32, lo)`` with
    ``out[i] = sum_k matrix[i, k] * src[lo + k]``. Every output reads at most four source
    entries (two of ``inner``'s outputs, each from two sources); the weights are multiplied and
    summed in float64 and rounded once: within float32 rounding (~1e-7 relative) of applying
    ``inner`` then ``outer`` step by step, as ``F.interpolate`` twice does.
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
