"""``export`` commands: EntitySeg JSON (hr + lr), Hugging Face datasets, class-aware subsets,
and converters from COCO panoptic / instances / label maps into a workspace."""

from __future__ import annotations

from typing import Any

import click

from entityseg_data.cli.common import get_workspace, set_option


def _bar(total: int | None, desc: str):
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
@click.option("--seed", default=0, show_default=True, help="Split seed.")
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
    seed: int,
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
    from entityseg_data.config import apply_overrides
    from entityseg_data.config.export import ExportConfig
    from entityseg_data.export.entityseg import export_entityseg

    source, ws = _source(ctx, json_file, images_dir)
    if ws is not None:
        cfg = ws.config(overrides).export
    else:
        cfg = apply_overrides(
            ExportConfig(), [o.split("export.", 1)[1] for o in overrides if o.startswith("export.")]
        )
    with _bar(None, "export") as bar:
        res = export_entityseg(
            source,
            out_dir,
            images_dir=images_dir,
            config=cfg,
            seed=seed,
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
    from entityseg_data.export.hf import export_hf

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
    from entityseg_data.export.subsets import export_subsets

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
    """Convert COCO panoptic / COCO instances / label-map PNG folders into the workspace
    (COCO-Entity protocol: every segment, thing or stuff, becomes an entity).

    \b
    Example:
      entityseg-data -w my_set export convert panoptic panoptic_val2017.json \\
          panoptic_val2017/ val2017/
    """


def _report(res: Any) -> None:
    click.echo(
        f"images: {res.images}, entities: {res.entities}, dropped empty: {res.dropped_entities}, "
        f"skipped: {len(res.skipped)}"
    )
    for s in res.skipped[:10]:
        click.echo(f"  skipped {s['record']}: {s['error']}", err=True)


@convert.command("panoptic")
@click.argument("panoptic_json", type=click.Path(exists=True, dir_okay=False))
@click.argument("panoptic_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--source", default="coco_panoptic", show_default=True)
@click.option("--no-crowd", is_flag=True, help="Leave crowd segments out.")
@click.option("--limit", type=int, default=None)
@click.pass_context
def convert_panoptic(ctx, panoptic_json, panoptic_dir, images_dir, source, no_crowd, limit):
    """COCO panoptic JSON + PNG folder -> workspace entities (one per segment).

    \b
    Example:
      entityseg-data -w ws export convert panoptic panoptic_val2017.json panoptic_val2017/ val2017/
    """
    from entityseg_data.export.converters import convert_coco_panoptic

    ws = get_workspace(ctx)
    with _bar(None, "convert") as bar:
        res = convert_coco_panoptic(
            ws,
            panoptic_json,
            panoptic_dir,
            images_dir,
            source=source,
            include_crowd=not no_crowd,
            limit=limit,
            progress=bar.update,
        )
    _report(res)


@convert.command("instances")
@click.argument("instances_json", type=click.Path(exists=True, dir_okay=False))
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--source", default="coco", show_default=True)
@click.option("--crowd", is_flag=True, help="Also import crowd annotations.")
@click.option("--limit", type=int, default=None)
@click.pass_context
def convert_instances(ctx, instances_json, images_dir, source, crowd, limit):
    """COCO instances JSON -> workspace entities (overlaps: smaller instances win).

    \b
    Example:
      entityseg-data -w ws export convert instances instances_val2017.json val2017/
    """
    from entityseg_data.export.converters import convert_coco_instances

    ws = get_workspace(ctx)
    with _bar(None, "convert") as bar:
        res = convert_coco_instances(
            ws,
            instances_json,
            images_dir,
            source=source,
            include_crowd=crowd,
            limit=limit,
            progress=bar.update,
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
@click.option("--source", default="label_maps", show_default=True)
@click.option("--limit", type=int, default=None)
@click.pass_context
def convert_label_maps_cmd(ctx, images_dir, label_dir, names_json, void_values, source, limit):
    """Image folder + label-map PNG folder (same stems) -> workspace entities (one per value).

    \b
    Example:
      entityseg-data -w ws export convert label-maps frames/ masks/ --names names.json
    """
    import json
    from pathlib import Path

    from entityseg_data.export.converters import convert_label_maps

    names = None
    if names_json:
        names = {int(k): str(v) for k, v in json.loads(Path(names_json).read_text()).items()}
    ws = get_workspace(ctx)
    with _bar(None, "convert") as bar:
        res = convert_label_maps(
            ws,
            images_dir,
            label_dir,
            names=names,
            void_values=void_values,
            source=source,
            limit=limit,
            progress=bar.update,
        )
    _report(res)
