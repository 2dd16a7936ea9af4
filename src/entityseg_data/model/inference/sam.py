"""Segment Anything (automatic mask generator) output -> non-overlapping entities.

SAM's ``SamAutomaticMaskGenerator`` returns OVERLAPPING masks. Its ``scripts/amg.py`` saves them
either as a COCO-RLE JSON list (``--convert-to-rle``: records with ``segmentation`` (RLE),
``area``, ``bbox`` [x, y, w, h], ``predicted_iou``, ``point_coords``, ``stability_score``,
``crop_box``) or as a folder of per-mask PNGs ``0.png, 1.png, ...`` plus ``metadata.csv``
(``id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,
stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h``).

Overlap rule (stated, and the same as CropFormer's): **the higher score wins a contested pixel**
(masks are painted in ascending score order; equal scores: the later record wins). The score is
``predicted_iou`` by default (``score_key`` may name ``stability_score``, ``score`` or
``"iou*stability"``). Masks that end up empty or below ``min_area`` are dropped; the rest get ids
1..N by descending score, with area and box recomputed on the non-overlapping map. The result is
a :class:`SegmentationResult`, so it saves, exports to COCO / Label Studio and becomes stage-1
pre-annotations exactly like a CropFormer prediction.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.rle import label_map_to_rles
from entityseg_data.masks.runs import paint_masks
from entityseg_data.model.inference.result import SegmentationResult


def load_sam_output(path: str | Path) -> list[dict[str, Any]]:
    """SAM records from a COCO-RLE JSON file (a list, or a dict with ``annotations``) or a
    folder of mask PNGs + ``metadata.csv``. PNG records carry ``mask_path`` instead of an RLE."""
    path = Path(path)
    if path.is_dir():
        return _load_png_folder(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a SAM JSON output: {exc}") from None
    if isinstance(data, dict):
        data = data.get("annotations", data.get("masks"))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of SAM mask records")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or "segmentation" not in rec:
            raise DataError(f"{path}: record {i} has no 'segmentation'")
    return data


def _load_png_folder(folder: Path) -> list[dict[str, Any]]:
    meta = folder / "metadata.csv"
    if not meta.is_file():
        raise DataError(f"{folder}: no metadata.csv (SAM amg.py mask folder expected)")
    with meta.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        try:
            i = int(row["id"])
            rec = {
                "mask_path": str(folder / f"{i}.png"),
                "predicted_iou": float(row.get("predicted_iou", 0) or 0),
                "stability_score": float(row.get("stability_score", 0) or 0),
                "area": int(float(row.get("area", 0) or 0)),
            }
        except (KeyError, ValueError) as exc:
            raise DataError(f"{meta}: bad row {row}: {exc}") from None
        out.append(rec)
    return out


def record_score(rec: dict[str, Any], score_key: str = "predicted_iou") -> float:
    if score_key == "iou*stability":
        return float(rec.get("predicted_iou", 0.0)) * float(rec.get("stability_score", 1.0))
    if score_key not in rec:
        raise DataError(f"SAM record has no {score_key!r} (keys: {sorted(rec)})")
    return float(rec[score_key])


def _record_mask(
    rec: dict[str, Any], height: int | None, width: int | None, where: str = ""
) -> np.ndarray:
    if "mask_path" in rec:
        from entityseg_data.io.images import read_label_image

        im = read_label_image(rec["mask_path"], "mask")
        return np.asarray(im.convert("L")) > 0
    segm = rle_utils.to_compressed(rec["segmentation"], height, width, where=where)
    return rle_utils.decode(segm, where=where).astype(bool)


def sam_to_result(
    records: Sequence[dict[str, Any]] | str | Path,
    *,
    score_key: str = "predicted_iou",
    min_area: int = 0,
    height: int | None = None,
    width: int | None = None,
    source: str | None = None,
) -> SegmentationResult:
    """Non-overlapping :class:`SegmentationResult` of SAM records (or a path to load)."""
    if isinstance(records, (str, Path)):
        source = source or str(records)
        records = load_sam_output(records)
    if not records:
        if height is None or width is None:
            raise DataError("no SAM masks and no image size given")
        return _empty(height, width, source)
    scores = np.array([record_score(r, score_key) for r in records], dtype=np.float64)
    order = np.argsort(scores, kind="stable")  # ascending: the highest score is painted last
    shape = None if height is None or width is None else (height, width)
    # the mask core's label map (record k -> k + 1), masks decoded one at a time
    label_map = paint_masks(
        (_record_mask(records[k], height, width, where=f"SAM record [{k}]") for k in order),
        shape=shape,
        policy="later_wins",
        values=order + 1,
        dtype=np.uint16,
        where=[f"SAM record [{k}]" for k in order],
    )
    areas_all = np.bincount(label_map.ravel(), minlength=len(records) + 1)[1:]
    keep = np.nonzero(areas_all >= max(1, int(min_area)))[0]
    keep = keep[np.lexsort((keep, -scores[keep]))]
    lut = np.zeros(len(records) + 1, dtype=np.uint16)
    lut[keep + 1] = np.arange(1, len(keep) + 1, dtype=np.uint16)
    label_map = lut[label_map]
    rles = label_map_to_rles(label_map, ids=range(1, len(keep) + 1))
    boxes = np.array(
        [[round(v) for v in rle_utils.bbox(rles[i + 1])] for i in range(len(keep))], dtype=np.int64
    ).reshape(-1, 4)
    ious = np.array([float(records[k].get("predicted_iou", 0.0)) for k in keep], np.float32)
    res = SegmentationResult(
        label_map=label_map,
        scores=scores[keep].astype(np.float32),
        class_scores=scores[keep].astype(np.float32),
        mask_quality=ious,
        areas=areas_all[keep].astype(np.int64),
        boxes=boxes,
        query_index=keep.astype(np.int64),
        score_mode=f"sam:{score_key}",
        source=source,
        model_version="sam",
    )
    res._cache["rles"] = [rles[i] for i in range(1, len(keep) + 1)]
    return res


def _empty(height: int, width: int, source: str | None) -> SegmentationResult:
    z = np.zeros(0, np.float32)
    return SegmentationResult(
        label_map=np.zeros((height, width), np.uint16),
        scores=z,
        class_scores=z,
        mask_quality=z,
        areas=np.zeros(0, np.int64),
        boxes=np.zeros((0, 4), np.int64),
        query_index=np.zeros(0, np.int64),
        score_mode="sam",
        source=source,
        model_version="sam",
    )
