"""entityseg-data: build, annotate, measure and use high-quality entity segmentation datasets.

The public API (docs/design.md, docs/tutorial.md)::

    from entityseg_data import Workspace, LabelStudio, FelzenszwalbSegmenter
    ws = Workspace.create("my_set")                    # or Workspace.open("my_set")
    ws.ingest(["folder:photos/"])                      # IngestReport
    ws.predictions.add(FelzenszwalbSegmenter())        # any Segmenter: pre-annotations
    with LabelStudio.start(ws) as ls:                  # or InMemoryBackend() in tests
        ann = ws.annotation(ls)
        ann.push(stage=1)                              # ... people annotate ...
        ann.pull(stages=(1,))
    ds = ws.dataset()                                  # typed approved entities
    ws.stats_report("report/"); ws.export_entityseg("release/")

Importing the package is cheap: names are imported on first use (no torch, no Label Studio,
no side effects); type checkers and IDEs see the real types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module defining it (imported on first access)
_EXPORTS: dict[str, str] = {
    # the workspace and its verbs
    "Workspace": "entityseg_data.api.workspace",
    "Annotation": "entityseg_data.api.annotation",
    "LabelStudio": "entityseg_data.api.annotation",
    "start_ml_backend": "entityseg_data.api.annotation",
    "Predictions": "entityseg_data.api.predictions",
    "PredictReport": "entityseg_data.api.predictions",
    "Agreement": "entityseg_data.api.reports",
    "StatsReport": "entityseg_data.api.reports",
    "Rounds": "entityseg_data.api.rounds",
    "RoundsReportFiles": "entityseg_data.api.rounds",
    "RoundRecord": "entityseg_data.catalog",
    "EditRecord": "entityseg_data.catalog",
    "FelzenszwalbSegmenter": "entityseg_data.api.segmenters",
    "load_segmenter": "entityseg_data.api.segmenters",
    "plan_predictions": "entityseg_data.api.predict",
    "predict_files": "entityseg_data.api.predict",
    "prepare_device": "entityseg_data.api.predict",
    "convert_sam_outputs": "entityseg_data.api.predict",
    "PredictPlan": "entityseg_data.api.predict",
    "SamConversion": "entityseg_data.api.predict",
    "source": "entityseg_data.api.sources",
    "IngestEvent": "entityseg_data.api.sources",
    "IngestReport": "entityseg_data.api.sources",
    "train": "entityseg_data.api.training",
    "load_train_config": "entityseg_data.api.training",
    "agreement": "entityseg_data.api.evaluation",
    "evaluate_entity": "entityseg_data.api.evaluation",
    "entity_metrics_table": "entityseg_data.api.evaluation",
    "evaluate_instance": "entityseg_data.api.evaluation",
    "evaluate_panoptic": "entityseg_data.api.evaluation",
    "evaluate_semantic": "entityseg_data.api.evaluation",
    "export_entityseg": "entityseg_data.api.export",
    "export_hf": "entityseg_data.api.export",
    "export_subsets": "entityseg_data.api.export",
    "coco_stats": "entityseg_data.api.stats",
    "stats_report": "entityseg_data.api.stats",
    "validate_annotations": "entityseg_data.api.stats",
    "model_presets": "entityseg_data.api.models",
    "model_preset": "entityseg_data.api.models",
    "convert_checkpoint": "entityseg_data.api.models",
    "PresetInfo": "entityseg_data.api.models",
    "ConversionReport": "entityseg_data.api.models",
    # typed data
    "Dataset": "entityseg_data.dataset",
    "Sample": "entityseg_data.dataset",
    "Entity": "entityseg_data.masks.types",
    "ImageMasks": "entityseg_data.masks.types",
    "Segmenter": "entityseg_data.masks.types",
    "ImageAnnotation": "entityseg_data.masks.store",
    "ImageRecord": "entityseg_data.catalog",
    "ExportResult": "entityseg_data.export.entityseg",
    "DatasetStats": "entityseg_data.stats.engine",
    "ValidationReport": "entityseg_data.stats.validate",
    # annotation backends
    "AnnotationBackend": "entityseg_data.annotation.backend",
    "InMemoryBackend": "entityseg_data.annotation.fake",
    # the model
    "EntitySegmenter": "entityseg_data.model.inference.predictor",
    "SegmentationResult": "entityseg_data.model.inference.result",
    # configuration
    "WorkspaceConfig": "entityseg_data.config",
    "InferenceConfig": "entityseg_data.model.config",
    "ModelConfig": "entityseg_data.model.config",
    "TrainConfig": "entityseg_data.model.training.config",
    # errors
    "EntitySegError": "entityseg_data.errors",
    "ConfigError": "entityseg_data.errors",
    "DataError": "entityseg_data.errors",
}

__all__ = [
    "__version__",
    "Agreement",
    "Annotation",
    "AnnotationBackend",
    "ConfigError",
    "ConversionReport",
    "DataError",
    "Dataset",
    "DatasetStats",
    "EditRecord",
    "Entity",
    "EntitySegError",
    "EntitySegmenter",
    "ExportResult",
    "FelzenszwalbSegmenter",
    "ImageAnnotation",
    "ImageMasks",
    "ImageRecord",
    "InMemoryBackend",
    "InferenceConfig",
    "IngestEvent",
    "IngestReport",
    "LabelStudio",
    "ModelConfig",
    "PredictPlan",
    "PredictReport",
    "Predictions",
    "PresetInfo",
    "RoundRecord",
    "Rounds",
    "RoundsReportFiles",
    "SamConversion",
    "Sample",
    "SegmentationResult",
    "Segmenter",
    "StatsReport",
    "TrainConfig",
    "ValidationReport",
    "Workspace",
    "WorkspaceConfig",
    "agreement",
    "coco_stats",
    "convert_checkpoint",
    "convert_sam_outputs",
    "entity_metrics_table",
    "evaluate_entity",
    "evaluate_instance",
    "evaluate_panoptic",
    "evaluate_semantic",
    "export_entityseg",
    "export_hf",
    "export_subsets",
    "load_segmenter",
    "load_train_config",
    "model_preset",
    "model_presets",
    "plan_predictions",
    "predict_files",
    "prepare_device",
    "source",
    "start_ml_backend",
    "stats_report",
    "train",
    "validate_annotations",
]

if TYPE_CHECKING:
    from entityseg_data.annotation.backend import AnnotationBackend
    from entityseg_data.annotation.fake import InMemoryBackend
    from entityseg_data.api.annotation import Annotation, LabelStudio, start_ml_backend
    from entityseg_data.api.evaluation import (
        agreement,
        entity_metrics_table,
        evaluate_entity,
        evaluate_instance,
        evaluate_panoptic,
        evaluate_semantic,
    )
    from entityseg_data.api.export import export_entityseg, export_hf, export_subsets
    from entityseg_data.api.models import (
        ConversionReport,
        PresetInfo,
        convert_checkpoint,
        model_preset,
        model_presets,
    )
    from entityseg_data.api.predict import (
        PredictPlan,
        SamConversion,
        convert_sam_outputs,
        plan_predictions,
        predict_files,
        prepare_device,
    )
    from entityseg_data.api.predictions import Predictions, PredictReport
    from entityseg_data.api.reports import Agreement, StatsReport
    from entityseg_data.api.rounds import Rounds, RoundsReportFiles
    from entityseg_data.api.segmenters import FelzenszwalbSegmenter, load_segmenter
    from entityseg_data.api.sources import IngestEvent, IngestReport, source
    from entityseg_data.api.stats import coco_stats, stats_report, validate_annotations
    from entityseg_data.api.training import load_train_config, train
    from entityseg_data.api.workspace import Workspace
    from entityseg_data.catalog import EditRecord, ImageRecord, RoundRecord
    from entityseg_data.config import WorkspaceConfig
    from entityseg_data.dataset import Dataset, Sample
    from entityseg_data.errors import ConfigError, DataError, EntitySegError
    from entityseg_data.export.entityseg import ExportResult
    from entityseg_data.masks.store import ImageAnnotation
    from entityseg_data.masks.types import Entity, ImageMasks, Segmenter
    from entityseg_data.model.config import InferenceConfig, ModelConfig
    from entityseg_data.model.inference.predictor import EntitySegmenter
    from entityseg_data.model.inference.result import SegmentationResult
    from entityseg_data.model.training.config import TrainConfig
    from entityseg_data.stats.engine import DatasetStats
    from entityseg_data.stats.validate import ValidationReport


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'entityseg_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
