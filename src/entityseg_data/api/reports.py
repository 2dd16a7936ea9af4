"""Typed results of the measuring verbs (agreement, statistics, evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entityseg_data.stats.engine import DatasetStats


@dataclass(frozen=True)
class Agreement:
    """Inter-annotator agreement (the paper's Table 1) of one stage.

    ``report`` is the full dict of :func:`entityseg_data.evaluation.consistency.consistency`
    (pairwise matrices, per-image rows); the common numbers are properties. AP values are
    fractions (-1 when undefined), accuracies fractions or None when no named pair exists."""

    stage: int
    report: dict[str, Any]

    @property
    def annotators(self) -> list[str]:
        return list(self.report["annotators"])

    @property
    def num_images(self) -> int:
        return int(self.report["num_images"])

    @property
    def mean_mask_map(self) -> float:
        return float(self.report["mean_mask_map"])

    @property
    def mean_category_accuracy(self) -> float | None:
        v = self.report.get("mean_category_accuracy")
        return None if v is None else float(v)

    @property
    def per_image(self) -> list[dict[str, Any]]:
        return list(self.report.get("per_image", []))

    @property
    def pairs(self) -> list[dict[str, Any]]:
        """One row per (ground truth, prediction) annotator pair: ``gt``, ``pred``,
        ``mask_map``, ``mask_ap50``, ``category_accuracy``, ``matched``, ``named_pairs``."""
        return list(self.report.get("pairs", []))

    def to_markdown(self, worst: int = 10) -> str:
        """The Table-1 matrices and the least consistent images, as Markdown."""
        from entityseg_data.evaluation.consistency import to_markdown

        return to_markdown(self.report, worst=worst)

    def to_csv(self, rows: str = "pairs") -> str:
        """CSV text of the annotator pairs (``rows="pairs"``) or of the per-image breakdown
        (``rows="per_image"``); empty when there are no rows."""
        from entityseg_data.evaluation.consistency import to_csv

        if rows not in ("pairs", "per_image"):
            raise ValueError(f"rows must be 'pairs' or 'per_image', got {rows!r}")
        return to_csv(self.pairs if rows == "pairs" else self.per_image)


@dataclass(frozen=True)
class StatsReport:
    """Dataset statistics written to a folder: the measured :class:`DatasetStats`, the files
    written (``{kind: path}``: ``json``, ``table_md``, ``table_csv``, ``classes_csv``,
    ``images_csv``, ``fig3``, ``shapes``...), the paper's Table 2 (``table``: one row dict per
    dataset, and as Markdown) and the per-class counts (``classes``: ``{name, kind, entities,
    images, pixels}`` rows; ``class_kinds``: entities and classes per kind).

    Several datasets measured side by side (:func:`entityseg_data.api.stats.stats_report`):
    ``datasets`` holds them all, ``stats`` is the first, ``table`` has a row each and
    ``classes`` / ``class_kinds`` are the first dataset's (classes.csv holds every dataset's).
    ``shape_definitions``: ``{name: definition}`` of the shape-measure sets (complexity,
    simplicity) the table's rows were measured with (docs/statistics.md)."""

    stats: DatasetStats
    paths: dict[str, Path] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    table_markdown: str = ""
    classes: list[dict[str, Any]] = field(default_factory=list)
    class_kinds: dict[str, int] = field(default_factory=dict)
    datasets: tuple[DatasetStats, ...] = ()
    shape_definitions: dict[str, str] = field(default_factory=dict)
