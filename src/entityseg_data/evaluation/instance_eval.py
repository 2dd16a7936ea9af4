"""Class-aware COCO instance segmentation AP (``eval --task instance``), equal to pycocotools.

pycocotools ``COCOeval(iouType="segm")`` with its default parameters evaluates every (image,
category) pair on its own: the category's detections of the image are sorted by descending score
(stable), cut to ``maxDets[-1]``, matched to the category's GT exactly as in the class-agnostic
case, and accumulated per category over the images in ascending id. The summary numbers average
the precision (recall) entries of every category that has GT in the area range (-1 entries are
left out), so AP is the mean of the per-category APs. This module runs the class-agnostic
matcher (:mod:`.matching`) per (image, category) and keeps, per pair, only the small matching
arrays: memory does not grow with the masks, only with the number of (image, category) pairs.

Inputs: GT = a COCO instances JSON with categories (``export subsets`` writes ``instance.json``;
any COCO file works); predictions = a COCO results JSON ``[{"image_id", "category_id",
"segmentation", "score"}]``. Categories evaluated = the GT's (ascending id); a prediction whose
``category_id`` is not one of them is an error (pycocotools would silently ignore it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.evaluation.image_eval import GTImage, PredImage, mask_ious
from entityseg_data.evaluation.matching import (
    Accumulated,
    ImageResult,
    Params,
    accumulate,
    ap_max_det,
    evaluate_image,
    sort_detections,
)
from entityseg_data.masks import rle as rle_utils

VERSION = 1


@dataclass(frozen=True)
class InstanceGT(GTImage):
    """Ground truth of one image (:class:`GTImage`: ``rles``, ``crowd``, ``areas`` as the GT
    file gives them) with each mask's category: ``category_ids`` (G,)."""

    category_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(frozen=True)
class InstancePred(PredImage):
    """Detections of one image, in input order (:class:`PredImage`: RLEs, (N,) scores) with
    their (N,) category ids."""

    category_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


class InstanceEvaluator:
    """Streaming class-aware mask AP.

    ``categories``: ``{category id: name}`` of the GT (every id evaluated, ascending).
    ``process(gt, pred)`` one image at a time (any order; an image id processed twice replaces
    the first); ``evaluate()`` the metrics dict (:func:`build_instance_metrics`).
    """

    def __init__(self, categories: Mapping[int, str], *, max_dets: Sequence[int] = (1, 10, 100)):
        if not categories:
            raise DataError("class-aware instance evaluation needs at least one GT category")
        self.categories = {int(k): str(v) for k, v in sorted(categories.items())}
        self.params = Params(max_dets=tuple(max_dets))
        self.reset()

    def reset(self) -> None:
        self._results: dict[int, dict[int, ImageResult]] = {c: {} for c in self.categories}
        self._images: dict[int, tuple[int, int]] = {}

    def process(self, gt: InstanceGT, pred: InstancePred) -> None:
        """Match one image's detections to its GT, category by category."""
        iid = int(gt.image_id)
        for per_cat in self._results.values():
            per_cat.pop(iid, None)
        g_cat = np.asarray(gt.category_ids, np.int64)
        d_cat = np.asarray(pred.category_ids, np.int64)
        unknown = set(np.unique(np.concatenate([g_cat, d_cat])).tolist()) - set(self.categories)
        if unknown:
            raise DataError(f"image {iid}: category id(s) {sorted(unknown)} are not GT categories")
        max_det = self.params.max_dets[-1]
        scores = np.asarray(pred.scores, np.float64)
        for c in sorted(set(g_cat.tolist()) | set(d_cat.tolist())):
            gi = np.flatnonzero(g_cat == c)
            di = np.flatnonzero(d_cat == c)
            di = di[sort_detections(scores[di])][:max_det]
            g_rles = [gt.rles[i] for i in gi]
            d_rles = [pred.rles[i] for i in di]
            crowd = np.asarray(gt.crowd, bool)[gi]
            ious = mask_ious(d_rles, g_rles, crowd)
            d_areas = rle_utils.areas(d_rles).astype(np.float64) if d_rles else np.zeros(0)
            self._results[c][iid] = evaluate_image(
                ious, scores[di], d_areas, np.asarray(gt.areas, np.float64)[gi], crowd, self.params
            )
        self._images[iid] = (len(gt.rles), len(pred.rles))

    @property
    def num_images(self) -> int:
        return len(self._images)

    def evaluate(self) -> dict[str, Any]:
        ids = sorted(self._images)
        per_cat = {
            c: accumulate([res[i] for i in ids if i in res], self.params)
            for c, res in self._results.items()
        }
        return build_instance_metrics(
            per_cat,
            self.categories,
            self.params,
            num_images=len(ids),
            num_gt=sum(g for g, _ in self._images.values()),
            num_predictions=sum(d for _, d in self._images.values()),
        )


def _mean_defined(s: np.ndarray) -> float:
    s = s[s > -1]
    return -1.0 if s.size == 0 else float(np.mean(s))


def _iou_index(params: Params, iou: float | None) -> np.ndarray:
    if iou is None:
        return np.arange(len(params.iou_thrs))
    return np.flatnonzero(np.isclose(params.iou_thrs, iou, rtol=0, atol=1e-12))


def class_aware_summary(
    precision: np.ndarray, recall: np.ndarray, params: Params
) -> dict[str, float]:
    """The metric keys of :func:`~entityseg_data.evaluation.matching.summarize` from
    pycocotools-shaped arrays: ``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M); every
    number is the mean of the defined (> -1) entries over IoU thresholds (or one), recall
    thresholds and categories, as pycocotools ``summarize`` does."""
    md = ap_max_det(params)

    def ap(iou: float | None, area: str, m: int) -> float:
        a, mi = params.area_labels.index(area), params.max_dets.index(m)
        return _mean_defined(precision[_iou_index(params, iou)][:, :, :, a, mi])

    def ar(iou: float | None, area: str, m: int) -> float:
        a, mi = params.area_labels.index(area), params.max_dets.index(m)
        return _mean_defined(recall[_iou_index(params, iou)][:, :, a, mi])

    out = {
        "AP": ap(None, "all", md),
        "AP50": ap(0.5, "all", md),
        "AP75": ap(0.75, "all", md),
        "APs": ap(None, "small", md),
        "APm": ap(None, "medium", md),
        "APl": ap(None, "large", md),
    }
    for m in params.max_dets:
        out[f"AR{m}"] = ar(None, "all", m)
    out["ARs"] = ar(None, "small", md)
    out["ARm"] = ar(None, "medium", md)
    out["ARl"] = ar(None, "large", md)
    for m in params.max_dets:
        out[f"AR50@{m}"] = ar(0.5, "all", m)
    return out


def stack_accumulated(per_cat: Sequence[Accumulated]) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``eval['precision']`` (T, R, K, A, M) and ``eval['recall']`` (T, K, A, M)
    from per-category accumulations (in category order)."""
    precision = np.stack([a.precision for a in per_cat], axis=2)
    recall = np.stack([a.recall for a in per_cat], axis=1)
    return precision, recall


def build_instance_metrics(
    per_cat: Mapping[int, Accumulated],
    categories: Mapping[int, str],
    params: Params,
    *,
    num_images: int,
    num_gt: int,
    num_predictions: int,
) -> dict[str, Any]:
    """Metrics JSON of ``eval --task instance`` (fractions; -1 when undefined)::

    {"version": 1, "task": "instance",
     "segm": {AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl, AR50@m...},
     "per_category": {name: {"id", "AP", "AP50", "AP75"}},   # -1: no GT of the category
     "info": {"num_images", "num_gt", "num_predictions", "num_categories", "max_dets",
              "ap_max_dets", "class_agnostic": false}}
    """
    cats = sorted(categories)
    precision, recall = stack_accumulated([per_cat[c] for c in cats])
    md = ap_max_det(params)
    a, mi = params.area_labels.index("all"), params.max_dets.index(md)
    per_category: dict[str, Any] = {}
    for k, c in enumerate(cats):
        row: dict[str, int | float] = {"id": int(c)}
        for key, iou in (("AP", None), ("AP50", 0.5), ("AP75", 0.75)):
            row[key] = _mean_defined(precision[_iou_index(params, iou)][:, :, k, a, mi])
        name = categories[c]
        per_category[name if name not in per_category else f"{name} (id {c})"] = row
    return {
        "version": VERSION,
        "task": "instance",
        "segm": class_aware_summary(precision, recall, params),
        "per_category": per_category,
        "info": {
            "num_images": int(num_images),
            "num_gt": int(num_gt),
            "num_predictions": int(num_predictions),
            "num_categories": len(cats),
            "max_dets": list(params.max_dets),
            "ap_max_dets": md,
            "class_agnostic": False,
        },
    }


# ------------------------------------------------------------------------------------ files
@dataclass(frozen=True)
class InstanceGTSet:
    """Validated class-aware GT: images by ascending id, categories ``{id: name}``."""

    images: dict[int, InstanceGT]
    categories: dict[int, str]
    source: str


def load_instance_gt(source: str | Path | Mapping[str, Any]) -> InstanceGTSet:
    """Class-aware GT from a COCO instances JSON (path or dict), read by the strict
    :func:`entityseg_data.io.coco.read_coco` (one DataError naming the file and record)."""
    from entityseg_data.evaluation.coco_io import gt_set
    from entityseg_data.io.coco import read_coco

    ds = read_coco(source, what="ground truth")
    if ds.is_panoptic:
        raise DataError(f"{ds.source}: a panoptic file; use --task panoptic")
    cats = {c.id: c.name for c in ds.categories}
    if not cats:
        raise DataError(f"{ds.source}: no 'categories': class-aware evaluation needs them")
    for a in ds.annotations:
        if a.category_id is None:
            raise DataError(
                f"{ds.source}: annotation {a.id} of image {a.image_id} has no 'category_id'"
            )
    per = ds.annotations_by_image()
    images = {
        iid: InstanceGT(
            image_id=g.image_id,
            height=g.height,
            width=g.width,
            rles=g.rles,
            crowd=g.crowd,
            areas=g.areas,
            category_ids=np.asarray([a.category_id for a in per[iid]], np.int64),
        )
        for iid, g in gt_set(ds).images.items()  # the class-agnostic view, plus categories
    }
    return InstanceGTSet(images=dict(sorted(images.items())), categories=cats, source=ds.source)


def load_instance_predictions(
    source: str | Path | list[Any] | Mapping[str, Any], gt: InstanceGTSet
) -> dict[int, InstancePred]:
    """Detections by image id (every GT image present) from a COCO results JSON (path, list,
    or a dict with the list under ``annotations``), read by the strict
    :func:`entityseg_data.io.coco.read_results` against ``gt`` (every result needs a GT
    ``category_id``)."""
    from entityseg_data.io.coco import read_results

    sizes = {iid: (g.height, g.width) for iid, g in gt.images.items()}
    per: dict[int, tuple[list, list, list]] = {i: ([], [], []) for i in gt.images}
    for r in read_results(source, sizes, categories=gt.categories):
        per[r.image_id][0].append(r.segmentation)
        per[r.image_id][1].append(r.score)
        per[r.image_id][2].append(r.category_id)
    return {
        iid: InstancePred(
            rles=tuple(r), scores=np.asarray(s, np.float64), category_ids=np.asarray(c, np.int64)
        )
        for iid, (r, s, c) in per.items()
    }


def evaluate_instance_files(
    gt: str | Path | Mapping[str, Any],
    pred: str | Path | list[Any] | Mapping[str, Any],
    *,
    max_dets: Sequence[int] = (1, 10, 100),
    progress: bool = False,
) -> dict[str, Any]:
    """Class-aware mask AP of a COCO results file against a COCO instances GT (pycocotools
    ``COCOeval(iouType="segm")`` numbers, plus per-category AP)."""
    gts = load_instance_gt(gt)
    preds = load_instance_predictions(pred, gts)
    ev = InstanceEvaluator(gts.categories, max_dets=max_dets)
    items: Iterable[int] = gts.images
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(gts.images), desc="eval instance", unit="img")
    for iid in items:
        ev.process(gts.images[iid], preds[iid])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return ev.evaluate()
