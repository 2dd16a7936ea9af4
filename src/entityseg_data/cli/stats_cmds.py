"""``stats`` (Table 2, Fig. 3, class counts) and ``data validate`` commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import click

from entityseg_data.cli.common import get_workspace, set_option

if TYPE_CHECKING:
    from tqdm import tqdm


def _progress(total: int, desc: str) -> tqdm[NoReturn]:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False)


class _Bar:
    """A progress bar fed by the API's ``progress(done, total)`` callbacks (the bar is made on
    the first call, when the total is known); a context manager that closes it."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: tqdm[NoReturn] | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = _progress(total, self.desc)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command("stats")
@click.argument("json_files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--images",
    "images_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Image folder of the JSON at the same position (repeatable; only read when a JSON "
    "lacks image sizes).",
)
@click.option("--name", "names", multiple=True, help="Dataset name per JSON (repeatable).")
@click.option(
    "--with-workspace/--no-workspace",
    default=None,
    help="Include the workspace's approved annotations (default: when no JSON is given).",
)
@click.option("--stage", default=1, show_default=True, help="Workspace stage to measure.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--limit", type=int, default=None, help="Only the first N images of each dataset.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option(
    "--vocab",
    is_flag=True,
    help="Count the classes of the annotation vocabulary (merged names, thing/stuff from "
    "WordNet; loading WordNet takes 10-30 s) instead of raw names.",
)
@set_option
@click.pass_context
def stats(
    ctx: click.Context,
    json_files: tuple[str, ...],
    images_dirs: tuple[str, ...],
    names: tuple[str, ...],
    with_workspace: bool | None,
    stage: int,
    out_dir: str,
    limit: int | None,
    no_plots: bool,
    vocab: bool,
    overrides: tuple[str, ...],
) -> None:
    """Dataset statistics: the paper's Table 2, Fig. 3 distributions and per-class counts.

    Measures a workspace (its approved annotations) and/or COCO/EntitySeg JSON files, side by
    side. Writes stats.json, table2.csv/.md, images.csv, entities.csv, classes.csv, fig3.png and
    entity_shapes.png to --out. Complexity and simplicity follow the paper's definitions
    (pixel-centre contours); --set stats.shape_measures=squares-crofton selects the pixel-square
    hull and Crofton perimeter instead (different numbers; docs/statistics.md).

    \b
    Example:
      entityseg-data -w my_set stats --out reports/stats
      entityseg-data stats coco/instances_val2017.json --name COCO \\
          ade/ade_val.json --name ADE20K --out reports/compare
    """
    from pathlib import Path

    from entityseg_data.api.stats import coco_stats, stats_report
    from entityseg_data.cli.common import echo_table
    from entityseg_data.config import apply_overrides
    from entityseg_data.config.stats import StatsConfig

    ws = get_workspace(ctx, required=bool(with_workspace) or not json_files)
    use_ws = ws is not None and (with_workspace or (with_workspace is None and not json_files))
    cfg = (
        ws.config(overrides).stats
        if ws is not None
        else apply_overrides(
            StatsConfig(), [o.split("stats.", 1)[1] for o in overrides if o.startswith("stats.")]
        )
    )
    results = []
    if use_ws and ws is not None:
        with ws.catalog() as cat:
            total = len(cat.annotations(stage=stage, status="approved"))
        with _progress(total, f"stats {ws.root.name}") as bar:
            results.append(ws.stats(stage=stage, config=cfg, progress=bar.update))
    for i, path in enumerate(json_files):
        name = names[i] if i < len(names) else Path(path).stem
        images_dir = images_dirs[i] if i < len(images_dirs) else None
        with _Bar(f"stats {name}") as progress:
            results.append(
                coco_stats(
                    path,
                    name=name,
                    images_dir=images_dir,
                    config=cfg,
                    limit=limit,
                    progress=progress,
                )
            )
    if not results:
        raise click.UsageError("nothing to measure: give JSON files or a workspace")
    rep = stats_report(results, out_dir, vocabulary=vocab, plots=not no_plots)
    echo_table(
        [
            {
                "dataset": r["dataset"],
                "images": r["images"],
                "entities": r["entities"],
                "ImageRes": f"{r['image_res']:.1f}",
                "ent/img": f"{r['entities_per_image_avg']:.1f}/{r['entities_per_image_max']}",
                "complexity": f"{r['complexity']:.3f}",
                "simplicity": f"{r['simplicity']:.3f}",
                "valid": f"{100 * r['valid_area']:.1f}%",
            }
            for r in rep.table
        ]
    )
    for name, definition in rep.shape_definitions.items():
        click.echo(f"shape measures '{name}': {definition}")
    for s in results:
        if s.errors:
            click.echo(f"{s.name}: {len(s.errors)} images skipped (see stats.json)", err=True)
    click.echo(f"wrote {len(rep.paths)} files to {out_dir}")


@click.group("data")
def data() -> None:
    """Check annotation files.

    \b
    Example:
      entityseg-data data validate annotations.json --images images/
    """


@data.command("validate")
@click.argument("json_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--images",
    "images_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Image folder (checks missing/unreadable images and sizes).",
)
@click.option("--stage", default=1, show_default=True, help="Workspace stage to check.")
@click.option("--allow-polygons", is_flag=True, help="Do not report polygon segmentations.")
@click.option("--max-offenders", default=10, show_default=True)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the full report as JSON.",
)
@click.pass_context
def validate(
    ctx: click.Context,
    json_file: str | None,
    images_dir: str | None,
    stage: int,
    allow_polygons: bool,
    max_offenders: int,
    report_path: str | None,
) -> None:
    """Validate a COCO/EntitySeg JSON (or the workspace's annotations): overlapping and empty
    masks, RLE sizes that differ from the image, missing or unreadable images, polygons where RLE
    is expected, duplicate ids. Prints counts and the first offenders; exits with status 1 when
    problems are found.

    \b
    Example:
      entityseg-data data validate entityseg_val.json --images images/ --report report.json
      entityseg-data -w my_set data validate
    """
    from entityseg_data.api.stats import validate_annotations
    from entityseg_data.io import atomic_write_json

    source = json_file if json_file is not None else get_workspace(ctx)
    with _Bar("validate") as progress:
        rep = validate_annotations(
            source,
            images_dir=images_dir,
            stage=stage,
            expect_rle=not allow_polygons,
            max_offenders=max_offenders,
            progress=progress,
        )
    for line in rep.summary_lines():
        click.echo(line)
    if report_path:
        atomic_write_json(report_path, rep.to_json(), indent=2)
    if not rep.ok:
        raise click.ClickException(f"{sum(rep.counts.values())} problems found")
