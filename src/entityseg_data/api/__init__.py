"""The public Python API: the workspace and the verbs of the curation loop.

Everything here is also exported from :mod:`entityseg_data` itself (lazily). The API layer
composes the stages (ingest, annotation, evaluation, stats, export, model) over the core
(config, catalog, workspace, masks, io, dataset); apps (the CLI, the demo, notebooks) use it.
See docs/design.md.
"""

from __future__ import annotations

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
from entityseg_data.api.predictions import (
    Predictions,
    PredictReport,
    masks_from_payload,
    masks_to_payload,
)
from entityseg_data.api.reports import Agreement, StatsReport
from entityseg_data.api.rounds import Rounds, RoundsReportFiles
from entityseg_data.api.segmenters import FelzenszwalbSegmenter, load_segmenter
from entityseg_data.api.sources import IngestEvent, IngestReport, source
from entityseg_data.api.stats import coco_stats, stats_report, validate_annotations
from entityseg_data.api.training import load_train_config, train
from entityseg_data.api.workspace import Workspace

__all__ = [
    "Agreement",
    "Annotation",
    "ConversionReport",
    "FelzenszwalbSegmenter",
    "IngestEvent",
    "IngestReport",
    "LabelStudio",
    "PredictReport",
    "Predictions",
    "PredictPlan",
    "PresetInfo",
    "Rounds",
    "RoundsReportFiles",
    "SamConversion",
    "StatsReport",
    "Workspace",
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
    "masks_from_payload",
    "masks_to_payload",
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
