"""Inference: views, fusion, post-processing, the predictor, outputs, hub and SAM interop.

Public names are imported lazily (``from entityseg_data.model.inference import EntitySegmenter``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EntitySegmenter": "predictor",
    "SegmentationResult": "result",
    "PostprocessOptions": "postprocess",
    "postprocess_batch": "postprocess",
    "postprocess_single": "postprocess",
    "crop_boxes": "views",
    "resize_shape": "views",
    "view_geometry": "views",
    "ViewGeometry": "views",
    "sam_to_result": "sam",
    "resolve_model": "hub",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
