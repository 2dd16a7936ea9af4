"""Image sources for :meth:`Workspace.ingest <entityseg_data.api.workspace.Workspace.ingest>`,
and the types an ingest run reports with.

* :class:`IngestReport`: what a run did, per source (``table_rows()``, ``totals()``,
  ``to_dict()``);
* :class:`IngestEvent`: what the ``progress`` callback of ``Workspace.ingest`` receives, once
  per item (``stage="item"``, ``outcome`` accepted | rejected | duplicate | failed | skipped)
  and once per NSFW batch (``stage="nsfw"``, ``n`` images scored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from entityseg_data.ingest.report import IngestReport, ProgressEvent

if TYPE_CHECKING:
    from entityseg_data.ingest.sources.base import Source

#: the progress event of an ingest run (``entityseg_data.ingest.report.ProgressEvent``)
IngestEvent = ProgressEvent

__all__ = ["IngestEvent", "IngestReport", "source"]


def source(spec: str, *, tags: Sequence[str] = ()) -> Source:
    """A source from its spec string (``folder:PATH``, ``urls:FILE``, ``coco:JSON[:IMAGES]``,
    ``ade20k:DIR``, ``labelmaps:IMAGES:LABELS``, ``unsplash:TSV``, ``laion:PARQUET``; see
    docs/ingest.md), its images tagged with ``tags`` (their domain, e.g. ``photo``)."""
    from entityseg_data.ingest.sources import parse_source

    return parse_source(spec, domain_tags=tuple(tags))
