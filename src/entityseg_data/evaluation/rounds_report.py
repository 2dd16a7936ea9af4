"""The round report on disk: Markdown, HTML, JSON, CSV and matplotlib PNGs (issue 18).

:func:`write_rounds_report` writes ``rounds.md`` / ``rounds.html`` (the same tables),
``rounds.json`` (every number), ``rounds.csv`` (one row per round), ``edits.csv`` (one row per
pulled submission) and three plots: ``rounds_time.png`` (minutes per image and per entity),
``rounds_edits.png`` (what became of the seed entities) and ``rounds_seed.png`` (the seed's
AP^e, boundary AP and AR against the approved masks). Simulated lead times are labelled
SIMULATED in every table, plot title and file.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from entityseg_data.catalog.records import iou_bin_labels
from entityseg_data.evaluation.rounds import GroupSummary, RoundRow, RoundsReport, summary_fields
from entityseg_data.io import atomic_open, atomic_write_json, atomic_write_text

SIMULATED_NOTE = (
    "**Lead times marked SIMULATED** come from simulated annotators (scripts standing in for "
    "people), not from people: they show the report working, not what pre-annotation saves."
)
DEFINITIONS = """\
- *annotation*: one annotator's work on one image of a stage (first submission + rework
  resubmissions); its time is the sum of their lead times, its edits those of the latest one.
- *min/image*: mean minutes per timed annotation (an image two people annotated counts twice);
  *min/entity*: total minutes over the entities they submitted. *timed*: annotations with a lead
  time; *time*: `tool` (recorded by the annotation tool) or `SIMULATED`.
- *seed*: the pre-annotation the tasks started from; edits are matched by mask IoU >= 0.5
  (greedy, one-to-one). *accepted*: seed entities kept pixel for pixel; *edited*: matched with
  IoU < 1; *deleted*: seed entities without a match; *added*: submitted entities without one;
  *px changed*: pixels whose entity differs from the seed's.
- *seed AP^e / AP50 / AR / bAP*: the seeds as predictions against the APPROVED stage-1 masks of
  the same images (class-agnostic COCO mask AP over IoU 0.50:0.95, AP at 0.5, AR@100, boundary
  AP). *agreement*: mean pairwise mask mAP between annotators on the images several annotated
  (the overlap sample).
"""


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "-" if v is None or v < 0 else f"{100 * v:.1f}"


def _time_source(s: GroupSummary) -> str:
    if not s.timed:
        return "none"
    return "SIMULATED" if s.simulated else "tool"


def _summary_cells(s: GroupSummary) -> list[str]:
    q = s.seed
    return [
        str(s.annotations),
        str(s.rework),
        f"{s.timed} ({_time_source(s)})",
        _f(s.minutes_per_image),
        _f(s.minutes_per_entity, 3),
        f"{s.n_seed} -> {s.n_final}",
        _pct(s.accepted),
        str(s.edited),
        str(s.deleted),
        str(s.added),
        _pct(s.pixels_changed_fraction),
        "-"
        if q is None
        else f"{_pct(q.ap)} / {_pct(q.ap50)} / {_pct(q.ar)} / {_pct(q.boundary_ap)}",
        "-" if s.agreement_map is None else f"{_pct(s.agreement_map)} ({s.overlap_images})",
    ]


SUMMARY_HEAD = [
    "annotations",
    "rework",
    "timed (time)",
    "min/image",
    "min/entity",
    "entities seed -> final",
    "accepted %",
    "edited",
    "deleted",
    "added",
    "px changed %",
    "seed AP^e / AP50 / AR / bAP %",
    "agreement mAP % (images)",
]


def round_table(report: RoundsReport) -> tuple[list[str], list[list[str]]]:
    head = ["round", "stage", "created", "seeds", "selection", "images", *SUMMARY_HEAD]
    rows = []
    for r in report.rounds:
        rec = r.round
        seeds = "-"
        if rec is not None and rec.seed_versions:
            seeds = ", ".join(f"{v or 'none'} ({n})" for v, n in sorted(rec.seed_versions.items()))
        rows.append(
            [
                r.label,
                str(r.stage),
                (rec.created_at or "-")[:19] if rec is not None else "-",
                seeds,
                (rec.selection or "-") if rec is not None else "-",
                str(len(rec.images)) if rec is not None else "-",
                *_summary_cells(r.summary),
            ]
        )
    return head, rows


def group_table(groups: Mapping[str, GroupSummary], what: str) -> tuple[list[str], list[list[str]]]:
    return [what, *SUMMARY_HEAD], [[k, *_summary_cells(s)] for k, s in groups.items()]


def bins_table(report: RoundsReport) -> tuple[list[str], list[list[str]]]:
    labels = list(iou_bin_labels())
    head = ["round", "stage", "unchanged", *[f"IoU {b}" for b in labels], "deleted", "added"]
    rows = [
        [
            r.label,
            str(r.stage),
            str(r.summary.unchanged),
            *[str(r.summary.iou_bins.get(b, 0)) for b in labels],
            str(r.summary.deleted),
            str(r.summary.added),
        ]
        for r in report.rounds
    ]
    return head, rows


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _sections(report: RoundsReport) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    return [
        ("Rounds", round_table(report)),
        ("Stage 1 by seed model version", group_table(report.versions, "seed version")),
        (
            "Stage 1 by how the images were chosen",
            group_table(report.selection, "images chosen by"),
        ),
        ("Edited entities by IoU with their seed", bins_table(report)),
    ]


def to_markdown(report: RoundsReport, plots: Mapping[str, str] | None = None) -> str:
    """The report as Markdown (``plots``: kind -> file name relative to the Markdown file)."""
    parts = ["# Annotation rounds: what pre-annotation saves", ""]
    if report.simulated:
        parts += [SIMULATED_NOTE, ""]
    if not report.rounds:
        parts += ["No annotation round recorded yet: push, annotate and pull first.", ""]
    for title, (head, rows) in _sections(report):
        parts += [f"## {title}", "", _md_table(head, rows) if rows else "(none)", ""]
    for kind, name in (plots or {}).items():
        parts += [f"![{kind}]({name})", ""]
    parts += ["## Definitions", "", DEFINITIONS]
    return "\n".join(parts)


def to_html(report: RoundsReport, plots: Mapping[str, str] | None = None) -> str:
    """The same content as :func:`to_markdown`, as a standalone HTML page."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>Annotation rounds</title><style>body{font-family:sans-serif;margin:2em}"
        "table{border-collapse:collapse;font-size:13px;margin-bottom:1.5em}"
        "td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.sim{color:#b00;font-weight:bold}"
        "img{max-width:100%}</style></head><body>",
        "<h1>Annotation rounds: what pre-annotation saves</h1>",
    ]
    if report.simulated:
        note = html.escape(SIMULATED_NOTE.replace("**", ""))
        out.append(f"<p class='sim'>{note}</p>")
    for title, (head, rows) in _sections(report):
        out.append(f"<h2>{html.escape(title)}</h2>")
        if not rows:
            out.append("<p>(none)</p>")
            continue
        out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
        for row in rows:
            cells = "".join(
                f"<td{' class=sim' if 'SIMULATED' in c else ''}>{html.escape(c)}</td>" for c in row
            )
            out.append(f"<tr>{cells}</tr>")
        out.append("</table>")
    for kind, name in (plots or {}).items():
        out.append(f"<p><img src='{html.escape(name)}' alt='{html.escape(kind)}'></p>")
    out.append("<h2>Definitions</h2><ul>")
    for item in DEFINITIONS.split("\n- "):
        out.append(f"<li>{html.escape(item.lstrip('- ').replace(chr(10), ' '))}</li>")
    out.append("</ul></body></html>")
    return "\n".join(out)


def _flat(s: GroupSummary) -> dict[str, Any]:
    row = {k: getattr(s, k) for k in summary_fields()}
    row.update(
        accepted=s.accepted,
        pixels_changed_fraction=s.pixels_changed_fraction,
        rework=s.rework,
        time_source=_time_source(s),
    )
    for k, v in s.iou_bins.items():
        row[f"iou_{k}"] = v
    q = s.seed
    for k in ("images", "ap", "ap50", "ar", "boundary_ap"):
        row[f"seed_{k}"] = None if q is None else getattr(q, k)
    return row


def to_json(report: RoundsReport) -> dict[str, Any]:
    """Every number of the report (fractions, minutes, counts)."""
    return {
        "simulated": report.simulated,
        "rounds": [
            {
                "round": None if r.round is None else r.round.to_dict(),
                "stage": r.stage,
                "kind": r.kind,
                **_flat(r.summary),
            }
            for r in report.rounds
        ],
        "versions": {k: _flat(s) for k, s in report.versions.items()},
        "selection": {k: _flat(s) for k, s in report.selection.items()},
    }


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: v for k, v in r.items()})
    return buf.getvalue()


def plot_rounds(report: RoundsReport, out_dir: Path) -> dict[str, Path]:
    """The three PNGs (module docstring); ``{kind: path}``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    sim = " (SIMULATED lead times)" if report.simulated else ""
    rows: list[RoundRow] = list(report.rounds)
    labels = [f"{r.label}\nstage {r.stage}" for r in rows]
    x = list(range(len(rows)))
    paths: dict[str, Path] = {}

    fig = Figure(figsize=(max(5.0, 1.3 * len(rows) + 2), 3.6), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    for ax, key, title in (
        (ax1, "minutes_per_image", "minutes per image"),
        (ax2, "minutes_per_entity", "minutes per entity"),
    ):
        vals = [getattr(r.summary, key) or 0.0 for r in rows]
        colors = ["#c44" if r.summary.simulated else "#48c" for r in rows]
        ax.bar(x, vals, color=colors)
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_title(title + sim, fontsize=9)
    fig.tight_layout()
    paths["time"] = out_dir / "rounds_time.png"
    with atomic_open(paths["time"], "wb") as fh:
        fig.savefig(fh, format="png")

    fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 3.6), dpi=110)
    ax = fig.subplots()
    parts = [("unchanged", "#4a4"), *[(f"iou:{b}", None) for b in iou_bin_labels()]]
    parts += [("deleted", "#c44"), ("added", "#888")]
    bottom = [0.0] * len(rows)
    cmap = matplotlib.colormaps["YlOrBr"]
    n_bins = len(iou_bin_labels())
    for k, (part, color) in enumerate(parts):
        vals = []
        for r in rows:
            s = r.summary
            total = max(1, s.n_seed + s.added)
            v = s.iou_bins.get(part[4:], 0) if part.startswith("iou:") else getattr(s, part)
            vals.append(v / total)
        c = color or cmap(0.85 - 0.6 * (k - 1) / max(1, n_bins - 1))
        name = f"edited, IoU {part[4:]}" if part.startswith("iou:") else part
        ax.bar(x, vals, bottom=bottom, color=c, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("share of seed + added entities")
    ax.set_title("what became of the seed entities", fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    paths["edits"] = out_dir / "rounds_edits.png"
    with atomic_open(paths["edits"], "wb") as fh:
        fig.savefig(fh, format="png")

    fig = Figure(figsize=(max(5.0, 1.2 * len(report.versions) + 2.5), 3.6), dpi=110)
    ax = fig.subplots()
    versions = [(v, s) for v, s in report.versions.items() if s.seed is not None]
    width = 0.27
    for k, (key, name) in enumerate(
        (("ap", "AP^e"), ("boundary_ap", "boundary AP"), ("ar", "AR@100"))
    ):
        vals = [max(0.0, getattr(s.seed, key)) * 100 for _, s in versions]
        ax.bar([i + (k - 1) * width for i in range(len(versions))], vals, width, label=name)
    ax.set_xticks(range(len(versions)), [v for v, _ in versions], fontsize=7)
    ax.set_ylabel("% against the approved masks")
    ax.set_title("pre-annotation quality by seed model version", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths["seed"] = out_dir / "rounds_seed.png"
    with atomic_open(paths["seed"], "wb") as fh:
        fig.savefig(fh, format="png")
    return paths


def write_rounds_report(
    report: RoundsReport, out_dir: str | Path, *, plots: bool = True
) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (created); returns ``{kind: path}`` with kinds
    ``markdown``, ``html``, ``json``, ``csv``, ``edits_csv`` and, with ``plots``, ``time``,
    ``edits``, ``seed``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if plots:
        paths.update(plot_rounds(report, out))
    pics: dict[str, str] = {k: paths[k].name for k in ("time", "edits", "seed") if k in paths}
    paths["markdown"] = out / "rounds.md"
    atomic_write_text(paths["markdown"], to_markdown(report, pics))
    paths["html"] = out / "rounds.html"
    atomic_write_text(paths["html"], to_html(report, pics))
    data = to_json(report)
    paths["json"] = out / "rounds.json"
    atomic_write_json(paths["json"], data, indent=2)
    paths["csv"] = out / "rounds.csv"
    flat = [{k: v for k, v in r.items() if k != "round"} | _round_cols(r) for r in data["rounds"]]
    atomic_write_text(paths["csv"], _csv(flat))
    paths["edits_csv"] = out / "edits.csv"
    edit_rows = []
    for e in report.edits:
        row = e.to_dict()
        bins = row.pop("iou_bins")
        row.update({f"iou_{k}": v for k, v in dict(bins).items()})
        edit_rows.append(row)
    with atomic_open(paths["edits_csv"], "w") as fh:
        fh.write(_csv(edit_rows))
    return paths


def _round_cols(row: Mapping[str, Any]) -> dict[str, Any]:
    rec = row.get("round") or {}
    return {
        "round_id": rec.get("id"),
        "created_at": rec.get("created_at"),
        "model_version": rec.get("model_version"),
        "selection": rec.get("selection"),
        "images": len(rec.get("images") or []),
    }


__all__ = [
    "SIMULATED_NOTE",
    "plot_rounds",
    "to_html",
    "to_json",
    "to_markdown",
    "write_rounds_report",
]
