"""Predictions into a workspace: the stage-1 pre-annotations ``annotate push`` sends to Label
Studio.

Same format as ingest's carried-over pre-annotations:
``predictions/<model_version>/<image_id>.json`` holding
``{"image_id", "height", "width", "entities": [{"id", "segmentation", "score", ...}]}``
(compressed COCO RLE, non-overlapping, ids 1..N by score) and a row in the catalog
``predictions`` table (written after the file). The file and its row are the catalog's
(:mod:`entityseg_data.catalog.predictions`); this module turns a :class:`SegmentationResult`
into that payload.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.catalog.predictions import prediction_relpath
from entityseg_data.workspace import Workspace

if TYPE_CHECKING:
    from entityseg_data.model.inference.result import SegmentationResult


def prediction_payload(result: SegmentationResult, image_id: int) -> dict[str, Any]:
    entities = []
    for rec, rle in zip(result.records(), result.rles):
        entities.append(
            {
                "id": rec["id"],
                "segmentation": rle,
                "score": rec["score"],
                "area": rec["area"],
                "bbox": rec["bbox"],
                "mask_quality": rec["mask_quality"],
                **(
                    {"view_disagreement": rec["view_disagreement"]}
                    if "view_disagreement" in rec
                    else {}
                ),
            }
        )
    return {
        "image_id": int(image_id),
        "height": result.height,
        "width": result.width,
        "model_version": result.model_version,
        "score_mode": result.score_mode,
        "entities": entities,
    }


def write_workspace_prediction(
    workspace: Workspace, image_id: int, result: SegmentationResult, model_version: str
) -> str:
    """Write the prediction file and its catalog row; returns the file path relative to the
    workspace."""
    return write_prediction_payload(workspace, prediction_payload(result, image_id), model_version)


def write_prediction_payload(
    workspace: Workspace, payload: dict[str, Any], model_version: str
) -> str:
    """Write a prediction file (``{"image_id", "height", "width", "entities": [...]}``) and then
    its catalog row; returns the path relative to the workspace. Any segmenter's output (not
    only CropFormer's) becomes stage-1 pre-annotations this way."""
    return workspace.write_prediction(payload, model_version)


def workspace_images(workspace: Workspace) -> list[tuple[int, Path]]:
    """``(image_id, path)`` of every accepted image (the normalised copy when there is one)."""
    with workspace.catalog() as cat:
        images = cat.images()
    return [(r.id, workspace.image_path(r)) for r in images]


def predicted_ids(workspace: Workspace, model_version: str) -> set[int]:
    """Ids of the images that have a prediction file of ``model_version``."""
    return workspace.predicted_ids(model_version)


__all__ = [
    "predicted_ids",
    "prediction_payload",
    "prediction_relpath",
    "workspace_images",
    "write_prediction_payload",
    "write_workspace_prediction",
]
