"""The curated set's state in SQLite: images, provenance, verdicts, duplicates, the ingest
ledger, annotation state and predictions. The only place the toolkit runs SQL.

* :class:`Catalog` (``store.py``): the database, typed methods per table;
* records (``records.py``): the frozen records it returns;
* ``predictions.py``: prediction files beside their catalog rows;
* ``embeddings.py``: the CLIP embedding cache (its own SQLite file per model).
"""

from entityseg_data.catalog.records import (
    AnnotationRecord,
    DuplicateRecord,
    EditRecord,
    ImageRecord,
    LedgerItem,
    PredictionRecord,
    RoundRecord,
    SelectionItem,
    SelectionRecord,
    VerdictRecord,
)
from entityseg_data.catalog.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from entityseg_data.catalog.store import Catalog

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AnnotationRecord",
    "Catalog",
    "DuplicateRecord",
    "EditRecord",
    "ImageRecord",
    "LedgerItem",
    "Migration",
    "PredictionRecord",
    "RoundRecord",
    "SelectionItem",
    "SelectionRecord",
    "VerdictRecord",
]
