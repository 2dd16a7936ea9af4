"""Panoptic quality PQ / SQ / RQ with the things / stuff split (``eval --task panoptic``), as the
reference ``panopticapi.evaluation.pq_compute`` defines it.

Per image, from the GT and predicted panoptic PNGs (``id = R + 256 G + 256^2 B``, 0 = void) and
their ``segments_info``:

- areas: predicted segments from their PNG; GT segments from the JSON ``area`` when given (as
  panopticapi), else from the PNG;
- a GT segment and a predicted segment of the same category match when
  ``IoU = |g & p| / (|p| + |g| - |g & p| - |void_gt & p|) > 0.5`` (the prediction's pixels on GT
  void do not count against it); crowd GT segments never match; each match adds 1 to TP and its
  IoU to the category's IoU sum;
- unmatched non-crowd GT segments are false negatives;
- an unmatched predicted segment is ignored when more than half of it lies on GT void plus the
  GT crowd segment of its category (panopticapi keeps one crowd segment per category and image:
  the last one listed), else it is a false positive.

Per category ``PQ = IoU_sum / (TP + FP/2 + FN/2)``, ``SQ = IoU_sum / TP`` (0 without TP),
``RQ = TP / (TP + FP/2 + FN/2)``; the All / Things / Stuff numbers average the categories of the
GT file (of that kind) with ``TP + FP + FN > 0``. Values are fractions; -1 when no category
counts (panopticapi divides by zero there).

Streaming: an image is reduced to four small per-category count vectors; its PNGs are decoded
one at a time and the pair-wise intersections are counted in row stripes of
``STRIPE_PIXELS`` pixels with a compact index per image, so the working memory is the two
decoded images plus a few stripe-sized arrays, whatever the size of the set (peak RSS 185 MB at
12 MP, the same for 1 or 3 images: benchmarks/bench_eval_classaware.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from entityseg_data.errors import DataError
from entityseg_data.io.coco import PanopticSegment, panoptic_ids, read_panoptic

VERSION = 1
STRIPE_PIXELS = 1 << 20


#: One ``segments_info`` entry: ``id`` (PNG id), ``category_id``, ``iscrowd``, ``area`` (the
#: JSON's, or None); the record the COCO reader returns.
Segment = PanopticSegment


@dataclass(frozen=True)
class PanopticCategory:
    id: int
    name: str
    isthing: bool | None


class _Index:
    """Compact index of one image's segment ids: 0 = void / unlisted, i = segments[i - 1]."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        ids = np.asarray([s.id for s in segments], np.int64)
        self.order = np.argsort(ids, kind="stable")
        self.sorted_ids = ids[self.order]
        self.n = len(segments)

    def lookup(self, ids: np.ndarray, where: str) -> np.ndarray:
        """Compact indices (int64) of PNG ids; DataError for an id neither 0 nor listed."""
        if self.n == 0:
            bad = ids[ids != 0]
            if bad.size:
                raise DataError(f"{where}: segment id {int(bad[0])} is in the PNG, not in the JSON")
            return np.zeros(ids.shape, np.int64)
        pos = np.minimum(np.searchsorted(self.sorted_ids, ids), self.n - 1)
        found = self.sorted_ids[pos] == ids
        bad = ~found & (ids != 0)
        if bad.any():
            raise DataError(
                f"{where}: segment id {int(ids[bad][0])} is in the PNG, not in the JSON"
            )
        return np.where(found, self.order[pos] + 1, 0)


def _rgb_rows(source: Any, where: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a panoptic PNG path, or an (H, W) id array / (H, W, 3) RGB given
    directly (returned as (H, W, 3) uint8 or (H, W) uint32)."""
    if isinstance(source, np.ndarray):
        if source.ndim == 3 and source.shape[2] >= 3:
            return np.ascontiguousarray(source[..., :3].astype(np.uint8))
        if source.ndim == 2:
            if source.size and (int(source.min()) < 0 or int(source.max()) >= 1 << 24):
                raise DataError(f"{where}: segment ids must be in 0..2^24-1")
            return source.astype(np.uint32)
        raise DataError(f"{where}: expected an (H, W) id map or (H, W, 3) RGB, got {source.shape}")
    from entityseg_data.io.images import ImageLimits, read_label_array

    limits = ImageLimits(max_bytes=1 << 30)
    return read_label_array(source, "panoptic PNG", modes=("RGB", "RGBA"), limits=limits)


def _stripes(a: np.ndarray) -> Iterator[np.ndarray]:
    rows = max(1, STRIPE_PIXELS // max(1, a.shape[1]))
    for y in range(0, a.shape[0], rows):
        part = a[y : y + rows]
        yield (panoptic_ids(part) if part.ndim == 3 else part.astype(np.int64)).reshape(-1)


def image_counts(
    gt_png: Any,
    gt_segments: Sequence[Segment],
    pred_png: Any,
    pred_segments: Sequence[Segment],
    *,
    where: str = "image",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of one image: ``(inter, gt_area, pred_area)`` with ``inter`` (G+1, P+1) the
    intersections of GT segment i (row i, 0 = void/unlisted) with predicted segment j (column j,
    0 = void), ``gt_area`` (G,) and ``pred_area`` (P,) from the PNGs. PNGs are paths or arrays
    (RGB or id maps); both must have the same size."""
    g_where = f"{where} (ground truth{'' if isinstance(gt_png, np.ndarray) else f' {gt_png}'})"
    p_where = f"{where} (prediction{'' if isinstance(pred_png, np.ndarray) else f' {pred_png}'})"
    g_rgb = _rgb_rows(gt_png, g_where)
    p_rgb = _rgb_rows(pred_png, p_where)
    if g_rgb.shape[:2] != p_rgb.shape[:2]:
        raise DataError(
            f"{where}: prediction PNG is {p_rgb.shape[0]}x{p_rgb.shape[1]}, ground truth "
            f"{g_rgb.shape[0]}x{g_rgb.shape[1]}"
        )
    gi, pi = _Index(gt_segments), _Index(pred_segments)
    cols = pi.n + 1
    inter: npt.NDArray[np.int64] = np.zeros((gi.n + 1) * cols, np.int64)
    for g_ids, p_ids in zip(_stripes(g_rgb), _stripes(p_rgb)):
        g = gi.lookup(g_ids, g_where)
        p = pi.lookup(p_ids, p_where)
        inter += np.bincount(g * cols + p, minlength=inter.size)
    inter = inter.reshape(gi.n + 1, cols)
    return inter, inter[1:].sum(1), inter[:, 1:].sum(0)


def pq_image(
    gt_png: Any,
    gt_segments: Sequence[Segment],
    pred_png: Any,
    pred_segments: Sequence[Segment],
    category_index: Mapping[int, int],
    *,
    where: str = "image",
) -> np.ndarray:
    """(4, K) float64 per-category ``[iou_sum, tp, fp, fn]`` of one image (panopticapi's
    ``pq_compute_single_core`` for one image); ``category_index`` maps category id -> column."""
    for s in pred_segments:
        if s.category_id not in category_index:
            raise DataError(
                f"{where}: predicted segment {s.id} has unknown category_id {s.category_id}"
            )
    for s in gt_segments:
        if s.category_id not in category_index:
            raise DataError(f"{where}: GT segment {s.id} has unknown category_id {s.category_id}")
    inter, g_png_area, p_area = image_counts(
        gt_png, gt_segments, pred_png, pred_segments, where=where
    )
    absent = [s.id for s, a in zip(pred_segments, p_area) if a == 0]
    if absent:
        raise DataError(f"{where}: predicted segment(s) {absent} are in the JSON, not in the PNG")
    g_area = np.asarray(
        [s.area if s.area is not None else a for s, a in zip(gt_segments, g_png_area)],
        np.float64,
    )
    out = np.zeros((4, len(category_index)), np.float64)
    g_cat = np.asarray([category_index[s.category_id] for s in gt_segments], np.int64)
    p_cat = np.asarray([category_index[s.category_id] for s in pred_segments], np.int64)
    g_crowd = np.asarray([bool(s.iscrowd) for s in gt_segments], bool)
    void_p = inter[0, 1:].astype(np.float64)
    g_matched = np.zeros(len(gt_segments), bool)
    p_matched = np.zeros(len(pred_segments), bool)
    rows, cols = np.nonzero(inter[1:, 1:])
    for g, p in zip(rows.tolist(), cols.tolist()):
        if g_crowd[g] or g_cat[g] != p_cat[p]:
            continue
        i = float(inter[g + 1, p + 1])
        iou = i / (p_area[p] + g_area[g] - i - void_p[p])
        if iou > 0.5:
            out[0, g_cat[g]] += iou
            out[1, g_cat[g]] += 1
            g_matched[g] = True
            p_matched[p] = True
    crowd_of: dict[int, int] = {}
    for g in range(len(gt_segments)):
        if g_matched[g]:
            continue
        if g_crowd[g]:
            crowd_of[int(g_cat[g])] = g  # the last crowd segment of a category wins
            continue
        out[3, g_cat[g]] += 1
    for p in range(len(pred_segments)):
        if p_matched[p]:
            continue
        ignored = void_p[p]
        if int(p_cat[p]) in crowd_of:
            ignored += float(inter[crowd_of[int(p_cat[p])] + 1, p + 1])
        if ignored / p_area[p] > 0.5:
            continue
        out[2, p_cat[p]] += 1
    return out


def pq_summary(
    stats: np.ndarray, categories: Sequence[PanopticCategory]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """``({"All"|"Things"|"Stuff": {"PQ", "SQ", "RQ", "n"}}, per_category)`` from (4, K) sums
    (panopticapi's ``pq_average``). Categories with ``isthing`` None count in All only."""
    iou, tp, fp, fn = stats
    den = tp + 0.5 * fp + 0.5 * fn
    counted = (tp + fp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        pq = np.where(counted, iou / np.where(den > 0, den, 1), 0.0)
        sq = np.where(tp > 0, iou / np.where(tp > 0, tp, 1), 0.0)
        rq = np.where(counted, tp / np.where(den > 0, den, 1), 0.0)
    per: dict[str, dict[str, Any]] = {}
    for k, c in enumerate(categories):
        name = c.name if c.name not in per else f"{c.name} (id {c.id})"
        per[name] = {
            "id": c.id,
            "isthing": c.isthing,
            "PQ": float(pq[k]),
            "SQ": float(sq[k]),
            "RQ": float(rq[k]),
            "TP": int(tp[k]),
            "FP": int(fp[k]),
            "FN": int(fn[k]),
            "counted": bool(counted[k]),
        }
    summary = {}
    for label, want in (("All", None), ("Things", True), ("Stuff", False)):
        sel = np.asarray(
            [counted[k] and (want is None or c.isthing is want) for k, c in enumerate(categories)],
            bool,
        )
        n = int(sel.sum())
        summary[label] = {
            "PQ": float(pq[sel].sum() / n) if n else -1.0,
            "SQ": float(sq[sel].sum() / n) if n else -1.0,
            "RQ": float(rq[sel].sum() / n) if n else -1.0,
            "n": n,
        }
    return summary, per


class PanopticEvaluator:
    """Streaming PQ: ``process(...)`` per image (:func:`pq_image` arguments), ``evaluate()``."""

    def __init__(self, categories: Sequence[PanopticCategory]) -> None:
        if not categories:
            raise DataError("panoptic evaluation needs the GT categories")
        self.categories = tuple(categories)
        self.index = {c.id: k for k, c in enumerate(self.categories)}
        self.reset()

    def reset(self) -> None:
        self._per_image: dict[int, np.ndarray] = {}
        self._counts: dict[int, tuple[int, int]] = {}

    def process(
        self,
        image_id: int,
        gt_png: Any,
        gt_segments: Sequence[Segment],
        pred_png: Any,
        pred_segments: Sequence[Segment],
    ) -> np.ndarray:
        res = pq_image(
            gt_png, gt_segments, pred_png, pred_segments, self.index, where=f"image {image_id}"
        )
        self._per_image[int(image_id)] = res
        self._counts[int(image_id)] = (len(gt_segments), len(pred_segments))
        return res

    def evaluate(self) -> dict[str, Any]:
        """``{"version", "task": "panoptic", "All"|"Things"|"Stuff": {PQ, SQ, RQ, n},
        "per_category": {name: {id, isthing, PQ, SQ, RQ, TP, FP, FN, counted}},
        "info": {num_images, num_gt_segments, num_pred_segments, num_categories}}``."""
        total = np.zeros((4, len(self.categories)))
        for iid in sorted(self._per_image):
            total += self._per_image[iid]
        summary, per = pq_summary(total, self.categories)
        return {
            "version": VERSION,
            "task": "panoptic",
            **summary,
            "per_category": per,
            "info": {
                "num_images": len(self._per_image),
                "num_gt_segments": int(sum(g for g, _ in self._counts.values())),
                "num_pred_segments": int(sum(p for _, p in self._counts.values())),
                "num_categories": len(self.categories),
            },
        }


# ------------------------------------------------------------------------------------ files
def default_png_folder(json_path: str | Path) -> Path:
    """panopticapi's default PNG folder of ``X.json``: ``X`` (``export subsets`` writes
    ``panoptic.json`` beside ``panoptic/``)."""
    p = Path(json_path)
    return p.with_suffix("") if p.suffix.lower() == ".json" else p


def evaluate_panoptic_files(
    gt_json: str | Path | Mapping[str, Any],
    pred_json: str | Path | Mapping[str, Any],
    *,
    gt_folder: str | Path | None = None,
    pred_folder: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """PQ / SQ / RQ of a COCO panoptic prediction (JSON + PNG folder) against a COCO panoptic GT
    (JSON + PNG folder; default folders as panopticapi: ``X`` for ``X.json``). Every GT image
    needs a prediction; predictions of images not in the GT are ignored (as panopticapi).

    Both JSONs are read by the strict COCO reader (:func:`entityseg_data.io.coco.
    read_panoptic`: one annotation per image, one DataError naming the file and record)."""
    gt = read_panoptic(gt_json, what="panoptic ground truth")
    pred = read_panoptic(pred_json, what="panoptic predictions")
    if gt_folder is None:
        if not isinstance(gt_json, str | os.PathLike):
            raise DataError("gt_folder is needed when the GT is not a file")
        gt_folder = default_png_folder(gt_json)
    if pred_folder is None:
        if not isinstance(pred_json, str | os.PathLike):
            raise DataError("pred_folder is needed when the predictions are not a file")
        pred_folder = default_png_folder(pred_json)
    for folder, what in ((gt_folder, "ground truth"), (pred_folder, "prediction")):
        if not Path(folder).is_dir():
            raise DataError(f"{folder}: the {what} PNG folder does not exist")
    ev = PanopticEvaluator(
        [PanopticCategory(id=c.id, name=c.name, isthing=c.isthing) for c in gt.categories]
    )
    preds = pred.panoptic_by_image()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(gt.panoptic), desc="eval panoptic", unit="img")
    for g in gt.panoptic:
        p = preds.get(g.image_id)
        if p is None:
            raise DataError(f"{pred.source}: no prediction for the image with id {g.image_id}")
        ev.process(
            g.image_id,
            Path(gt_folder) / g.file_name,
            g.segments,
            Path(pred_folder) / p.file_name,
            p.segments,
        )
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return ev.evaluate()
