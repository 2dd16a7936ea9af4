"""Exact boundary bands of the official boundary-AP evaluation, computed fast.

The official tool (boundary-iou-api, copied by Mask2Former/CropFormer) defines the boundary of an
(H, W) mask as ``mask - erode(pad(mask, 1 px of zeros), 3x3 kernel, d iterations)`` cropped back,
with ``d = max(1, round(dilation_ratio * sqrt(H^2 + W^2)))`` (Python ``round``: half to even).
Because the zero padding keeps every pixel outside the image at 0 while eroding, ``d`` iterations
of a 3x3 erosion equal one erosion by a (2d+1) x (2d+1) square with everything outside the image
taken as 0: a pixel stays inside iff its whole chessboard ball of radius ``d`` lies inside the
image and inside the mask. The band is the mask minus that interior.

Two exact ways to compute it, chosen per set of masks:

* per mask: decode only the mask's bounding columns (from the RLE runs), run a separable min filter
  inside the mask's bounding box (outside the box the mask is 0, which the zero padding of the
  filter reproduces), encode the band straight back to a full-image RLE. A mask whose box is at
  most 2d pixels wide or high has an empty interior: its band is the mask itself, no pixel work.
* label-map shortcut for disjoint masks: paint all masks into one label map and take one min and
  one max filter of it: a pixel is interior iff both equal its own label (the window is uniform)
  and the zero padding excludes windows reaching past the image border.

Both give identical bands (tests/evaluation/test_boundary.py checks them against the iterated
erosion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from entityseg_data.errors import OverlapError
from entityseg_data.masks import rle as rle_ops
from entityseg_data.masks import runs as R
from entityseg_data.masks.rle import RLE


def band_width(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """Band width ``d`` in pixels: ``max(1, round(dilation_ratio * diagonal))`` (the official
    tool's Python ``round``)."""
    d = round(dilation_ratio * math.sqrt(height * height + width * width))
    return max(d, 1)


def reference_band(mask: np.ndarray, d: int) -> np.ndarray:
    """(H, W) uint8 band by the official definition (iterated 3x3 erosion of the zero-padded
    mask). Slow: O(d x H x W). For tests and documentation only."""
    m = np.pad((mask != 0).astype(bool), 1)
    er = ndi.binary_erosion(m, structure=np.ones((3, 3), bool), iterations=d, border_value=1)
    er = er[1:-1, 1:-1]
    return ((mask != 0) & ~er).astype(np.uint8)


def interior_from_crop(crop: np.ndarray, d: int) -> np.ndarray:
    """Interior (eroded mask) of a binary crop (uint8 0/1, any 2-D shape) whose outside is 0:
    a separable min filter of size 2d+1 with zero padding."""
    size = 2 * d + 1
    out = ndi.minimum_filter1d(crop, size, axis=1, mode="constant", cval=0)
    return ndi.minimum_filter1d(out, size, axis=0, mode="constant", cval=0)


def band_of_rle(rle: RLE, d: int) -> RLE:
    """Band RLE of one mask RLE (per-mask method)."""
    h, w = rle_ops.size(rle)
    runs = rle_ops.runs(rle)
    if runs.starts.size == 0:
        return rle
    x0, x1 = R.column_range(runs, h)
    if x1 - x0 <= 2 * d:
        return rle
    block = R.decode_columns(runs, h, x0, x1)  # (w_c, H): columns as rows
    rows = np.flatnonzero(block.any(axis=0))
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    if y1 - y0 <= 2 * d:
        return rle
    crop = block[:, y0:y1]
    interior = interior_t(np.ascontiguousarray(crop), d)  # (h_c, w_c)
    if not interior.any():
        return rle
    crop -= interior.T  # interior is inside the mask: crop - interior = band (in place on block)
    return rle_ops.from_runs(R.columns_to_runs(block, x0, h), h, w)


def _bands_label_map(all_runs: Sequence[R.Runs], height: int, width: int, d: int) -> list[RLE]:
    n = len(all_runs)
    try:
        flat = R.paint(all_runs, height * width, policy="reject")
    except OverlapError:
        raise ValueError("the label-map band method needs disjoint masks") from None
    lm_t = flat.reshape(width, height)
    interior = interior_t(lm_t, d)  # (H, W)
    band = lm_t - R.transpose(interior)  # interior is lm_t or 0 pixelwise: exact
    del interior
    band = band.reshape(-1)
    rles = rle_ops.flat_label_map_to_rles(band, height, width, range(1, n + 1))
    return [rles[i + 1] for i in range(n)]


def bands(
    rles: Sequence[RLE],
    height: int,
    width: int,
    d: int,
    *,
    disjoint: bool | None = None,
    method: str = "auto",
) -> list[RLE]:
    """Band RLEs of masks of one (H, W) image, in input order.

    Args:
        rles: compressed RLEs of size (H, W).
        d: band width in pixels (:func:`band_width`).
        disjoint: whether the masks are known not to overlap (None = unknown: only the per-mask
            method is used unless ``method="labelmap"``).
        method: "auto" (label map for disjoint sets whose bounding columns cover the image more
            than ~4 times, else per mask), "mask" or "labelmap" (requires disjoint masks).
    """
    if not rles:
        return []
    if method not in ("auto", "mask", "labelmap"):
        raise ValueError(f"unknown band method {method!r}")
    if method == "auto" and disjoint:
        all_runs = rle_ops.runs_many(rles, height, width)
        cols = 0
        for r in all_runs:
            x0, x1 = R.column_range(r, height)
            if x1 - x0 > 2 * d:
                cols += x1 - x0
        if cols > 4 * width:
            return _bands_label_map(all_runs, height, width, d)
        return [band_of_rle(r, d) for r in rles]
    if method == "labelmap":
        return _bands_label_map(rle_ops.runs_many(rles, height, width), height, width, d)
    return [band_of_rle(r, d) for r in rles]


# ----------------------------------------------------------------------------- erosion
def row_interior(a: np.ndarray, d: int) -> np.ndarray:
    """Keep a label where the run of equal values along its row extends at least ``d`` pixels
    to both sides inside the row; 0 elsewhere. ``a``: (R, C) C-contiguous integer array.
    (A 1-D erosion by a window of 2d+1 of every label at once, with 0 beyond the row ends.)"""
    r_n, c_n = a.shape
    if c_n <= 2 * d or a.size == 0:
        return np.zeros_like(a)
    flat = np.ascontiguousarray(a).reshape(-1)
    n = flat.size
    ch = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    b = np.union1d(ch, np.arange(c_n, n, c_n))
    starts = np.concatenate(([0], b))
    ends = np.concatenate((b, [n]))
    length = ends - starts
    inner = np.maximum(length - 2 * d, 0)
    left = np.where(inner > 0, d, length)
    lens = np.stack([left, inner, length - left - inner], axis=1).reshape(-1)
    vals = np.zeros((starts.size, 3), a.dtype)
    vals[:, 1] = flat[starts]
    return np.repeat(vals.reshape(-1), lens).reshape(r_n, c_n)


def interior_t(a_t: np.ndarray, d: int) -> np.ndarray:
    """Erosion of every label of a transposed label map ``a_t`` (W, H) (rows = image columns)
    by a (2d+1) x (2d+1) square, outside = 0. Returns the (H, W) (non-transposed) interior: a
    pixel keeps its label iff its whole window lies inside the array and carries that label."""
    u_t = row_interior(a_t, d)  # uniform along image columns
    u = R.transpose(u_t)
    del u_t
    return row_interior(u, d)  # and along image rows
