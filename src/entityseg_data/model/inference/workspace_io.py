"""Predictions into a workspace: the stage-1 pre-annotations ``annotate push`` sends to Label
Studio.

Same format as ingest's carried-over pre-annotations:
``predictions/<model_version>/<image_id>.json`` holding
``{"image_id", "height", "width", "entities": [{"id", "segmentation", "score", ...}]}``
(compressed COCO RLE, non-overlapping, ids 1..N by score) and a row in the catalog
``predictions`` table (written in one transaction after the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entityseg_data.io import atomic_write_json


def prediction_payload(result: Any, image_id: int) -> dict[str, Any]:
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


def prediction_relpath(model_version: str, image_id: int) -> str:
    folder = model_version.replace(":", "_").replace("/", "_")
    return f"predictions/{folder}/{int(image_id)}.json"


def write_workspace_prediction(
    workspace: Any, image_id: int, result: Any, model_version: str
) -> str:
    """Write the prediction file and its catalog row; returns the file path relative to the
    workspace."""
    return write_prediction_payload(workspace, prediction_payload(result, image_id), model_version)


def write_prediction_payload(workspace: Any, payload: dict[str, Any], model_version: str) -> str:
    """Write a prediction file (``{"image_id", "height", "width", "entities": [...]}``) and then
    its catalog row in one transaction; returns the path relative to the workspace. Any
    segmenter's output (not only CropFormer's) becomes stage-1 pre-annotations this way."""
    image_id = int(payload["image_id"])
    rel = prediction_relpath(model_version, image_id)
    atomic_write_json(workspace.abspath(rel), payload)
    with workspace.catalog() as cat, cat.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO predictions(image_id, model_version, path, n_entities) "
            "VALUES (?,?,?,?)",
            (image_id, model_version, rel, len(payload.get("entities", []))),
        )
    return rel


def workspace_images(workspace: Any) -> list[tuple[int, Path]]:
    """``(image_id, path)`` of every accepted image (the normalised copy when there is one)."""
    with workspace.catalog() as cat:
        rows = cat.query(
            "SELECT id, file_path, norm_path FROM images WHERE status = 'accepted' ORDER BY id"
        )
    return [(int(r["id"]), workspace.abspath(r["norm_path"] or r["file_path"])) for r in rows]


def predicted_ids(workspace: Any, model_version: str) -> set[int]:
    with workspace.catalog() as cat:
        rows = cat.query(
            "SELECT image_id, path FROM predictions WHERE model_version = ?", (model_version,)
        )
    return {int(r["image_id"]) for r in rows if workspace.abspath(r["path"]).exists()}
