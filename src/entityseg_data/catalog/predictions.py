"""Prediction files of a workspace: model pre-annotations, one JSON file per (image, model
version), with their row in the catalog's ``predictions`` table.

File: ``predictions/<model_version with ':' and '/' as '_'>/<image_id>.json`` holding
``{"image_id", "height", "width", "model_version", "entities": [{"id", "segmentation",
"score", ...}]}`` (compressed COCO RLEs of the image size, non-overlapping). The file is written
atomically first, then its row in one transaction, so a crash leaves either nothing or a file
without a row (rewritten by the rerun), never a row without a file.

Any segmenter's output becomes stage-1 pre-annotations through :func:`write_prediction`, given
as :class:`~entityseg_data.masks.types.ImageMasks` (a :class:`~entityseg_data.masks.types.Segmenter`
result) or as the payload dict; :func:`prediction_masks` reads a file back as ``ImageMasks``
with every RLE strictly checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entityseg_data.catalog.records import PredictionRecord
from entityseg_data.catalog.store import Catalog
from entityseg_data.errors import DataError
from entityseg_data.masks.types import ImageMasks


def prediction_relpath(model_version: str, image_id: int) -> str:
    """The prediction file of (model version, image), relative to the workspace."""
    folder = model_version.replace(":", "_").replace("/", "_")
    return f"predictions/{folder}/{int(image_id)}.json"


def masks_payload(masks: ImageMasks, model_version: str) -> dict[str, Any]:
    """The prediction-file payload of ``masks`` (entities as COCO-style dicts: ``id``,
    ``segmentation``, ``area``, ``bbox``, ``score``... without the repeated ``image_id``)."""
    if masks.image_id is None:
        raise DataError(f"prediction of {model_version!r}: the masks have no image_id")
    entities = []
    for e in masks.entities:
        d = e.to_coco(masks.image_id)
        d.pop("image_id", None)
        entities.append(d)
    return {
        "image_id": masks.image_id,
        "height": masks.height,
        "width": masks.width,
        "model_version": model_version,
        "entities": entities,
    }


def write_prediction(
    root: Path, cat: Catalog, payload: ImageMasks | Mapping[str, Any], model_version: str
) -> str:
    """Write a prediction file (``{"image_id", "height", "width", "entities": [...]}``, or the
    payload of an :class:`ImageMasks`) under ``root``, then its catalog row; returns the path
    relative to ``root``."""
    from entityseg_data.io import atomic_write_json

    if isinstance(payload, ImageMasks):
        payload = masks_payload(payload, model_version)
    try:
        image_id = int(payload["image_id"])
        entities = list(payload.get("entities", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"prediction of {model_version!r}: malformed payload ({exc!r})") from None
    rel = prediction_relpath(model_version, image_id)
    body = {**payload, "model_version": payload.get("model_version") or model_version}
    atomic_write_json(Path(root) / rel, body)
    cat.set_prediction(image_id, model_version, rel, len(entities))
    return rel


def read_prediction(root: Path, record: PredictionRecord) -> dict[str, Any]:
    """The payload of a prediction file; DataError naming the file when it cannot be read."""
    path = Path(root) / record.path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"prediction file {path}: unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"prediction file {path}: expected a JSON object")
    return data


def prediction_masks(root: Path, record: PredictionRecord) -> ImageMasks:
    """A prediction file as :class:`ImageMasks` (every RLE strictly validated against the
    file's size; DataError/RLEError naming the file and entity)."""
    data = read_prediction(root, record)
    where = str(Path(root) / record.path)
    entities = data.get("entities", [])
    if not isinstance(entities, list):
        raise DataError(f"{where}: 'entities' must be a list")
    image = {"id": data.get("image_id", record.image_id), **data}
    return ImageMasks.from_coco(image, entities, file=where)


def latest_prediction(
    root: Path, cat: Catalog, image_id: int, model_version: str | None = None
) -> tuple[PredictionRecord, dict[str, Any]] | None:
    """The newest prediction of an image (of ``model_version`` when given) with its payload,
    or None when the image has none."""
    rec = cat.latest_prediction(image_id, model_version)
    return None if rec is None else (rec, read_prediction(root, rec))


def predicted_ids(root: Path, cat: Catalog, model_version: str) -> set[int]:
    """Ids of the images with a prediction of ``model_version`` whose file exists."""
    return {
        r.image_id
        for r in cat.predictions(model_version=model_version)
        if (Path(root) / r.path).exists()
    }


__all__ = [
    "latest_prediction",
    "masks_payload",
    "prediction_masks",
    "predicted_ids",
    "prediction_relpath",
    "read_prediction",
    "write_prediction",
]
