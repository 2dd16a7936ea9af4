"""``rounds``: the annotation rounds of a workspace and what pre-annotation saved (issue 18).

Thin over the public API: ``ws.rounds.list()`` and ``ws.rounds.report(out)``."""

from __future__ import annotations

import json

import click

from entityseg_data.cli.common import echo_table, get_workspace


@click.group("rounds")
def rounds() -> None:
    """Annotation rounds: one per push; time, edits and seed quality per round.

    \b
    Examples:
      entityseg-data -w my_set rounds list
      entityseg-data -w my_set rounds report --out my_set/exports/reports/rounds
    """


@rounds.command("list")
@click.option("--stage", type=click.Choice(["1", "2"]), default=None, help="Only this stage.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_cmd(ctx: click.Context, stage: str | None, as_json: bool) -> None:
    """The recorded rounds: stage, seeds' model version, selection, images, annotators."""
    ws = get_workspace(ctx)
    recs = ws.rounds.list(int(stage) if stage else None)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in recs], indent=2))
        return
    echo_table(
        [
            {
                "round": r.id,
                "stage": r.stage,
                "created": (r.created_at or "")[:19],
                "seeds": r.model_version or "-",
                "selection": r.selection or "-",
                "images": len(r.images),
                "tasks": r.n_tasks,
                "annotators": ",".join(r.annotators),
            }
            for r in recs
        ]
    )


@rounds.command("report")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for rounds.md/.html/.json/.csv, edits.csv and the PNG plots.",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.pass_context
def report_cmd(ctx: click.Context, out_dir: str, no_plots: bool, as_json: bool) -> None:
    """Per round, per seed model version and selected vs not selected: minutes per image and
    per entity (lead times from the annotation tool; SIMULATED ones labelled), what became of
    the seed entities, the seed's AP^e / boundary AP / AR against the approved masks, and the
    agreement on the overlap sample (docs/rounds.md)."""
    ws = get_workspace(ctx)
    files = ws.rounds.report(out_dir, plots=not no_plots)
    if as_json:
        click.echo(files.paths["json"].read_text())
        return
    rep = files.report
    if rep.simulated:
        click.echo("NOTE: some lead times are SIMULATED (simulated annotators, not people)")
    rows = []
    for r in rep.rounds:
        s = r.summary
        rows.append(
            {
                "round": r.label,
                "stage": r.stage,
                "seeds": (r.round.model_version or "-") if r.round else "-",
                "selection": (r.round.selection or "-") if r.round else "-",
                "annotations": s.annotations,
                "min/image": "-" if s.minutes_per_image is None else f"{s.minutes_per_image:.2f}",
                "min/entity": "-"
                if s.minutes_per_entity is None
                else f"{s.minutes_per_entity:.3f}",
                "time": "SIMULATED" if s.simulated else ("tool" if s.timed else "none"),
                "accepted%": "-" if s.accepted is None else f"{100 * s.accepted:.1f}",
                "edited": s.edited,
                "deleted": s.deleted,
                "added": s.added,
                "seed AP^e%": "-" if s.seed is None else f"{100 * max(0.0, s.seed.ap):.1f}",
            }
        )
    echo_table(rows)
    for kind, path in sorted(files.paths.items()):
        click.echo(f"{kind + ':':<11}{path}")
