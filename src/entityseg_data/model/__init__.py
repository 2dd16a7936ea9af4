"""CropFormer / Mask2Former in plain PyTorch, loading the official checkpoints.

Public API (imported lazily, so ``import entityseg_data.model`` does not import torch):
``PRESETS``, ``get_preset``, ``ModelConfig``, ``ViewConfig``, ``InferenceConfig``,
``build_model(cfg)``, ``load_checkpoint(path_or_dir, preset=..., config=...)``,
``CropFormer``, ``ModelOutput``, ``DecoderOutput``, ``LevelPrediction``, ``config_from_yaml``,
``convert_file``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PRESETS": "entityseg_data.model.presets",
    "RELEASED": "entityseg_data.model.presets",
    "get_preset": "entityseg_data.model.presets",
    "ModelConfig": "entityseg_data.model.config",
    "ViewConfig": "entityseg_data.model.config",
    "InferenceConfig": "entityseg_data.model.config",
    "build_model": "entityseg_data.model.loading",
    "load_checkpoint": "entityseg_data.model.loading",
    "CropFormer": "entityseg_data.model.cropformer",
    "ModelOutput": "entityseg_data.model.outputs",
    "DecoderOutput": "entityseg_data.model.outputs",
    "LevelPrediction": "entityseg_data.model.outputs",
    "config_from_yaml": "entityseg_data.model.yaml_config",
    "convert_file": "entityseg_data.model.convert",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'entityseg_data.model' has no attribute {name!r}")
