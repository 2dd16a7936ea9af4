"""Ingest: sources -> fetch -> normalise -> de-duplicate -> filter -> catalog.

Public API (imported lazily, so ``import entityseg_data.ingest`` stays cheap)::

    from entityseg_data.ingest import ingest, refilter, parse_source, IngestConfig
    report = ingest(workspace, [parse_source("folder:photos/")], IngestConfig(min_side=1000))

See docs/ingest.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ingest": "entityseg_data.ingest.pipeline",
    "ProgressEvent": "entityseg_data.ingest.report",
    "refilter": "entityseg_data.ingest.refilter",
    "RefilterReport": "entityseg_data.ingest.refilter",
    "IngestReport": "entityseg_data.ingest.report",
    "SourceCounts": "entityseg_data.ingest.report",
    "IngestConfig": "entityseg_data.config.ingest",
    "parse_source": "entityseg_data.ingest.sources",
    "Source": "entityseg_data.ingest.sources",
    "Item": "entityseg_data.ingest.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'entityseg_data.ingest' has no attribute {name!r}")
