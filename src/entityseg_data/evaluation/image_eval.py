"""One image's evaluation: IoUs on RLEs (mask and boundary) and COCO matching.

Masks never leave RLE form except inside a mask's bounding box while its boundary band is built
(see :mod:`entityseg_data.evaluation.boundary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from entityseg_data.evaluation import boundary as boundary_mod
from entityseg_data.evaluation.matching import ImageResult, Params, evaluate_image, sort_detections
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.rle import RLE


@dataclass(frozen=True)
class GTImage:
    """Ground truth of one image. ``rles`` are compressed RLEs of size (height, width) in file
    order; ``crowd`` (G,) bool; ``areas`` (G,) pixels as given by the GT file (COCO uses the
    file's ``area`` for the S/M/L ranges)."""

    image_id: int
    height: int
    width: int
    rles: tuple[RLE, ...] = ()
    crowd: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class PredImage:
    """Predictions of one image: compressed RLEs and (N,) float scores, in input order."""

    rles: tuple[RLE, ...] = ()
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class PairResult:
    """Matching results of one image (None when it has neither GT nor predictions), the
    number of pixels covered by more than one prediction, and the GT bands (for caching)."""

    image_id: int
    segm: ImageResult
    boundary: ImageResult
    overlap_pixels: int
    num_gt: int
    num_pred: int
    gt_bands: tuple[RLE, ...] | None = None


def mask_ious(
    dt: Sequence[RLE], gt: Sequence[RLE], crowd: Sequence[bool] | npt.NDArray[np.bool_]
) -> np.ndarray:
    """(D, G) COCO mask IoU (crowd GT: intersection / detection area)."""
    # the RLEs were read by the strict reader (coco_io): no second validation
    return rle_utils.iou_matrix(dt, gt, [int(c) for c in crowd], trusted=True)


def gt_bands_of(gt: GTImage, dilation_ratio: float) -> tuple[RLE, ...]:
    """Band RLEs of the GT masks (crowd GT keep their mask: they use plain mask IoU)."""
    d = boundary_mod.band_width(gt.height, gt.width, dilation_ratio)
    idx = [i for i in range(len(gt.rles)) if not gt.crowd[i]]
    sub = [gt.rles[i] for i in idx]
    disjoint = rle_utils.overlap_pixels(sub) == 0 if len(sub) > 1 else True
    b = boundary_mod.bands(sub, gt.height, gt.width, d, disjoint=disjoint)
    out = list(gt.rles)
    for i, r in zip(idx, b):
        out[i] = r
    return tuple(out)


def evaluate_pair(
    gt: GTImage,
    pred: PredImage,
    params: Params,
    *,
    boundary: bool = False,
    dilation_ratio: float = 0.02,
    gt_bands: Sequence[RLE] | None = None,
) -> PairResult:
    """Segm (and boundary) matching of one image.

    Boundary IoU of a (detection, GT) pair = min(mask IoU, band IoU); crowd GT use the plain mask
    IoU (intersection over detection area), exactly as the official boundary-AP tool.
    """
    order = sort_detections(pred.scores)[: params.max_dets[-1]]
    dt = [pred.rles[i] for i in order]
    scores = np.asarray(pred.scores, dtype=np.float64)[order]
    dt_areas = rle_utils.areas(dt).astype(np.float64) if dt else np.zeros(0)
    crowd = np.asarray(gt.crowd, dtype=bool)
    ious = mask_ious(dt, list(gt.rles), crowd)
    overlap = rle_utils.overlap_pixels(list(pred.rles)) if len(pred.rles) > 1 else 0
    segm = evaluate_image(ious, scores, dt_areas, gt.areas, crowd, params)
    bres: ImageResult = None
    bands_out = None
    if boundary:
        if gt_bands is None and len(gt.rles):
            gt_bands = gt_bands_of(gt, dilation_ratio)
        bands_out = tuple(gt_bands) if gt_bands is not None else ()
        b_ious = ious.copy()
        if dt and len(gt.rles) and not crowd.all():
            d = boundary_mod.band_width(gt.height, gt.width, dilation_ratio)
            disjoint = overlap == 0 or rle_utils.overlap_pixels(dt) == 0
            dt_b = boundary_mod.bands(dt, gt.height, gt.width, d, disjoint=disjoint)
            bi = mask_ious(dt_b, list(bands_out), crowd)
            nc = ~crowd
            b_ious[:, nc] = np.minimum(ious[:, nc], bi[:, nc])
        bres = evaluate_image(b_ious, scores, dt_areas, gt.areas, crowd, params)
    return PairResult(
        image_id=gt.image_id,
        segm=segm,
        boundary=bres,
        overlap_pixels=int(overlap),
        num_gt=len(gt.rles),
        num_pred=len(pred.rles),
        gt_bands=bands_out,
    )
