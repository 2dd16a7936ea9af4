"""The public Python API: the workspace and the verbs of the curation loop.

Everything here is also exported from :mod:`entityseg_data` itself (lazily). The API layer
composes the stages (ingest, annotation, evaluation, stats, export, model) over the core
(config, catalog, workspace, masks, io, dataset); apps (the CLI, the demo, notebooks) use it.
See docs/design.md.
"""

from __future__ import annotations

from entityseg_data.api.annotation import Annotation, LabelStudio
from entityseg_data.api.predictions import (
    Predictions,
    PredictReport,
    masks_from_payload,
    masks_to_payload,
)
from entityseg_data.api.reports import Agreement, StatsReport
from entityseg_data.api.rounds import Rounds, RoundsReportFiles
from entityseg_data.api.segmenters import FelzenszwalbSegmenter, load_segmenter
from entityseg_data.api.sources import source
from entityseg_data.api.training import load_train_config, train
from entityseg_data.api.workspace import Workspace

__all__ = [
    "Agreement",
    "Annotation",
    "FelzenszwalbSegmenter",
    "LabelStudio",
    "PredictReport",
    "Predictions",
    "Rounds",
    "RoundsReportFiles",
    "StatsReport",
    "Workspace",
    "load_segmenter",
    "load_train_config",
    "masks_from_payload",
    "masks_to_payload",
    "source",
    "train",
]
