"""What an ingest run did, per source: the end summary of ``entityseg-data ingest``, the progress
events, and the error report from the ledger."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from entityseg_data.catalog import Catalog

MAX_MESSAGES = 20  # problem messages kept per source in a report


@dataclass(frozen=True)
class ProgressEvent:
    """Passed to the ``progress`` callback once per item (``stage="item"``; ``outcome`` one of
    accepted, rejected, duplicate, failed, skipped) and once per NSFW batch (``stage="nsfw"``,
    ``n`` images scored)."""

    stage: str
    source: str
    outcome: str
    n: int = 1


ProgressFn = Callable[[ProgressEvent], None]


@dataclass
class SourceCounts:
    """Counts for one source in one run.

    Fields:
        seen: items the source yielded (up to the limit).
        skipped: items already handled by an earlier run (resume) or repeated in the source.
        fetched: items whose bytes were obtained (downloaded or read).
        failed: failures by kind (``http_404``, ``timeout``, ``truncated``, ``too_many_pixels``...).
        duplicates: dropped duplicates by kind (``exact``, ``near``); ``replaced`` counts earlier
            images replaced by a larger near-duplicate from this run.
        filtered: rejections by filter (``resolution``, ``aspect``, ``nsfw``, ``prefilter:*``).
        accepted: images accepted after every filter.
        bytes: bytes of the originals obtained.
        messages: the first problems of the run that concern the source itself rather than
            one item (e.g. two rows with the same id), one sentence each.
    """

    label: str
    kind: str
    seen: int = 0
    skipped: int = 0
    fetched: int = 0
    failed: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)
    accepted: int = 0
    bytes: int = 0
    messages: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        """Keep a problem message (the first :data:`MAX_MESSAGES`)."""
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "seen": self.seen,
            "skipped": self.skipped,
            "fetched": self.fetched,
            "failed": dict(sorted(self.failed.items())),
            "duplicates": dict(sorted(self.duplicates.items())),
            "filtered": dict(sorted(self.filtered.items())),
            "accepted": self.accepted,
            "bytes": self.bytes,
            "messages": list(self.messages),
        }


@dataclass
class IngestReport:
    """Per-source counts (keyed by source label), timing, the NSFW model used, and how many
    failed items ``retry_failed`` made pending again before the run."""

    sources: dict[str, SourceCounts] = field(default_factory=dict)
    elapsed: float = 0.0
    nsfw_model: str | None = None
    nsfw_scored: int = 0
    reset: int = 0

    def counts(self, label: str, kind: str = "") -> SourceCounts:
        if label not in self.sources:
            self.sources[label] = SourceCounts(label=label, kind=kind)
        return self.sources[label]

    def totals(self) -> SourceCounts:
        total = SourceCounts(label="TOTAL", kind="")
        for c in self.sources.values():
            total.seen += c.seen
            total.skipped += c.skipped
            total.fetched += c.fetched
            total.failed.update(c.failed)
            total.duplicates.update(c.duplicates)
            total.filtered.update(c.filtered)
            total.accepted += c.accepted
            total.bytes += c.bytes
            total.messages.extend(c.messages)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": {k: v.to_dict() for k, v in self.sources.items()},
            "total": self.totals().to_dict(),
            "elapsed": round(self.elapsed, 3),
            "nsfw_model": self.nsfw_model,
            "nsfw_scored": self.nsfw_scored,
            "reset": self.reset,
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per source plus a TOTAL row, for a plain text table."""

        def fmt(c: Counter) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(c.items())) or "-"

        rows = []
        for c in [*self.sources.values(), self.totals()]:
            rows.append(
                {
                    "source": c.label,
                    "seen": c.seen,
                    "skipped": c.skipped,
                    "fetched": c.fetched,
                    "failed": fmt(c.failed),
                    "duplicates": fmt(c.duplicates),
                    "filtered": fmt(c.filtered),
                    "accepted": c.accepted,
                }
            )
        return rows


def failures_by_kind(catalog: Catalog, limit: int = 20) -> dict[str, dict[str, Any]]:
    """The error report from the ledger: for each failure kind its count, whether a rerun
    retries it (``retry``: transient, setting or permanent; see :mod:`.failures`) and up to
    ``limit`` examples ``{"source", "source_id", "url", "error", "attempts"}`` (all runs,
    current state)."""
    from entityseg_data.ingest.failures import failure_class

    out: dict[str, dict[str, Any]] = {}
    for kind, n in catalog.failure_counts().items():
        examples = catalog.failed_items(kind, limit=limit)
        out[kind or "unknown"] = {
            "count": n,
            "retry": failure_class(kind),
            "examples": [
                {
                    "source": e.source,
                    "source_id": e.source_id,
                    "url": e.url,
                    "error": e.error,
                    "attempts": e.attempts,
                }
                for e in examples
            ],
        }
    return out
