"""``export`` commands: EntitySeg JSON (hr + lr), Hugging Face datasets, class-aware subsets,
and ``convert``: COCO panoptic / instances / label maps imported into a workspace as approved
annotations (the ingest importer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from entityseg_data.cli.common import config_option, config_overrides, get_workspace, set_option

if TYPE_CHECKING:
    from tqdm import tqdm


def _bar(total: int | None, desc: str) -> tqdm[NoReturn]:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False)


def _source(ctx: click.Context, json_file: str | None, images_dir: str | None) -> tuple[Any, Any]:
    """(source, workspace-or-None): a JSON file with its image folder, else the workspace."""
    if json_file:
        if not images_dir:
            raise click.UsageError("--images is required with a JSON file")
        return json_file, None
    ws = get_workspace(ctx)
    return ws, ws


@click.group("export")
def export() -> None:
    """Export EntitySeg/COCO JSON (hr + lr), Hugging Face datasets and class-aware subsets, or
    convert COCO panoptic / instances / label maps into a workspace.

    \b
    Example:
      entityseg-data -w my_set export entityseg --out release/
      entityseg-data -w my_set export hf --out release_hf/
    """


@export.command("entityseg")
@click.option(
    "--json",
    "json_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Export this COCO JSON instead of the workspace.",
)
@click.option("--images", "images_dir", type=click.Path(file_okay=False), default=None)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@config_option(
    "--seed", root="workspace", key="seed", help="Split seed (default: the workspace's)."
)
@click.option("--no-split", is_flag=True, help="One 'all' file instead of train/val.")
@click.option("--no-lr", is_flag=True, help="Skip the lr copy (short side 800, long <= 1333).")
@click.option("--class-aware", is_flag=True, help="One category per name instead of 'entity'.")
@click.option("--copy", is_flag=True, help="Copy hr images instead of hard-linking them.")
@set_option
@click.pass_context
def entityseg(
    ctx: click.Context,
    json_file: str | None,
    images_dir: str | None,
    out_dir: str,
    seed: int | None,
    no_split: bool,
    no_lr: bool,
    class_aware: bool,
    copy: bool,
    overrides: tuple[str, ...],
) -> None:
    """EntitySeg-format COCO JSON (compressed RLE, class-agnostic + open-vocabulary names),
    seeded train/val splits (stratified by source) and the official lr copy.

    \b
    Example:
      entityseg-data -w my_set export entityseg --out release/ --set export.val_fraction=0.2
      entityseg-data export entityseg --json ann.json --images imgs/ --out release/
    """
    from entityseg_data.api.export import export_entityseg

    source, _ = _source(ctx, json_file, images_dir)
    with _bar(None, "export") as bar:
        res = export_entityseg(
            source,
            out_dir,
            images_dir=images_dir,
            overrides=config_overrides(ctx, "workspace", overrides),
            split=not no_split,
            lr=not no_lr,
            class_agnostic=not class_aware,
            link=not copy,
            progress=bar.update,
        )
    for name, counts in res.counts.items():
        click.echo(f"{name}: {counts}")
    click.echo(f"wrote {out_dir}")


@export.command("hf")
@click.option("--json", "json_file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--images", "images_dir", type=click.Path(file_okay=False), default=None)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--no-save-to-disk", is_flag=True, help="Only write the Parquet files.")
@click.option(
    "--push",
    "push_to_hub",
    default=None,
    metavar="REPO_ID",
    help="Also push to the Hub (needs HF_TOKEN or a saved login).",
)
@click.pass_context
def hf(
    ctx: click.Context,
    json_file: str | None,
    images_dir: str | None,
    out_dir: str,
    no_save_to_disk: bool,
    push_to_hub: str | None,
) -> None:
    """Hugging Face `datasets` export: image, entity masks as RLE, names, provenance; Parquet
    files with embedded images and a save_to_disk folder.

    \b
    Example:
      entityseg-data -w my_set export hf --out release_hf/
      entityseg-data export hf --json ann.json --images imgs/ --out hf/ --push me/my-entities
    """
    from entityseg_data.api.export import export_hf

    source, _ = _source(ctx, json_file, images_dir)
    with _bar(None, "hf export") as bar:
        res = export_hf(
            source,
            out_dir,
            images_dir=images_dir,
            save_to_disk=not no_save_to_disk,
            push_to_hub=push_to_hub,
            progress=bar.update,
        )
    click.echo(
        f"rows: {res['rows']}; parquet: {', '.join(str(p) for p in res['parquet'].values())}"
    )


@export.command("subsets")
@click.option("--json", "json_file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--instance",
    "k_instance",
    default=100,
    show_default=True,
    help="Top-K classes by entity frequency (0 = skip).",
)
@click.option(
    "--semantic",
    "k_semantic",
    default=100,
    show_default=True,
    help="Top-K classes by pixel frequency (0 = skip).",
)
@click.option(
    "--panoptic",
    "k_panoptic",
    default=100,
    show_default=True,
    help="Top-K classes by entity frequency, COCO panoptic PNGs (0 = skip).",
)
@click.pass_context
def subsets(
    ctx: click.Context,
    json_file: str | None,
    out_dir: str,
    k_instance: int,
    k_semantic: int,
    k_panoptic: int,
) -> None:
    """Class-aware subsets: instance (top-K by entities), semantic (top-K by pixels, label PNGs)
    and panoptic (top-K by entities, COCO panoptic PNG + JSON).

    \b
    Example:
      entityseg-data -w my_set export subsets --out subsets/ --instance 50 --panoptic 80
    """
    from entityseg_data.api.export import export_subsets

    source = json_file if json_file else get_workspace(ctx)
    with _bar(None, "subsets") as bar:
        paths = export_subsets(
            source,
            out_dir,
            k_instance=k_instance,
            k_semantic=k_semantic,
            k_panoptic=k_panoptic,
            progress=bar.update,
        )
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")


@export.group("convert")
def convert() -> None:
    """Import COCO panoptic / COCO instances / label-map PNG folders into the workspace as
    approved annotations (COCO-Entity protocol: every segment, thing or stuff, becomes an
    entity; its category name is its stage-2 name and its thing/stuff kind is kept).

    These run the ingest pipeline with the COCO importer / label-map source in 'import as
    approved' mode: images are stored upright (EXIF applied to image and masks), de-duplicated
    (exact and near duplicates are not imported twice) and recorded with their provenance; no
    quality or NSFW filter is applied.

    \b
    Example:
      entityseg-data -w my_set export convert panoptic panoptic_val2017.json \\
          panoptic_val2017/ val2017/
    """


def _report(res: Any) -> None:
    failed = sum(res.failed.values())
    click.echo(
        f"images: {res.images}, entities: {res.entities}, duplicates: {res.duplicates}, "
        f"failed: {failed}, problems: {len(res.problems)}"
    )
    for kind, n in sorted(res.failed.items()):
        click.echo(f"  failed ({kind}): {n}", err=True)
    for p in res.problems[:10]:
        click.echo(f"  skipped {p}", err=True)
    if len(res.problems) > 10:
        click.echo(f"  ... and {len(res.problems) - 10} more (see the log)", err=True)


def _progress(bar: tqdm[NoReturn]) -> Callable[[Any], None]:
    def on_event(ev: Any) -> None:
        if getattr(ev, "stage", "") != "nsfw":
            bar.update(getattr(ev, "n", 1))

    return on_event


_DEDUPE = click.option(
    "--dedupe",
    type=click.Choice(["near", "exact"]),
    default="near",
    show_default=True,
    help="Skip near duplicates (pHash) too, or only byte-identical images.",
)


@convert.command("panoptic")
@click.argument("panoptic_json", type=click.Path(exists=True, dir_okay=False))
@click.argument("panoptic_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--crowd",
    type=click.Choice(["drop", "keep"]),
    default="drop",
    show_default=True,
    help="Crowd segments (iscrowd=1): left out, or kept as entities marked iscrowd.",
)
@_DEDUPE
@click.pass_context
def convert_panoptic(ctx, panoptic_json, panoptic_dir, images_dir, crowd, dedupe):
    """COCO panoptic JSON + PNG folder -> approved workspace entities (one per segment).

    \b
    Example:
      entityseg-data -w ws export convert panoptic panoptic_val2017.json panoptic_val2017/ val2017/
    """
    ws = get_workspace(ctx)
    with _bar(None, "convert") as bar:
        res = ws.import_coco(
            panoptic_json,
            images_dir,
            panoptic_dir=panoptic_dir,
            crowd=crowd,
            near_duplicates=dedupe == "near",
            progress=_progress(bar),
        )
    _report(res)


@convert.command("instances")
@click.argument("instances_json", type=click.Path(exists=True, dir_okay=False))
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--crowd",
    type=click.Choice(["drop", "keep"]),
    default="drop",
    show_default=True,
    help="Crowd annotations (iscrowd=1): left out, or kept as entities marked iscrowd.",
)
@click.option(
    "--overlaps",
    type=click.Choice(["smaller_wins", "later_wins"]),
    default="smaller_wins",
    show_default=True,
    help="Where instances overlap: the smaller one keeps the pixels, or the later in the file.",
)
@_DEDUPE
@click.pass_context
def convert_instances(ctx, instances_json, images_dir, crowd, overlaps, dedupe):
    """COCO instances JSON -> approved workspace entities (overlaps resolved by --overlaps).

    \b
    Example:
      entityseg-data -w ws export convert instances instances_val2017.json val2017/
    """
    ws = get_workspace(ctx)
    with _bar(None, "convert") as bar:
        res = ws.import_coco(
            instances_json,
            images_dir,
            crowd=crowd,
            overlaps=overlaps,
            near_duplicates=dedupe == "near",
            progress=_progress(bar),
        )
    _report(res)


@convert.command("label-maps")
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("label_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--names",
    "names_json",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help='JSON {"value": "name"} naming label values.',
)
@click.option(
    "--void",
    "void_values",
    multiple=True,
    type=int,
    default=(0,),
    show_default=True,
    help="Label values that are not entities (repeatable).",
)
@_DEDUPE
@click.pass_context
def convert_label_maps_cmd(ctx, images_dir, label_dir, names_json, void_values, dedupe):
    """Image folder + label-map PNG folder (same stems) -> approved workspace entities (one per
    value).

    \b
    Example:
      entityseg-data -w ws export convert label-maps frames/ masks/ --names names.json
    """
    from entityseg_data.errors import DataError
    from entityseg_data.io import read_json

    names = None
    if names_json:
        raw = read_json(names_json, "label names")
        try:
            names = {int(k): str(v) for k, v in dict(raw).items()}
        except (TypeError, ValueError):
            raise DataError(f"{names_json}: must map label values to names") from None
    ws = get_workspace(ctx)
    with _bar(None, "convert") as bar:
        res = ws.import_label_maps(
            images_dir,
            label_dir,
            names=names,
            void_values=void_values,
            near_duplicates=dedupe == "near",
            progress=_progress(bar),
        )
    _report(res)
