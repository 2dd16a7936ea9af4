"""Image sources for :meth:`Workspace.ingest <entityseg_data.api.workspace.Workspace.ingest>`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entityseg_data.ingest.sources.base import Source


def source(spec: str, *, tags: Sequence[str] = ()) -> Source:
    """A source from its spec string (``folder:PATH``, ``urls:FILE``, ``coco:JSON[:IMAGES]``,
    ``ade20k:DIR``, ``labelmaps:IMAGES:LABELS``, ``unsplash:TSV``, ``laion:PARQUET``; see
    docs/ingest.md), its images tagged with ``tags`` (their domain, e.g. ``photo``)."""
    from entityseg_data.ingest.sources import parse_source

    return parse_source(spec, domain_tags=tuple(tags))
