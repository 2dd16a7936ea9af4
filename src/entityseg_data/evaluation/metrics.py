"""The metrics JSON of ``entityseg-data eval`` and :class:`~entityseg_data.evaluation.Evaluator`.

Layout (stable keys, version 1; all AP/AR values are fractions in [0, 1], -1 when undefined, e.g.
no GT in an area range; multiply by 100 for the paper's tables)::

    {
      "version": 1,
      "segm":     {"AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", ["AR1000"], "ARs", "ARm", "ARl",
                   "AR50@1", "AR50@10", "AR50@100", ["AR50@1000"]},
      "boundary": {same keys}            # only with boundary evaluation
      "info": {"num_images", "num_gt", "num_predictions", "max_dets", "ap_max_dets",
               "dilation_ratio", "class_agnostic": true,
               "images_with_overlaps", "overlapping_pixels", "fixed_overlaps"}
    }

``AP`` is COCO mask AP over IoU 0.50:0.95 (AP^e when the predictions do not overlap), at
``ap_max_dets`` detections per image (100 when listed in ``max_dets``, as pycocotools); ``AR{m}``
is recall averaged over IoU thresholds with at most m detections; ``AR50@100`` is recall at IoU 0.5
with 100 detections (the paper's Table 7 "AR@100"). ``boundary`` holds the same keys computed with
IoU = min(mask IoU, boundary IoU) (crowd GT: mask IoU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from entityseg_data.evaluation.image_eval import PairResult
from entityseg_data.evaluation.matching import Params, accumulate, ap_max_det, summarize

VERSION = 1


def build_metrics(
    results: Sequence[PairResult],
    params: Params,
    *,
    boundary: bool,
    dilation_ratio: float,
    fixed_overlaps: bool = False,
) -> dict[str, Any]:
    """Metrics dict of per-image results (any order: sorted by image id here, as COCO does)."""
    res = sorted(results, key=lambda r: r.image_id)
    out: dict[str, Any] = {"version": VERSION}
    out["segm"] = summarize(accumulate([r.segm for r in res], params), params)
    if boundary:
        out["boundary"] = summarize(accumulate([r.boundary for r in res], params), params)
    out["info"] = {
        "num_images": len(res),
        "num_gt": int(sum(r.num_gt for r in res)),
        "num_predictions": int(sum(r.num_pred for r in res)),
        "max_dets": list(params.max_dets),
        "ap_max_dets": ap_max_det(params),
        "dilation_ratio": float(dilation_ratio) if boundary else None,
        "class_agnostic": True,
        "images_with_overlaps": int(sum(1 for r in res if r.overlap_pixels > 0)),
        "overlapping_pixels": int(sum(r.overlap_pixels for r in res)),
        "fixed_overlaps": bool(fixed_overlaps),
    }
    return out


def format_table(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """Rows (metric, segm, boundary) with values x100 to 3 decimals, for printing."""
    segm = metrics["segm"]
    bnd = metrics.get("boundary", {})
    rows = []
    for key, value in segm.items():
        row = {"metric": key, "segm": f"{100 * value:.3f}" if value >= 0 else "-"}
        if bnd:
            b = bnd.get(key, -1)
            row["boundary"] = f"{100 * b:.3f}" if b >= 0 else "-"
        rows.append(row)
    return rows
