"""Run-level access to COCO RLEs without decoding full images.

A COCO RLE lists alternating run lengths (0-runs first) over the pixels of an (H, W) mask in
column-major order, i.e. over the rows of the mask's (W, H) transpose. Everything here works in
that transposed "flat" space: pixel (y, x) is flat index ``x * H + y``.

These helpers let the evaluator decode only the columns a mask occupies (:func:`decode_block`),
encode a block of columns back to a full-image RLE (:func:`block_to_rle`), paint many disjoint
masks into one label map with a single cumulative sum (:func:`paint_disjoint`) and split a label
map into per-label RLEs in one pass (:func:`label_map_t_to_rles`). Costs are proportional to the
number of runs plus the pixels of the columns touched, never to the number of masks x image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from entityseg_data.errors import DataError

RLE = dict[str, Any]


def counts(rle: RLE) -> np.ndarray:
    """Run lengths (int64, 0-run first) of a compressed (text/bytes counts) or uncompressed
    (list counts) RLE. Vectorised decoder of the COCO compressed string format."""
    c = rle["counts"]
    if isinstance(c, list | tuple | np.ndarray):
        return np.asarray(c, dtype=np.int64)
    if isinstance(c, str):
        c = c.encode("ascii")
    s = np.frombuffer(c, dtype=np.uint8).astype(np.int64) - 48
    if s.size == 0:
        return np.zeros(0, np.int64)
    if s.min() < 0 or s.max() > 63:
        raise DataError("RLE counts string has characters outside the COCO alphabet")
    more = (s & 0x20) != 0
    ends = np.flatnonzero(~more)
    if ends.size == 0 or ends[-1] != s.size - 1:
        raise DataError("RLE counts string is truncated")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    k = np.arange(s.size) - starts[group]
    vals = np.add.reduceat((s & 0x1F) << (5 * k), starts)
    nchunks = ends - starts + 1
    neg = (s[ends] & 0x10) != 0
    vals = np.where(neg, vals - (np.int64(1) << (5 * nchunks)), vals)
    out = vals.copy()
    if out.size > 3:
        # cnts[m] += cnts[m-2] for m > 2: running sums over odd indices from 1, even from 2
        out[1::2] = np.cumsum(vals[1::2])
        out[2::2] = np.cumsum(vals[2::2])
    return out


def from_counts(cnts: np.ndarray | Sequence[int], height: int, width: int) -> RLE:
    """Compressed text RLE of run lengths (0-run first) of an (H, W) mask."""
    r = mask_utils.frPyObjects(
        {"size": [int(height), int(width)], "counts": np.asarray(cnts, np.int64).tolist()},
        height,
        width,
    )
    c = r["counts"]
    text = c.decode("ascii") if isinstance(c, bytes) else c
    return {"size": [int(height), int(width)], "counts": text}


def one_runs(rle: RLE) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the 1-runs in flat column-major index (end exclusive, empty runs
    dropped)."""
    cnt = counts(rle)
    pos = np.cumsum(cnt)
    starts = pos[0::2][: cnt[1::2].size]
    ends = pos[1::2]
    keep = ends > starts
    return starts[keep], ends[keep]


def column_range(starts: np.ndarray, ends: np.ndarray, height: int) -> tuple[int, int]:
    """[x0, x1) columns touched by 1-runs (0, 0 for an empty mask)."""
    if starts.size == 0:
        return 0, 0
    return int(starts[0] // height), int((ends[-1] - 1) // height) + 1


def decode_block(starts: np.ndarray, ends: np.ndarray, height: int, x0: int, x1: int) -> np.ndarray:
    """(x1 - x0, H) uint8 block of the mask's transpose: columns x0..x1-1 of the mask as rows."""
    a, b = x0 * height, x1 * height
    n = b - a
    s = np.clip(starts, a, b) - a
    e = np.clip(ends, a, b) - a
    keep = e > s
    s, e = s[keep], e[keep]
    if s.size == 0:
        return np.zeros((x1 - x0, height), np.uint8)
    # alternating 0/1 run lengths inside the window
    bounds = np.empty(2 * s.size + 2, np.int64)
    bounds[0] = 0
    bounds[1:-1:2] = s
    bounds[2:-1:2] = e
    bounds[-1] = n
    lens = np.diff(bounds)
    vals = np.zeros(lens.size, np.uint8)
    vals[1::2] = 1
    return np.repeat(vals, lens).reshape(x1 - x0, height)


def block_to_rle(block_t: np.ndarray, x0: int, height: int, width: int) -> RLE:
    """Full-image RLE of a mask that is zero outside columns x0..x0+len(block_t)-1; ``block_t``
    is the (w_c, H) transposed block (nonzero = inside)."""
    flat = np.ascontiguousarray(block_t).reshape(-1).astype(bool, copy=False)
    n_before = x0 * height
    total = height * width
    if flat.size == 0 or not flat.any():
        return from_counts([total], height, width)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size])) + n_before
    # runs alternate starting with flat[0]; COCO starts with a 0-run
    first_one = bool(flat[0])
    pts = np.concatenate(([0], bounds, [total]))
    lens = np.diff(pts)
    # lens[0] = zeros before the block; then the block's runs; then zeros after.
    # Merge the leading zeros with the block's first run when that run is a 0-run, and the
    # trailing zeros with its last run when that is a 0-run.
    block_lens = lens[1:-1]
    lead, trail = int(lens[0]), int(lens[-1])
    last_one = bool(flat[-1])
    if first_one:
        out = [lead, *block_lens.tolist()]
    else:
        out = [lead + int(block_lens[0]), *block_lens[1:].tolist()]
    if last_one:
        if trail:
            out.append(trail)
    else:
        out[-1] += trail
    return from_counts(out, height, width)


def paint_disjoint(
    runs: Sequence[tuple[np.ndarray, np.ndarray]], height: int, width: int
) -> tuple[np.ndarray, int]:
    """Label map of masks given by their 1-runs, as a flat column-major int32 array (label i+1
    for mask i, 0 = none), and the number of pixels covered more than once.

    When masks overlap, the returned label map is meaningless (check the overlap count first).
    """
    n = height * width
    delta = np.zeros(n + 1, np.int64)
    cover = np.zeros(n + 1, np.int32)
    for i, (s, e) in enumerate(runs):
        if s.size == 0:
            continue
        np.add.at(delta, s, i + 1)
        np.add.at(delta, e, -(i + 1))
        np.add.at(cover, s, 1)
        np.add.at(cover, e, -1)
    cov = np.cumsum(cover[:-1], dtype=np.int32)
    overlap = int(np.maximum(cov - 1, 0).sum())
    lm = np.cumsum(delta[:-1]).astype(np.int32)
    return lm, overlap


def paint_runs(
    runs_list: Sequence[tuple[np.ndarray, np.ndarray]], height: int, width: int, dtype: Any = None
) -> np.ndarray | None:
    """Flat column-major label map (label i+1 for mask i) of masks given by their 1-runs, or
    None when two masks overlap. One ``np.repeat`` over the sorted runs (no per-pixel adds)."""
    n = height * width
    k = len(runs_list)
    if dtype is None:  # the narrowest type: transposes and run scans move fewer bytes
        dtype = np.uint8 if k < 255 else np.uint16 if k < 65535 else np.int32
    if not any(s.size for s, _ in runs_list):
        return np.zeros(n, dtype)
    starts = np.concatenate([s for s, _ in runs_list])
    ends = np.concatenate([e for _, e in runs_list])
    labs = np.concatenate([np.full(s.size, i + 1, np.int64) for i, (s, _) in enumerate(runs_list)])
    order = np.argsort(starts, kind="stable")
    starts, ends, labs = starts[order], ends[order], labs[order]
    if np.any(starts[1:] < ends[:-1]):
        return None
    gaps = np.empty(starts.size + 1, np.int64)
    gaps[0] = starts[0]
    gaps[1:-1] = starts[1:] - ends[:-1]
    gaps[-1] = n - ends[-1]
    lens = np.empty(2 * starts.size + 1, np.int64)
    lens[0::2] = gaps
    lens[1::2] = ends - starts
    vals = np.zeros(lens.size, dtype)
    vals[1::2] = labs
    return np.repeat(vals, lens)


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


def transpose(a: np.ndarray, block: int = 512) -> np.ndarray:
    """C-contiguous transpose of a 2-D array, copied tile by tile (about 3x faster than
    ``np.ascontiguousarray(a.T)`` on 12 MP arrays, which thrashes the cache)."""
    r_n, c_n = a.shape
    if a.size < (1 << 16):
        return np.ascontiguousarray(a.T)
    out = np.empty((c_n, r_n), a.dtype)
    for i in range(0, r_n, block):
        for j in range(0, c_n, block):
            out[j : j + block, i : i + block] = a[i : i + block, j : j + block].T
    return out


def interior_t(a_t: np.ndarray, d: int) -> np.ndarray:
    """Erosion of every label of a transposed label map ``a_t`` (W, H) (rows = image columns)
    by a (2d+1) x (2d+1) square, outside = 0. Returns the (H, W) (non-transposed) interior: a
    pixel keeps its label iff its whole window lies inside the array and carries that label."""
    u_t = row_interior(a_t, d)  # uniform along image columns
    u = transpose(u_t)
    del u_t
    return row_interior(u, d)  # and along image rows


def label_map_t_to_rles(
    flat: np.ndarray, labels: Sequence[int], height: int, width: int
) -> dict[int, RLE]:
    """RLEs of the given labels of a flat column-major label map (one pass over the pixels)."""
    flat = np.ascontiguousarray(flat).reshape(-1)
    n = flat.size
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    rstart = np.concatenate(([0], change))
    rend = np.concatenate((change, [n]))
    rlab = flat[rstart]
    order = np.argsort(rlab, kind="stable")
    sl = rlab[order]
    out = {}
    for lab in labels:
        lo, hi = np.searchsorted(sl, [lab, lab + 1])
        idx = order[lo:hi]
        if idx.size == 0:
            out[int(lab)] = from_counts([n], height, width)
            continue
        s, e = rstart[idx], rend[idx]
        pts = np.empty(2 * s.size + 2, np.int64)
        pts[0] = 0
        pts[1:-1:2] = s
        pts[2:-1:2] = e
        pts[-1] = n
        lens = np.diff(pts)
        if lens[-1] == 0:
            lens = lens[:-1]
        out[int(lab)] = from_counts(lens, height, width)
    return out
