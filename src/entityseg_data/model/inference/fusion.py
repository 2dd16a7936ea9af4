"""Memory-bounded fusion of per-view mask logits into one non-overlapping label map.

Computes the official post-processing (:mod:`.reference`, REFERENCE.md 6.1) up to float32
rounding (the two resizes are applied as one composed linear map per axis, see
:func:`.interp.compose_axes`, whose values can differ from PyTorch's two kernels by ~1e-7
relative; that flips a pixel only where the fused probability is within ~1e-7 of the 0.5 cut):
per query and view, mask logits at 1/4 of the padded input are upsampled to the padded size, cut
to the view, resized to the view's region in original pixels, passed through a sigmoid and
averaged over the views covering each pixel (crops in order, then the full view); a query owns a
pixel where its fused probability is ``> 0.5`` and no higher-scoring query does.

What it does NOT do is hold ``Q x H x W`` float maps. The original frame is processed in tiles;
for each tile only the "active" queries are computed: a query whose low-resolution logits feeding
the tile are all ``<= 0`` in every covering view cannot exceed 0.5 there (bilinear weights are
non-negative and sum to 1, the sigmoid is monotone), so skipping it is exact. Active queries are
handled in chunks sized to a memory budget, in descending score order, and the winner of each
pixel is written straight into a ``uint16`` label map, accumulating each query's area and
probability sums for the scores. Peak memory: the label map (2 bytes per pixel) + one tile x one
chunk of float maps per worker thread (``tile_budget_mb`` each).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.model.inference.interp import Axis, compose_axes, linear_axis
from entityseg_data.model.inference.views import ViewGeometry

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MAX_CANDIDATES = np.iinfo(np.uint16).max


@dataclass(frozen=True, eq=False)
class Painted:
    """Fusion output for K candidate queries (candidate ``k`` has label value ``k + 1``).

    ``label_map`` (H, W) uint16, 0 = no query; ``areas`` (K,) int64 pixels won;
    ``sum_prob`` / ``sum_sig_prob`` (K,) float64: sums over the pixels won of the fused
    probability ``p`` and of ``sigmoid(p)`` (the official double sigmoid); ``boxes`` (K, 4) int64
    ``(x0, y0, x1, y1)`` (exclusive ends) of the pixels won (zeros when none).
    """

    label_map: np.ndarray
    areas: np.ndarray
    sum_prob: np.ndarray
    sum_sig_prob: np.ndarray
    boxes: np.ndarray


@dataclass(frozen=True)
class _ViewPlan:
    index: int
    box: tuple[int, int, int, int]
    s1r: Axis
    s1c: Axis
    s2r: Axis
    s2c: Axis


def fusion_order(geometry: ViewGeometry) -> list[int]:
    """Addition order of the official fusion: every view that is not the full image, in order,
    then the full view(s)."""
    h, w = geometry.original_hw
    full = [v for v in range(geometry.num_views) if geometry.regions[v] == (0, 0, w, h)]
    return [v for v in range(geometry.num_views) if v not in full] + full


def _plans(geometry: ViewGeometry, low_hw: tuple[int, int]) -> list[_ViewPlan]:
    h4, w4 = low_hw
    s1r, s1c = linear_axis(h4, h4 * 4), linear_axis(w4, w4 * 4)
    plans = []
    for v in fusion_order(geometry):
        hv, wv = geometry.resized_hw[v]
        oh, ow = geometry.region_hw(v)
        if hv > h4 * 4 or wv > w4 * 4:
            raise DataError(
                f"view {v} is {hv}x{wv} but the mask logits cover only {h4 * 4}x{w4 * 4} pixels"
            )
        plans.append(
            _ViewPlan(v, geometry.regions[v], s1r, s1c, linear_axis(hv, oh), linear_axis(wv, ow))
        )
    return plans


def fuse_and_paint(
    mask_logits: torch.Tensor,
    order: Sequence[int] | np.ndarray,
    geometry: ViewGeometry,
    *,
    threshold_logits: bool = False,
    tile: int = 256,
    tile_budget_mb: float = 32.0,
    workers: int = 1,
) -> Painted:
    """Fuse and paint candidate queries into a label map.

    ``mask_logits``: (K, V, Hp/4, Wp/4) torch float32 logits of the K candidates, V views in
    ``geometry`` order. ``order``: (K,) candidate indices sorted by DESCENDING priority (the first
    one wins a contested pixel). ``threshold_logits``: Mask2Former's single-view rule (pixel in
    the mask where the resized logit is ``> 0``) instead of ``fused probability > 0.5``.
    ``workers``: tiles computed in parallel threads on CPU (each op on one thread meanwhile, each
    worker holding at most ``tile_budget_mb`` MiB of float maps); the result is bitwise the same
    for any number of workers.
    """
    import torch

    if mask_logits.ndim != 4 or mask_logits.shape[1] != geometry.num_views:
        raise DataError(
            f"mask logits of shape {tuple(mask_logits.shape)} do not match "
            f"{geometry.num_views} views"
        )
    k_all = int(mask_logits.shape[0])
    if k_all > MAX_CANDIDATES:
        raise DataError(f"{k_all} candidate masks exceed the uint16 label map ({MAX_CANDIDATES})")
    h, w = geometry.original_hw
    dev = mask_logits.device
    masks = mask_logits.float()
    plans = _plans(geometry, (int(masks.shape[2]), int(masks.shape[3])))
    order_t = torch.as_tensor(np.asarray(order, dtype=np.int64), device=dev)
    composites = _Composites(dev)

    label_map = np.zeros((h, w), dtype=np.uint16)
    areas = torch.zeros(k_all, dtype=torch.float64, device=dev)
    sum_prob = torch.zeros(k_all, dtype=torch.float64, device=dev)
    sum_sig = torch.zeros(k_all, dtype=torch.float64, device=dev)
    big = max(h, w) + 1
    lo_x = torch.full((k_all,), big, dtype=torch.int64, device=dev)
    lo_y = torch.full((k_all,), big, dtype=torch.int64, device=dev)
    hi_x = torch.full((k_all,), -1, dtype=torch.int64, device=dev)
    hi_y = torch.full((k_all,), -1, dtype=torch.int64, device=dev)
    tile = max(16, int(tile))
    workers = max(1, int(workers)) if dev.type == "cpu" else 1
    bytes_per_query = tile * tile * 4 * 5
    # the budget is per worker: the chunks, hence every value, do not depend on the number of
    # workers (a chunk size that did gave 1-ulp score differences between 1 and 2 threads: an
    # element's sigmoid rounds differently in the vectorised body and the scalar tail of a loop)
    chunk = max(1, int(tile_budget_mb * 2**20 // bytes_per_query))
    tiles = [
        (r0, min(h, r0 + tile), c0, min(w, c0 + tile))
        for r0 in range(0, h, tile)
        for c0 in range(0, w, tile)
    ]

    def run(t: tuple[int, int, int, int]) -> _TilePart | None:
        return _paint_tile(
            masks, plans, composites, order_t, k_all, t, chunk, threshold_logits=threshold_logits
        )

    if workers > 1 and len(tiles) > 1:
        from concurrent.futures import ThreadPoolExecutor

        from entityseg_data.model.runtime import intraop_threads

        # tiles in parallel, each op on one thread: the ops of a tile are too small to split
        # (with 2 intra-op threads the fusion got slower than with 1)
        with intraop_threads(1), ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(run, tiles))
    else:
        parts = [run(t) for t in tiles]
    # reduce in tile order: the result does not depend on the number of workers
    for (r0, r1, c0, c1), part in zip(tiles, parts):
        if part is None:
            continue
        label_map[r0:r1, c0:c1] = part.labels
        areas += part.areas
        sum_prob += part.sum_prob
        sum_sig += part.sum_sig
        torch.minimum(lo_x, part.lo_x, out=lo_x)
        torch.minimum(lo_y, part.lo_y, out=lo_y)
        torch.maximum(hi_x, part.hi_x, out=hi_x)
        torch.maximum(hi_y, part.hi_y, out=hi_y)
    found = hi_x >= 0
    boxes = torch.stack([lo_x, lo_y, hi_x + 1, hi_y + 1], 1) * found[:, None]
    return Painted(
        label_map=label_map,
        boxes=boxes.cpu().numpy(),
        areas=areas.round().long().cpu().numpy(),
        sum_prob=sum_prob.cpu().numpy(),
        sum_sig_prob=sum_sig.cpu().numpy(),
    )


@dataclass(frozen=True, eq=False)
class _TilePart:
    """One tile's contribution: its label patch (candidate k -> k + 1) and per-candidate sums
    and box bounds (in original coordinates; empty bounds are big / -1)."""

    labels: np.ndarray
    areas: torch.Tensor
    sum_prob: torch.Tensor
    sum_sig: torch.Tensor
    lo_x: torch.Tensor
    lo_y: torch.Tensor
    hi_x: torch.Tensor
    hi_y: torch.Tensor


def _paint_tile(
    masks: torch.Tensor,
    plans: Sequence[_ViewPlan],
    composites: _Composites,
    order_t: torch.Tensor,
    k_all: int,
    t: tuple[int, int, int, int],
    chunk: int,
    *,
    threshold_logits: bool,
) -> _TilePart | None:
    """Fuse and paint the tile ``t = (r0, r1, c0, c1)``; None when no candidate reaches it."""
    import torch

    r0, r1, c0, c1 = t
    dev = masks.device
    windows = _tile_windows(plans, r0, r1, c0, c1)
    if not windows:
        return None
    active = torch.zeros(k_all, dtype=torch.bool, device=dev)
    for plan, win in windows:
        patch = masks[:, plan.index, win.la : win.lb, win.lc : win.ld]
        active |= patch.flatten(1).amax(1) > 0
    if not bool(active.any()):
        return None
    act = order_t[active[order_t]]  # active candidates, descending priority
    labels = np.zeros((r1 - r0, c1 - c0), dtype=np.uint16)
    areas = torch.zeros(k_all, dtype=torch.float64, device=dev)
    sum_prob = torch.zeros(k_all, dtype=torch.float64, device=dev)
    sum_sig = torch.zeros(k_all, dtype=torch.float64, device=dev)
    big = torch.iinfo(torch.int64).max
    lo_x = torch.full((k_all,), big, dtype=torch.int64, device=dev)
    lo_y = torch.full((k_all,), big, dtype=torch.int64, device=dev)
    hi_x = torch.full((k_all,), -1, dtype=torch.int64, device=dev)
    hi_y = torch.full((k_all,), -1, dtype=torch.int64, device=dev)
    claimed = torch.zeros((r1 - r0, c1 - c0), dtype=torch.bool, device=dev)
    for s in range(0, int(act.numel()), chunk):
        ids = act[s : s + chunk]
        value, sig = _fused_tile(
            masks, ids, windows, composites, r0, r1, c0, c1, threshold_logits=threshold_logits
        )
        inside = value > 0 if threshold_logits else value > 0.5
        inside &= ~claimed
        has = inside.any(0)
        if not bool(has.any()):
            continue
        first = _first_true(inside)
        winner = ids[first]
        wmask = has
        wid = winner[wmask]
        p = sig.gather(0, first[None])[0][wmask].double()
        areas += torch.bincount(wid, minlength=k_all).double()
        sum_prob += torch.bincount(wid, weights=p, minlength=k_all)
        sum_sig += torch.bincount(wid, weights=torch.sigmoid(p.float()).double(), minlength=k_all)
        ys, xs = torch.nonzero(wmask, as_tuple=True)
        lo_y.scatter_reduce_(0, wid, ys + r0, "amin")
        hi_y.scatter_reduce_(0, wid, ys + r0, "amax")
        lo_x.scatter_reduce_(0, wid, xs + c0, "amin")
        hi_x.scatter_reduce_(0, wid, xs + c0, "amax")
        claimed |= has
        labels[wmask.cpu().numpy()] = (wid + 1).cpu().numpy().astype(np.uint16)
        if bool(claimed.all()):  # every pixel taken: the later candidates win nothing here
            break
    return _TilePart(labels, areas, sum_prob, sum_sig, lo_x, lo_y, hi_x, hi_y)


def _first_true(inside: torch.Tensor) -> torch.Tensor:
    """(th, tw) int64: for each pixel the first ``k`` with ``inside[k]`` of an (n, th, tw) bool
    tensor (0 where none is true). One masked fill per ``k``, last to first: ~10x faster on CPU
    than ``argmax`` over dim 0, which reduces along the strided outer dimension."""
    import torch

    first = torch.zeros(inside.shape[1:], dtype=torch.int64, device=inside.device)
    for k in range(int(inside.shape[0]) - 1, -1, -1):
        first.masked_fill_(inside[k], k)
    return first


@dataclass(frozen=True)
class _Win:
    """One view's part of a tile: output rows/cols ``[a, b) x [c, d)`` in region coordinates,
    the low-resolution window ``[la, lb) x [lc, ld)`` they read (through the padded-resolution
    window), and the tile part ``[ya, yb) x [xa, xb)`` in original coordinates."""

    a: int
    b: int
    c: int
    d: int
    la: int
    lb: int
    lc: int
    ld: int
    ya: int
    yb: int
    xa: int
    xb: int


def _tile_windows(
    plans: Sequence[_ViewPlan], r0: int, r1: int, c0: int, c1: int
) -> list[tuple[_ViewPlan, _Win]]:
    """The views covering the tile ``[r0, r1) x [c0, c1)``, in fusion order, with their windows."""
    out = []
    for plan in plans:
        x0, y0, x1, y1 = plan.box
        ya, yb = max(r0, y0), min(r1, y1)
        xa, xb = max(c0, x0), min(c1, x1)
        if ya >= yb or xa >= xb:
            continue
        a, b, c, d = ya - y0, yb - y0, xa - x0, xb - x0
        pa, pb = plan.s2r.window(a, b)
        pc, pd = plan.s2c.window(c, d)
        la, lb = plan.s1r.window(pa, pb)
        lc, ld = plan.s1c.window(pc, pd)
        out.append((plan, _Win(a, b, c, d, la, lb, lc, ld, ya, yb, xa, xb)))
    return out


class _Composites:
    """The per-axis maps of a view (x4 upsampling, then the view-to-region resize) composed
    into small matrices per output range, made once per tile row / column and reused by every
    tile, chunk and worker thread that needs them (a plain dict: concurrent fills of one key
    compute the same value). Rows are resized first, at low resolution, with one dense matrix;
    columns at full resolution in bands of ``col_block`` (the map is banded: 64 columns read ~20
    of the ~90 low columns a 256-column tile reads)."""

    def __init__(self, device: torch.device, col_block: int = 64) -> None:
        self.device = device
        self.col_block = col_block
        self._cache: dict[tuple[int, str, int, int], _Blocks] = {}

    def rows(self, plan: _ViewPlan, start: int, stop: int) -> _Blocks:
        """Region rows ``[start, stop)`` of view ``plan.index``: one block."""
        return self._get(plan, "r", start, stop)

    def cols(self, plan: _ViewPlan, start: int, stop: int) -> _Blocks:
        """Region columns ``[start, stop)`` of view ``plan.index``: bands of ``col_block``."""
        return self._get(plan, "c", start, stop)

    def _get(self, plan: _ViewPlan, axis: str, start: int, stop: int) -> _Blocks:
        import torch

        key = (plan.index, axis, start, stop)
        hit = self._cache.get(key)
        if hit is None:
            outer, inner = (plan.s2r, plan.s1r) if axis == "r" else (plan.s2c, plan.s1c)
            step = stop - start if axis == "r" else self.col_block
            blocks = []
            for a in range(start, stop, step):
                matrix, lo = compose_axes(outer, inner, a, min(stop, a + step))
                blocks.append((a - start, torch.from_numpy(matrix).to(self.device), lo))
            lo = min(blk[2] for blk in blocks)
            hi = max(blk[2] + blk[1].shape[1] for blk in blocks)
            hit = _Blocks(tuple(blocks), lo, hi)
            self._cache[key] = hit
        return hit


@dataclass(frozen=True, eq=False)
class _Blocks:
    """``blocks``: (first output entry, (entries, k) matrix, first low-resolution entry) per
    block; every block reads low-resolution entries within ``[lo, hi)``."""

    blocks: tuple[tuple[int, torch.Tensor, int], ...]
    lo: int
    hi: int


def _fused_tile(
    masks: torch.Tensor,
    ids: torch.Tensor,
    windows: Sequence[tuple[_ViewPlan, _Win]],
    composites: _Composites,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    *,
    threshold_logits: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(value, prob)`` of the tile for candidates ``ids``, each (n, th, tw) float32.

    CropFormer: value = prob = fused probability (crops in order, then the full view, divided by
    the coverage count started at 1e-16). Mask2Former (``threshold_logits``): value = resized logit
    of the single view, prob = its sigmoid.
    """
    import torch

    n = int(ids.numel())
    th, tw = r1 - r0, c1 - c0
    dev = masks.device
    num = torch.empty((n, th, tw), dtype=torch.float32, device=dev)
    started = False  # num holds a value everywhere (else it is uninitialised)
    den = torch.full((th, tw), 1e-16, dtype=torch.float32, device=dev)
    logit_out = (
        torch.full((n, th, tw), -1.0, dtype=torch.float32, device=dev) if threshold_logits else None
    )
    for plan, win in windows:
        # the two resizes composed per axis (see _Composites): small products instead of a x4
        # upsampling of the window and two gathers (~2x faster)
        rows = composites.rows(plan, win.a, win.b)
        cols = composites.cols(plan, win.c, win.d)
        low = masks[:, plan.index, rows.lo : rows.hi, cols.lo : cols.hi].index_select(0, ids)
        rmat = rows.blocks[0][1]
        part = torch.matmul(rmat, low)  # (n, b - a, low cols): rows first, at low resolution
        flat = part.view(-1, cols.hi - cols.lo)
        x = part.new_empty(n, win.b - win.a, win.d - win.c)
        x2 = x.view(-1, win.d - win.c)
        for first, mat, lo in cols.blocks:  # then the columns, a band of 64 at a time
            k0 = lo - cols.lo
            torch.mm(
                flat[:, k0 : k0 + mat.shape[1]],
                mat.t(),
                out=x2[:, first : first + mat.shape[0]],
            )
        ys, ye, xs, xe = win.ya - r0, win.yb - r0, win.xa - c0, win.xb - c0
        if logit_out is not None:
            logit_out[:, ys:ye, xs:xe] = x
        if not started and (ye - ys, xe - xs) == (th, tw):
            torch.sigmoid(x, out=num)  # the first term everywhere: 0 + s = s exactly
        else:
            if not started:
                num.zero_()
            num[:, ys:ye, xs:xe] += torch.sigmoid(x)
        started = True
        den[ys:ye, xs:xe] += 1
    prob = num / den
    if logit_out is not None:  # threshold_logits
        return logit_out, prob
    return prob, prob
