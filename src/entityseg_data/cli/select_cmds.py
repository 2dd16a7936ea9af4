"""``select``: choose the next images to annotate (a named selection in the catalog)."""

from __future__ import annotations

import json

import click

from entityseg_data.cli.common import (
    config_option,
    config_overrides,
    echo_table,
    get_workspace,
    set_option,
)


@click.command("select")
@click.option("--n", "n", type=int, default=None, help="How many images to choose.")
@click.option("--name", default=None, help="Name of the selection (default: <strategy>-<k>).")
@config_option(
    "--strategy",
    root="workspace",
    key="selection.strategy",
    help="uncertainty (model uncertainty + k-center diversity) or random (seeded baseline).",
)
@click.option(
    "--quota",
    "quota",
    multiple=True,
    metavar="SOURCE=K",
    help="Most images from a source: a count or a fraction of N (repeatable), e.g. coco=10.",
)
@config_option("--seed", root="workspace", key="seed", help="Seed of the random strategy.")
@config_option(
    "--uncertainty-weight",
    root="workspace",
    key="selection.uncertainty_weight",
    help="0 = diversity alone, 1 = uncertainty alone.",
)
@config_option(
    "--model-version",
    root="workspace",
    key="selection.model_version",
    help="Score this model's predictions (default: each image's newest).",
)
@click.option("--replace", is_flag=True, help="Replace a selection of the same name.")
@click.option("--list", "list_", is_flag=True, help="List the stored selections and exit.")
@click.option("--show", metavar="NAME", default=None, help="Print one selection's images.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@set_option
@click.pass_context
def select(
    ctx: click.Context,
    n: int | None,
    name: str | None,
    strategy: str | None,
    quota: tuple[str, ...],
    seed: int | None,
    uncertainty_weight: float | None,
    model_version: str | None,
    replace: bool,
    list_: bool,
    show: str | None,
    as_json: bool,
    overrides: tuple[str, ...],
) -> None:
    """Choose the next N images to annotate from the accepted, not yet annotated ones and store
    them as a named selection; `annotate push --selection NAME` sends exactly those.

    The uncertainty strategy ranks by the newest prediction (low mean entity score, small
    covered area, full/crop view disagreement) blended with diversity (k-center greedy on the
    cached CLIP image embeddings, near duplicates dropped); random is the seeded baseline.
    Both honour --quota. Same catalog and settings -> same selection.

    \b
    Examples:
      entityseg-data -w my_set select --n 50 --name round-2
      entityseg-data -w my_set select --n 50 --strategy random --name random-2 --seed 1
      entityseg-data -w my_set select --n 40 --quota coco=0.5 --quota unsplash=20
      entityseg-data -w my_set annotate push --stage 1 --selection round-2
      entityseg-data -w my_set select --show round-2
    """
    ws = get_workspace(ctx)
    if list_:
        recs = ws.selections()
        if as_json:
            click.echo(json.dumps([r.to_dict() for r in recs], indent=2))
            return
        echo_table(
            [
                {
                    "name": r.name,
                    "strategy": r.strategy,
                    "asked": r.n_requested,
                    "chosen": r.n_selected,
                    "seed": r.seed,
                    "created": r.created_at,
                }
                for r in recs
            ]
        )
        return
    if show is not None:
        items = ws.selection(show)
        if as_json:
            click.echo(json.dumps([it.to_dict() for it in items], indent=2))
            return
        for it in items:
            u = "-" if it.uncertainty is None else f"{it.uncertainty:.3f}"
            d = "-" if it.distance is None else f"{it.distance:.3f}"
            click.echo(
                f"{it.rank:>4}  image {it.image_id:<6} {it.source:<10} score {it.score:.3f}  "
                f"uncertainty {u}  distance {d}  {'; '.join(it.reasons)}"
            )
        return
    if n is None:
        raise click.UsageError("give --n N (or --list / --show NAME)")
    sets = config_overrides(ctx, "workspace", overrides)
    if quota:
        sets.insert(0, f"selection.quotas=[{', '.join(quota)}]")
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(step: str, done: int, total: int) -> None:
        if as_json:
            return
        bar = bars.get(step)
        if bar is None:
            unit = "img"
            bar = bars[step] = tqdm(total=total, unit=unit, desc=f"select: {step}", leave=False)
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        res = ws.select(n, name=name, replace=replace, overrides=sets, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=2))
        return
    rec = res.record
    click.echo(
        f"selection {rec.name} ({rec.strategy}): {rec.n_selected} of {rec.n_requested} images "
        f"chosen from {res.candidates} candidates ({res.covered} already covered, "
        f"{len(res.duplicates)} near duplicates dropped, {len(res.skipped)} without embedding)"
    )
    for it in res.items[:20]:
        click.echo(f"  {it.rank:>3}. image {it.image_id} ({it.source}): {'; '.join(it.reasons)}")
    if len(res.items) > 20:
        click.echo(f"  ... {len(res.items) - 20} more (select --show {rec.name})")
    if res.quota_full:
        click.echo(f"  quota reached: {', '.join(res.quota_full)}")
    for i, e in res.problems[:10]:
        click.echo(f"  image {i}: {e}", err=True)
    click.echo(f"push them: entityseg-data annotate push --stage 1 --selection {rec.name}")
