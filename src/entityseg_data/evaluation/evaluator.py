"""Streaming evaluator and whole-file evaluation.

:class:`Evaluator` is fed one image at a time (``process``) and keeps only the small per-image
matching arrays (scores and match flags of at most ``max_dets[-1]`` detections), never dense
masks of the set; GT boundary bands are cached as RLEs across ``reset()`` so repeated validation
runs of a training job build them once.

:func:`evaluate_files` evaluates a GT file against a results JSON or a label-map PNG folder,
optionally in worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.config.evaluation import EvaluationConfig
from entityseg_data.errors import DataError
from entityseg_data.evaluation.coco_io import (
    _segmentation,
    label_map_predictions,
    load_gt,
    load_predictions,
    resolve,
)
from entityseg_data.evaluation.image_eval import GTImage, PairResult, PredImage, evaluate_pair
from entityseg_data.evaluation.matching import Params
from entityseg_data.evaluation.metrics import build_metrics
from entityseg_data.evaluation.overlaps import fix_overlaps as _fix_overlaps
from entityseg_data.io.coco import checked_score
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks import runs as mask_runs
from entityseg_data.masks.rle import RLE

log = logging.getLogger(__name__)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_gt_image(gt: Any) -> GTImage:
    """Normalise one image's ground truth.

    Accepts a :class:`GTImage`; an :class:`~entityseg_data.masks.store.ImageAnnotation`; or a
    mapping ``{"image_id" | "id", "height", "width", "annotations" | "entities": [{"segmentation":
    RLE/polygons, "iscrowd": 0/1 (optional), "area": pixels (optional)}]}``; or a mapping with
    ``"label_map"``: an (H, W) integer array (k > 0 = entity k, no crowd).
    """
    if isinstance(gt, GTImage):
        return gt
    if hasattr(gt, "entities") and hasattr(gt, "image_id"):
        ent_rles = tuple(e.segmentation for e in gt.entities)
        return GTImage(
            image_id=int(gt.image_id),
            height=int(gt.height),
            width=int(gt.width),
            rles=ent_rles,
            crowd=np.zeros(len(ent_rles), bool),
            areas=rle_utils.areas(list(ent_rles)).astype(np.float64),
        )
    if not isinstance(gt, Mapping):
        raise DataError(f"unsupported ground-truth record of type {type(gt).__name__}")
    iid = gt.get("image_id", gt.get("id"))
    if iid is None:
        raise DataError("ground-truth record needs 'image_id'")
    where = f"ground truth of image {iid}"
    if "label_map" in gt:
        lm = _to_numpy(gt["label_map"])
        p = label_map_predictions(lm, None, where=where)
        return GTImage(
            image_id=int(iid),
            height=lm.shape[0],
            width=lm.shape[1],
            rles=p.rles,
            crowd=np.zeros(len(p.rles), bool),
            areas=rle_utils.areas(list(p.rles)).astype(np.float64),
        )
    try:
        h, w = int(gt["height"]), int(gt["width"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: needs integer 'height' and 'width'") from None
    anns = gt.get("annotations", gt.get("entities", []))
    rles, crowd, areas = [], [], []
    for i, a in enumerate(anns):
        rle = _segmentation(a["segmentation"], h, w, f"{where}, annotation {i}")
        rles.append(rle)
        crowd.append(bool(a.get("iscrowd", 0)))
        areas.append(float(a["area"]) if a.get("area") is not None else float(rle_utils.area(rle)))
    return GTImage(
        image_id=int(iid),
        height=h,
        width=w,
        rles=tuple(rles),
        crowd=np.asarray(crowd, bool),
        areas=np.asarray(areas, np.float64),
    )


def as_predictions(pred: Any, height: int, width: int, where: str = "predictions") -> PredImage:
    """Normalise one image's predictions.

    Accepts a :class:`PredImage`; a list of ``{"segmentation": RLE, "score": float}``; a mapping
    ``{"masks": (N, H, W) bool/uint8 array or tensor (binary; float masks are refused),
    "scores": (N,)}``; or a mapping
    ``{"label_map": (H, W) ints, "scores": {k: score} | (K+1,) array indexed by k}``.
    """
    if isinstance(pred, PredImage):
        return pred
    if isinstance(pred, Mapping) and "label_map" in pred:
        lm = _to_numpy(pred["label_map"])
        if lm.shape != (height, width):
            raise DataError(f"{where}: label map shape {lm.shape} differs from {height}x{width}")
        sc = pred.get("scores")
        if sc is not None and not isinstance(sc, Mapping):
            arr = _to_numpy(sc).astype(np.float64)
            sc = {k: float(arr[k]) for k in range(len(arr))}
        return label_map_predictions(lm, sc, where=where)
    if isinstance(pred, Mapping) and "masks" in pred:
        masks = _to_numpy(pred["masks"])
        scores = _to_numpy(pred["scores"]).astype(np.float64).reshape(-1)
        if masks.ndim != 3 or masks.shape[1:] != (height, width) or len(masks) != len(scores):
            raise DataError(
                f"{where}: masks {masks.shape} / scores {scores.shape} do not match "
                f"(N, {height}, {width})"
            )
        for i, s in enumerate(scores):
            checked_score(float(s), f"{where}: mask {i}")
        if masks.dtype.kind == "f":
            raise DataError(f"{where}: masks must be binary (bool/uint8), got {masks.dtype}")
        if masks.dtype != np.uint8:
            masks = masks.view(np.uint8) if masks.dtype == bool else (masks != 0).view(np.uint8)
        # the encoder wants column-major masks: one tiled transpose per mask
        rles = tuple(rle_utils.encode_fortran_view(mask_runs.transpose(m)) for m in masks)
        return PredImage(rles=rles, scores=scores)
    if isinstance(pred, Sequence):
        seq_rles: list[RLE] = []
        seq_scores: list[float] = []
        for i, p in enumerate(pred):
            w = f"{where} [{i}]"
            seq_rles.append(_segmentation(p["segmentation"], height, width, w))
            seq_scores.append(checked_score(p["score"], w))
        return PredImage(rles=tuple(seq_rles), scores=np.asarray(seq_scores, np.float64))
    raise DataError(f"{where}: unsupported predictions of type {type(pred).__name__}")


class Evaluator:
    """Streaming class-agnostic COCO mask AP / AR and boundary AP.

    Example::

        ev = Evaluator(boundary=True)
        for gt, pred in batches:
            ev.process(gt, pred)         # see as_gt_image / as_predictions for the forms
        metrics = ev.evaluate()          # the metrics dict (metrics.py documents the keys)
        ev.reset()                       # next run; cached GT bands are kept
    """

    def __init__(
        self,
        *,
        boundary: bool = True,
        dilation_ratio: float = 0.02,
        max_dets: Sequence[int] = (1, 10, 100),
        fix_overlaps: bool = False,
        cache_gt_bands: bool = True,
    ) -> None:
        self.params = Params(max_dets=tuple(max_dets))
        self.boundary = bool(boundary)
        self.dilation_ratio = float(dilation_ratio)
        self.fix_overlaps = bool(fix_overlaps)
        self.cache_gt_bands = bool(cache_gt_bands)
        # (image id, size, hash of the GT RLEs) -> GT band RLEs
        self._band_cache: dict[tuple[int, int, int, int], tuple[Any, ...]] = {}
        self._results: dict[int, PairResult] = {}

    @classmethod
    def from_config(cls, config: EvaluationConfig, **kwargs: Any) -> Evaluator:
        return cls(
            boundary=config.boundary,
            dilation_ratio=config.dilation_ratio,
            max_dets=config.max_dets,
            **kwargs,
        )

    def reset(self) -> None:
        """Forget processed images (the GT band cache is kept)."""
        self._results = {}

    def process(self, gt_image: Any, predictions: Any) -> PairResult:
        """Evaluate one image (GT and predictions in any form of :func:`as_gt_image` /
        :func:`as_predictions`). Processing the same image id twice replaces the first."""
        gt = as_gt_image(gt_image)
        pred = as_predictions(
            predictions, gt.height, gt.width, where=f"predictions of image {gt.image_id}"
        )
        if self.fix_overlaps:
            pred = _fix_overlaps(pred, gt.height, gt.width)
        key = (gt.image_id, gt.height, gt.width, hash(tuple(r["counts"] for r in gt.rles)))
        bands = self._band_cache.get(key) if self.cache_gt_bands else None
        res = evaluate_pair(
            gt,
            pred,
            self.params,
            boundary=self.boundary,
            dilation_ratio=self.dilation_ratio,
            gt_bands=bands,
        )
        if self.boundary and self.cache_gt_bands and res.gt_bands is not None:
            self._band_cache[key] = res.gt_bands
        slim = PairResult(
            image_id=res.image_id,
            segm=res.segm,
            boundary=res.boundary,
            overlap_pixels=res.overlap_pixels,
            num_gt=res.num_gt,
            num_pred=res.num_pred,
        )
        self._results[gt.image_id] = slim
        return slim

    @property
    def num_images(self) -> int:
        return len(self._results)

    def evaluate(self) -> dict[str, Any]:
        """Metrics of the images processed since the last reset (see metrics.py for keys)."""
        return build_metrics(
            list(self._results.values()),
            self.params,
            boundary=self.boundary,
            dilation_ratio=self.dilation_ratio,
            fixed_overlaps=self.fix_overlaps,
        )


def _work(args: tuple) -> PairResult:
    gt, pred, params, boundary, ratio, fix = args
    pred = resolve(pred, gt)
    if fix:
        pred = _fix_overlaps(pred, gt.height, gt.width)
    r = evaluate_pair(gt, pred, params, boundary=boundary, dilation_ratio=ratio)
    return PairResult(
        image_id=r.image_id,
        segm=r.segm,
        boundary=r.boundary,
        overlap_pixels=r.overlap_pixels,
        num_gt=r.num_gt,
        num_pred=r.num_pred,
    )


def evaluate_files(
    gt: str | Path | Mapping[str, Any],
    pred: str | Path | list[Any] | Mapping[str, Any],
    *,
    boundary: bool = False,
    max_dets: Sequence[int] = (1, 10, 100),
    dilation_ratio: float = 0.02,
    fix_overlaps: bool = False,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate predictions against a GT file (class-agnostic).

    Args:
        gt: COCO/EntitySeg instance JSON (path or dict).
        pred: COCO results JSON (path, list or dict) or a folder of label-map PNGs.
        boundary: also compute boundary AP (``"boundary"`` key).
        max_dets: detections per image for AR (AP uses 100 when listed).
        dilation_ratio: boundary band width as a fraction of the image diagonal.
        fix_overlaps: make each image's predictions disjoint by score first.
        workers: worker processes (0 = in this process).
        progress: show a tqdm bar.

    Returns:
        the metrics dict documented in :mod:`entityseg_data.evaluation.metrics`.
    """
    gts = load_gt(gt)
    preds = load_predictions(pred, gts)
    params = Params(max_dets=tuple(max_dets))
    tasks: Iterable[tuple] = (
        (gts.images[i], preds[i], params, boundary, dilation_ratio, fix_overlaps)
        for i in gts.image_ids
    )
    n = len(gts.images)
    results: list[PairResult] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="eval", unit="img")
    if workers and workers > 0 and n > 1:
        import os
        from concurrent.futures import ProcessPoolExecutor

        from entityseg_data.procs import die_with_parent

        with ProcessPoolExecutor(
            max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)
        ) as ex:
            for r in ex.map(_work, tasks, chunksize=1):
                results.append(r)
                if bar:
                    bar.update(1)
    else:
        for t in tasks:
            results.append(_work(t))
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    metrics = build_metrics(
        results,
        params,
        boundary=boundary,
        dilation_ratio=dilation_ratio,
        fixed_overlaps=fix_overlaps,
    )
    ov = metrics["info"]["images_with_overlaps"]
    if ov and not fix_overlaps:
        log.warning(
            "%d image(s) have overlapping predictions (%d pixels): AP^e assumes non-overlapping "
            "entities; use fix_overlaps / --fix-overlaps to resolve them by score",
            ov,
            metrics["info"]["overlapping_pixels"],
        )
    return metrics
