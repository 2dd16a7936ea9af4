"""Image filters with an audit trail: each returns a :class:`Verdict` (pass/reject, reason,
score) that the pipeline stores in the catalog ``verdicts`` table."""

from entityseg_data.ingest.filters.aspect import check_aspect
from entityseg_data.ingest.filters.base import Verdict
from entityseg_data.ingest.filters.resolution import check_resolution

__all__ = ["Verdict", "check_aspect", "check_resolution"]
