"""The curated set's state in SQLite: images, provenance, verdicts, duplicates, the ingest
ledger, annotation state and predictions. The only place the toolkit runs SQL.

* :class:`Catalog` (``store.py``): the database, typed methods per table;
* records (``records.py``): the frozen records it returns;
* ``predictions.py``: prediction files beside their catalog rows.
"""

from entityseg_data.catalog.records import (
    AnnotationRecord,
    DuplicateRecord,
    EditRecord,
    ImageRecord,
    LedgerItem,
    PredictionRecord,
    RoundRecord,
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
    "VerdictRecord",
]
