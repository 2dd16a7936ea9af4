"""The curated set's state in SQLite: images, provenance, verdicts, duplicates, annotation status.

See :class:`~entityseg_data.catalog.store.Catalog`.
"""

from entityseg_data.catalog.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from entityseg_data.catalog.store import Catalog

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Catalog", "Migration"]
