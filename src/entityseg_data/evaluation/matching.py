"""COCO AP/AR matching, accumulation and summary, class-agnostic, image by image.

A re-implementation of pycocotools ``COCOeval.evaluateImg`` / ``accumulate`` / ``summarize``
(single category) that works from per-image IoU matrices, so that an evaluator can stream images
and keep only a few small arrays per image. Semantics are pycocotools' to the last tie-break:

* detections are sorted by descending score with a stable sort (file order breaks ties) and cut to
  ``max_dets[-1]`` before IoUs are computed;
* GT ``ignore`` = ``iscrowd``; per area range, GT outside the range is ignored too; GT are sorted
  non-ignored first (stable) and a detection takes, at each IoU threshold, the unmatched
  non-ignored GT of highest IoU >= threshold (the last one in that order on ties), else the
  highest-IoU ignored GT (crowd GT can be matched many times);
* unmatched detections outside the area range are ignored;
* accumulation concatenates images in ascending image id and sorts scores stably; precision
  envelope, 101 recall thresholds, ``np.spacing(1)`` guard and -1 for undefined entries as in
  pycocotools.

One deliberate difference: pycocotools records matches by annotation id and tests ``id != 0``, so
a GT annotation with id 0 never counts as matched there. Matches here are booleans (id 0 works).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNGS = ((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2))
AREA_LABELS = ("all", "small", "medium", "large")


@dataclass(frozen=True)
class Params:
    """COCO evaluation parameters (defaults = pycocotools segm defaults)."""

    max_dets: tuple[int, ...] = (1, 10, 100)
    iou_thrs: np.ndarray = field(default_factory=lambda: IOU_THRS.copy())
    rec_thrs: np.ndarray = field(default_factory=lambda: REC_THRS.copy())
    area_rngs: tuple[tuple[float, float], ...] = AREA_RNGS
    area_labels: tuple[str, ...] = AREA_LABELS

    def __post_init__(self) -> None:
        md = tuple(int(m) for m in self.max_dets)
        if not md or any(m < 1 for m in md) or list(md) != sorted(md):
            raise ValueError(f"max_dets must be increasing positive integers, got {self.max_dets}")
        object.__setattr__(self, "max_dets", md)


@dataclass(frozen=True)
class AreaResult:
    """Matching of one image for one area range. Shapes: D detections (score order, at most
    ``max_dets[-1]``), G GT, T IoU thresholds."""

    dt_scores: np.ndarray  # (D,) float64
    dt_matched: np.ndarray  # (T, D) bool
    dt_ignore: np.ndarray  # (T, D) bool
    gt_ignore: np.ndarray  # (G,) bool


# (one AreaResult per area range) or None for an image with neither GT nor detections
ImageResult = tuple[AreaResult, ...] | None


def sort_detections(scores: npt.ArrayLike) -> np.ndarray:
    """Indices of detections by descending score, stable (pycocotools' mergesort order)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")


def evaluate_image(
    ious: np.ndarray,
    dt_scores: np.ndarray,
    dt_areas: np.ndarray,
    gt_areas: np.ndarray,
    gt_crowd: np.ndarray,
    params: Params,
) -> ImageResult:
    """Match one image's detections to its GT for every area range.

    Args:
        ious: (D, G) IoUs, rows in detection score order (already sorted and cut to
            ``params.max_dets[-1]``), columns in GT order.
        dt_scores, dt_areas: (D,) in the same order as the rows.
        gt_areas, gt_crowd: (G,) GT areas (pixels, the GT file's ``area``) and crowd flags.
    """
    d_n, g_n = len(dt_scores), len(gt_areas)
    if d_n == 0 and g_n == 0:
        return None
    thrs = np.minimum(params.iou_thrs, 1 - 1e-10)
    t_n = thrs.size
    crowd = np.asarray(gt_crowd, dtype=bool)
    dt_scores = np.asarray(dt_scores, dtype=np.float64)
    dt_areas = np.asarray(dt_areas, dtype=np.float64)
    gt_areas = np.asarray(gt_areas, dtype=np.float64)
    ious = np.asarray(ious, dtype=np.float64).reshape(d_n, g_n)
    max_det = params.max_dets[-1]
    out = []
    for lo, hi in params.area_rngs:
        gt_ig = crowd | (gt_areas < lo) | (gt_areas > hi)
        order = np.argsort(gt_ig, kind="mergesort")
        g_ig = gt_ig[order]
        g_crowd = crowd[order]
        iou = ious[:max_det][:, order]
        dn = min(d_n, max_det)
        gtm = np.zeros((t_n, g_n), bool)
        dtm = np.zeros((t_n, dn), bool)
        dt_ig = np.zeros((t_n, dn), bool)
        if g_n and dn:
            n_nonig = int((~g_ig).sum())
            for di in range(dn):
                row = iou[di]
                ok = (row[None, :] >= thrs[:, None]) & (~gtm | g_crowd[None, :])
                cand = np.where(ok, row[None, :], -np.inf)
                m = np.full(t_n, -1)
                if n_nonig:
                    part = cand[:, :n_nonig]
                    best = part.max(axis=1)
                    has = best > -np.inf
                    last = n_nonig - 1 - np.argmax(part[:, ::-1] == best[:, None], axis=1)
                    m = np.where(has, last, -1)
                if n_nonig < g_n:
                    part = cand[:, n_nonig:]
                    best = part.max(axis=1)
                    has = (best > -np.inf) & (m < 0)
                    k = g_n - n_nonig
                    last = n_nonig + k - 1 - np.argmax(part[:, ::-1] == best[:, None], axis=1)
                    m = np.where(has, last, m)
                hit = m >= 0
                if hit.any():
                    ts = np.flatnonzero(hit)
                    gs = m[hit]
                    dtm[ts, di] = True
                    dt_ig[ts, di] = g_ig[gs]
                    gtm[ts, gs] = True
        dt_out = (dt_areas[:dn] < lo) | (dt_areas[:dn] > hi)
        dt_ig = dt_ig | (~dtm & dt_out[None, :])
        out.append(
            AreaResult(
                dt_scores=dt_scores[:dn].copy(),
                dt_matched=dtm,
                dt_ignore=dt_ig,
                gt_ignore=g_ig,
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class Accumulated:
    """precision (T, R, A, M), recall (T, A, M), scores (T, R, A, M); -1 where undefined."""

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray


def accumulate(results: Iterable[ImageResult], params: Params) -> Accumulated:
    """pycocotools ``accumulate`` over per-image results given in ascending image-id order."""
    res = [r for r in results if r is not None]
    t_n, r_n = len(params.iou_thrs), len(params.rec_thrs)
    a_n, m_n = len(params.area_rngs), len(params.max_dets)
    precision = -np.ones((t_n, r_n, a_n, m_n))
    recall = -np.ones((t_n, a_n, m_n))
    scores = -np.ones((t_n, r_n, a_n, m_n))
    if not res:
        return Accumulated(precision, recall, scores)
    for a in range(a_n):
        per = [r[a] for r in res]
        gt_ig = np.concatenate([e.gt_ignore for e in per])
        npig = int(np.count_nonzero(gt_ig == 0))
        for mi, max_det in enumerate(params.max_dets):
            dt_scores = np.concatenate([e.dt_scores[:max_det] for e in per])
            inds = np.argsort(-dt_scores, kind="mergesort")
            sorted_scores = dt_scores[inds]
            dtm = np.concatenate([e.dt_matched[:, :max_det] for e in per], axis=1)[:, inds]
            dt_ig = np.concatenate([e.dt_ignore[:, :max_det] for e in per], axis=1)[:, inds]
            if npig == 0:
                continue
            tps = np.logical_and(dtm, np.logical_not(dt_ig))
            fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))
            tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
            fp_sum = np.cumsum(fps, axis=1).astype(dtype=float)
            for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
                nd = len(tp)
                rc = tp / npig
                pr = tp / (fp + tp + np.spacing(1))
                recall[t, a, mi] = rc[-1] if nd else 0
                q = np.zeros(r_n)
                ss = np.zeros(r_n)
                if nd:
                    pr = np.maximum.accumulate(pr[::-1])[::-1]
                    idx = np.searchsorted(rc, params.rec_thrs, side="left")
                    valid = idx < nd
                    q[valid] = pr[idx[valid]]
                    ss[valid] = sorted_scores[idx[valid]]
                precision[t, :, a, mi] = q
                scores[t, :, a, mi] = ss
    return Accumulated(precision, recall, scores)


def _mean_defined(s: np.ndarray) -> float:
    s = s[s > -1]
    return -1.0 if s.size == 0 else float(np.mean(s))


def average_precision(
    acc: Accumulated, params: Params, iou: float | None, area: str, max_det: int
) -> float:
    """Mean precision over recall thresholds (and IoU thresholds when ``iou`` is None)."""
    a = params.area_labels.index(area)
    m = params.max_dets.index(max_det)
    s = acc.precision
    if iou is not None:
        s = s[np.where(np.isclose(params.iou_thrs, iou, rtol=0, atol=1e-12))[0]]
    return _mean_defined(s[:, :, a, m])


def average_recall(
    acc: Accumulated, params: Params, iou: float | None, area: str, max_det: int
) -> float:
    a = params.area_labels.index(area)
    m = params.max_dets.index(max_det)
    s = acc.recall
    if iou is not None:
        s = s[np.where(np.isclose(params.iou_thrs, iou, rtol=0, atol=1e-12))[0]]
    return _mean_defined(s[:, a, m])


def ap_max_det(params: Params) -> int:
    """maxDets used for AP and the area breakdown: 100 when listed (pycocotools uses the third
    entry, 100 by default), else the largest."""
    return 100 if 100 in params.max_dets else params.max_dets[-1]


def summarize(acc: Accumulated, params: Params) -> dict[str, float]:
    """Stable metric keys (fractions in [0, 1]; -1 when undefined, e.g. no GT in an area range).

    ``AP, AP50, AP75, APs, APm, APl`` at :func:`ap_max_det`; ``AR{m}`` for every m in max_dets;
    ``ARs, ARm, ARl`` at :func:`ap_max_det`; ``AR50@{m}`` recall at IoU 0.5 for every m
    (``AR50@100`` is the paper's AR@100 at IoU 0.5).
    """
    md = ap_max_det(params)
    out = {
        "AP": average_precision(acc, params, None, "all", md),
        "AP50": average_precision(acc, params, 0.5, "all", md),
        "AP75": average_precision(acc, params, 0.75, "all", md),
        "APs": average_precision(acc, params, None, "small", md),
        "APm": average_precision(acc, params, None, "medium", md),
        "APl": average_precision(acc, params, None, "large", md),
    }
    for m in params.max_dets:
        out[f"AR{m}"] = average_recall(acc, params, None, "all", m)
    out["ARs"] = average_recall(acc, params, None, "small", md)
    out["ARm"] = average_recall(acc, params, None, "medium", md)
    out["ARl"] = average_recall(acc, params, None, "large", md)
    for m in params.max_dets:
        out[f"AR50@{m}"] = average_recall(acc, params, 0.5, "all", m)
    return out


def coco_stats(acc: Accumulated, params: Params) -> list[float]:
    """The 12 numbers of pycocotools ``COCOeval.stats`` (segm), quirks included (AP at 100
    detections, the others at the first three max_dets)."""
    p = params
    md = p.max_dets[2] if len(p.max_dets) > 2 else p.max_dets[-1]
    m0 = p.max_dets[0]
    m1 = p.max_dets[1] if len(p.max_dets) > 1 else m0
    # pycocotools' summarize() calls _summarize(1) with its default maxDets=100: -1 when 100 is
    # not among maxDets
    ap = average_precision(acc, p, None, "all", 100) if 100 in p.max_dets else -1.0
    return [
        ap,
        average_precision(acc, p, 0.5, "all", md),
        average_precision(acc, p, 0.75, "all", md),
        average_precision(acc, p, None, "small", md),
        average_precision(acc, p, None, "medium", md),
        average_precision(acc, p, None, "large", md),
        average_recall(acc, p, None, "all", m0),
        average_recall(acc, p, None, "all", m1),
        average_recall(acc, p, None, "all", md),
        average_recall(acc, p, None, "small", md),
        average_recall(acc, p, None, "medium", md),
        average_recall(acc, p, None, "large", md),
    ]
