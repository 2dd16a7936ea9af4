"""What an ingest run did, per source: the end summary of ``entityseg-data ingest``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


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
        }


@dataclass
class IngestReport:
    """Per-source counts (keyed by source label), timing and the NSFW model used."""

    sources: dict[str, SourceCounts] = field(default_factory=dict)
    elapsed: float = 0.0
    nsfw_model: str | None = None
    nsfw_scored: int = 0

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
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": {k: v.to_dict() for k, v in self.sources.items()},
            "total": self.totals().to_dict(),
            "elapsed": round(self.elapsed, 3),
            "nsfw_model": self.nsfw_model,
            "nsfw_scored": self.nsfw_scored,
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


def failures_by_kind(catalog, limit: int = 20) -> dict[str, dict[str, Any]]:
    """The error report from the ledger: for each failure kind its count and up to ``limit``
    examples ``{"source", "source_id", "url", "error", "attempts"}`` (all runs, current state)."""
    out: dict[str, dict[str, Any]] = {}
    for row in catalog.query(
        "SELECT error_kind, COUNT(*) AS n FROM items WHERE state = 'failed' GROUP BY error_kind "
        "ORDER BY n DESC, error_kind"
    ):
        kind = row["error_kind"] or "unknown"
        examples = catalog.query(
            "SELECT source, source_id, url, error, attempts FROM items WHERE state = 'failed' "
            "AND error_kind IS ? ORDER BY id LIMIT ?",
            (row["error_kind"], limit),
        )
        out[kind] = {"count": int(row["n"]), "examples": [dict(e) for e in examples]}
    return out
