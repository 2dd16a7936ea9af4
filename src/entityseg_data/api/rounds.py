"""Annotation rounds of a workspace: what each round cost and what the pre-annotation saved.

>>> ws.rounds.list()                      # RoundRecord per push (stage, seeds, selection, ...)
>>> ws.rounds.edits(stage=1)              # EditRecord per pulled submission
>>> rep = ws.rounds.report("report/")     # rounds.md/.html/.json/.csv, edits.csv, 3 PNGs
>>> rep.report.rounds[0].summary.minutes_per_image

Every push records a round (:func:`entityseg_data.annotation.push.push`); every pull stores the
lead time and the edit breakdown of each submission, and through the API also the seed's AP^e
against it. Definitions: :mod:`entityseg_data.evaluation.rounds`; the report: docs/rounds.md.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entityseg_data.catalog import EditRecord, RoundRecord
    from entityseg_data.evaluation.rounds import RoundsReport
    from entityseg_data.workspace import Workspace


@dataclass(frozen=True)
class RoundsReportFiles:
    """The computed report (:class:`~entityseg_data.evaluation.rounds.RoundsReport`: rows per
    round, per seed version, selected vs not), its Markdown and the files written
    (``{kind: path}``: markdown, html, json, csv, edits_csv, time, edits, seed)."""

    report: RoundsReport
    markdown: str
    paths: dict[str, Path] = field(default_factory=dict)


class Rounds:
    """The annotation rounds of one workspace (``ws.rounds``)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def list(self, stage: int | None = None) -> builtins.list[RoundRecord]:
        """The recorded rounds in push order (of one stage when given)."""
        with self.workspace.catalog() as cat:
            return cat.rounds(stage)

    def edits(
        self,
        stage: int | None = None,
        *,
        round_id: int | None = None,
        annotator: str | None = None,
    ) -> builtins.list[EditRecord]:
        """One record per pulled submission: lead time, seed, edit breakdown, seed AP."""
        with self.workspace.catalog() as cat:
            return cat.edits(stage, round_id=round_id, annotator=annotator)

    def summary(self) -> RoundsReport:
        """The report's numbers, computed (nothing written)."""
        from entityseg_data.evaluation.rounds import rounds_report

        return rounds_report(self.workspace)

    def report(self, out_dir: str | Path, *, plots: bool = True) -> RoundsReportFiles:
        """Compute the report and write it to ``out_dir`` (Markdown, HTML, JSON, CSV, PNGs)."""
        from entityseg_data.evaluation.rounds_report import to_markdown, write_rounds_report

        rep = self.summary()
        paths = write_rounds_report(rep, out_dir, plots=plots)
        pics: dict[str, str] = {k: paths[k].name for k in ("time", "edits", "seed") if k in paths}
        return RoundsReportFiles(report=rep, markdown=to_markdown(rep, pics), paths=paths)


__all__ = ["Rounds", "RoundsReportFiles"]
