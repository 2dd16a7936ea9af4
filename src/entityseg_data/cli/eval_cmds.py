"""``entityseg-data eval`` and ``entityseg-data consistency`` (cheap imports at module level)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from entityseg_data.cli.common import echo_table

TASKS = ("entity", "instance", "panoptic", "semantic")


class _MultiValueCommand(click.Command):
    """Lets ``--max-dets 1 10 100 1000`` take several values (rewritten to one value)."""

    multi_options = ("--max-dets",)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            a = args[i]
            if a in self.multi_options:
                vals = []
                i += 1
                while i < len(args) and not args[i].startswith("-"):
                    vals.append(args[i])
                    i += 1
                out += [a, ",".join(vals)]
                continue
            out.append(a)
            i += 1
        return super().parse_args(ctx, out)


def _parse_max_dets(value: str | None) -> tuple[int, ...]:
    if not value:
        return (1, 10, 100)
    try:
        dets = tuple(int(v) for v in value.replace(",", " ").split())
    except ValueError:
        raise click.BadParameter(
            f"expected integers, got {value!r}", param_hint="--max-dets"
        ) from None
    if not dets or list(dets) != sorted(set(dets)) or dets[0] < 1:
        raise click.BadParameter("expected increasing positive integers", param_hint="--max-dets")
    return dets


@click.command(
    "eval",
    cls=_MultiValueCommand,
    epilog="""\b
Example:
  entityseg-data eval --gt val.json --pred coco_instances_results.json
  entityseg-data eval --gt val.json --pred label_maps/ --boundary --out metrics.json
  entityseg-data eval --gt val.json --pred results.json --max-dets 1 10 100 1000 --fix-overlaps
  entityseg-data eval --task instance --gt subsets/instance.json --pred results.json
  entityseg-data eval --task panoptic --gt subsets/panoptic.json --pred pred/panoptic.json
  entityseg-data eval --task semantic --gt subsets/semantic_categories.json --pred pred/semantic/
""",
)
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default="entity",
    show_default=True,
    help="entity: class-agnostic AP^e (categories ignored); instance: class-aware COCO mask AP "
    "per category; panoptic: PQ/SQ/RQ (things/stuff); semantic: mIoU/fwIoU/accuracy.",
)
@click.option(
    "--gt",
    "gt",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Ground truth: COCO/EntitySeg instance JSON (entity, instance), COCO panoptic JSON "
    "(panoptic; PNGs in --gt-folder) or semantic_categories.json (semantic).",
)
@click.option(
    "--pred",
    "pred",
    required=True,
    type=click.Path(exists=True),
    help="Predictions: COCO results JSON or label-map PNG folder (entity); COCO results JSON "
    "with category_id (instance); COCO panoptic JSON (panoptic; PNGs in --pred-folder); folder "
    "of label PNGs named like the GT's (semantic).",
)
@click.option(
    "--gt-folder",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="panoptic: the GT PNG folder (default: X for X.json, as panopticapi).",
)
@click.option(
    "--pred-folder",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="panoptic: the predicted PNG folder (default: X for X.json).",
)
@click.option("--boundary", is_flag=True, help="entity: also compute boundary AP.")
@click.option(
    "--max-dets",
    "max_dets",
    default=None,
    metavar="N [N ...]",
    help="entity, instance: detections per image (per category for instance) for AR "
    "(default 1 10 100; AP uses 100).",
)
@click.option(
    "--dilation-ratio",
    type=float,
    default=0.02,
    show_default=True,
    help="entity: boundary band width as a fraction of the image diagonal.",
)
@click.option(
    "--fix-overlaps",
    is_flag=True,
    help="entity: make each image's predictions disjoint by score first (AP^e protocol).",
)
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="entity: worker processes (0 = this process).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the metrics JSON here (keys: see docs/evaluation.md).",
)
def eval_(
    task,
    gt,
    pred,
    gt_folder,
    pred_folder,
    boundary,
    max_dets,
    dilation_ratio,
    fix_overlaps,
    workers,
    out,
):
    """Evaluate predictions: class-agnostic entity AP (default) or class-aware instance AP,
    panoptic PQ and semantic mIoU on the subsets `export subsets` writes.

    \b
    entity: COCO mask AP (AP^e on non-overlapping predictions), AR, boundary AP. Prints AP,
      AP50, AP75, APs/m/l, AR@1/10/100, ARs/m/l and AR@100 at IoU 0.5 (AR50@100) as
      percentages; the JSON holds fractions. Overlapping predictions are reported;
      --fix-overlaps resolves them by score.
    instance: pycocotools COCOeval(segm) numbers, plus AP per category.
    panoptic: panopticapi's PQ / SQ / RQ for All, Things and Stuff, plus per category.
    semantic: mIoU, fwIoU, mean and pixel accuracy from the confusion matrix, plus per class.
    """
    from entityseg_data.io import atomic_write_json

    if task != "entity":
        used = [
            name
            for name, on in (
                ("--boundary", boundary),
                ("--fix-overlaps", fix_overlaps),
                ("--workers", workers),
                ("--dilation-ratio", dilation_ratio != 0.02),
            )
            if on
        ]
        if used:
            raise click.UsageError(f"{', '.join(used)} only apply to --task entity")
    if task != "panoptic" and (gt_folder or pred_folder):
        raise click.UsageError("--gt-folder / --pred-folder only apply to --task panoptic")
    if task == "semantic" and max_dets:
        raise click.UsageError("--max-dets does not apply to --task semantic")
    if task == "entity":
        metrics = _eval_entity(gt, pred, boundary, max_dets, dilation_ratio, fix_overlaps, workers)
    elif task == "instance":
        from entityseg_data.api.evaluation import evaluate_instance

        metrics = evaluate_instance(gt, pred, max_dets=_parse_max_dets(max_dets), progress=True)
        _echo_instance(metrics)
    elif task == "panoptic":
        from entityseg_data.api.evaluation import evaluate_panoptic

        metrics = evaluate_panoptic(
            gt, pred, gt_folder=gt_folder, pred_folder=pred_folder, progress=True
        )
        _echo_panoptic(metrics)
    else:
        from entityseg_data.api.evaluation import evaluate_semantic

        if not Path(pred).is_dir():
            raise click.UsageError("--task semantic: --pred must be a folder of label PNGs")
        metrics = evaluate_semantic(gt, pred, progress=True)
        _echo_semantic(metrics)
    if out:
        atomic_write_json(Path(out), metrics)
        click.echo(f"wrote {out}")


def _pct(v: float | None) -> str:
    return "-" if v is None or v < 0 else f"{100 * v:.3f}"


def _eval_entity(gt, pred, boundary, max_dets, dilation_ratio, fix_overlaps, workers):
    from entityseg_data.api.evaluation import entity_metrics_table, evaluate_entity

    metrics = evaluate_entity(
        gt,
        pred,
        boundary=boundary,
        max_dets=_parse_max_dets(max_dets),
        dilation_ratio=dilation_ratio,
        fix_overlaps=fix_overlaps,
        workers=workers,
        progress=True,
    )
    echo_table(entity_metrics_table(metrics))
    info = metrics["info"]
    click.echo(
        f"{info['num_images']} images, {info['num_gt']} GT, {info['num_predictions']} predictions"
    )
    if info["images_with_overlaps"] and not fix_overlaps:
        click.echo(
            f"warning: {info['images_with_overlaps']} image(s) have overlapping predictions "
            f"({info['overlapping_pixels']} pixels): this is AP, not AP^e (see --fix-overlaps)",
            err=True,
        )
    return metrics


def _echo_instance(metrics: dict) -> None:
    echo_table([{"metric": k, "segm": _pct(v)} for k, v in metrics["segm"].items()])
    per = sorted(
        ((name, v) for name, v in metrics["per_category"].items() if v["AP"] >= 0),
        key=lambda kv: kv[1]["AP"],
    )
    if per:
        shown = per[:5] + (per[-5:] if len(per) > 5 else [])
        echo_table(
            [{"category": n, "AP": _pct(v["AP"]), "AP50": _pct(v["AP50"])} for n, v in shown]
        )
    info = metrics["info"]
    click.echo(
        f"{info['num_images']} images, {info['num_gt']} GT, {info['num_predictions']} "
        f"predictions, {info['num_categories']} categories ({len(per)} with GT; lowest and "
        f"highest AP shown, all in --out)"
    )


def _echo_panoptic(metrics: dict) -> None:
    echo_table(
        [
            {
                "": name,
                "PQ": _pct(metrics[name]["PQ"]),
                "SQ": _pct(metrics[name]["SQ"]),
                "RQ": _pct(metrics[name]["RQ"]),
                "N": str(metrics[name]["n"]),
            }
            for name in ("All", "Things", "Stuff")
        ]
    )
    info = metrics["info"]
    click.echo(
        f"{info['num_images']} images, {info['num_gt_segments']} GT segments, "
        f"{info['num_pred_segments']} predicted segments"
    )


def _echo_semantic(metrics: dict) -> None:
    echo_table(
        [{"metric": k, "value": _pct(metrics[k])} for k in ("mIoU", "fwIoU", "mAcc", "pAcc")]
    )
    info = metrics["info"]
    click.echo(
        f"{info['num_images']} images, {info['num_classes']} classes, {info['pixels']} labelled "
        f"pixels"
    )


def _unit_interval(value: float, name: str) -> float:
    """``value`` when 0 < value <= 1 (NaN is refused too: probe 5.13), else a usage error."""
    if not 0.0 < value <= 1.0:
        raise click.BadParameter(f"must be in (0, 1], got {value}", param_hint=name)
    return value


@click.command(
    "consistency",
    epilog="""\b
Example:
  entityseg-data consistency ann_a.json ann_b.json ann_c.json
  entityseg-data consistency ls_export.json --format csv --out pairs.csv
  entityseg-data -w my_set consistency ws:alice ws:bob --per-image disagreements.csv
""",
)
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "csv", "json"]),
    default="md",
    show_default=True,
    help="Output format (csv: one row per annotator pair).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the report here instead of printing it.",
)
@click.option(
    "--per-image",
    "per_image",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the per-image breakdown (.csv or .json) to find disagreeing images.",
)
@click.option(
    "--stage",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="Annotation stage of Label Studio exports and workspace files (2 = names).",
)
@click.option(
    "--iou",
    "iou",
    type=float,
    default=0.5,
    show_default=True,
    callback=lambda ctx, param, v: _unit_interval(v, "--iou"),
    help="Mask match threshold for category accuracy, in (0, 1].",
)
@click.option(
    "--plain-names",
    is_flag=True,
    help="Compare names by case/spacing only (skip the vocabulary and WordNet).",
)
@click.pass_context
def consistency(ctx, sources, fmt, out, per_image, stage, iou, plain_names):
    """Inter-annotator consistency: pairwise mask mAP and category accuracy (paper Table 1).

    SOURCES are COCO/EntitySeg JSON files, Label Studio JSON exports (each annotator in an
    export counts separately) or workspace annotator ids written ws:NAME. Each annotator is
    taken as ground truth against each other one (predictions with score 1); category accuracy
    compares the names of masks matched at IoU >= --iou, normalised with the vocabulary.
    """
    from entityseg_data.api.evaluation import agreement
    from entityseg_data.cli.common import get_workspace
    from entityseg_data.io import atomic_write_text

    ws = get_workspace(ctx, required=False) if any(s.startswith("ws:") for s in sources) else None
    result = agreement(
        list(sources), workspace=ws, stage=stage, iou_threshold=iou, plain_names=plain_names
    )
    if fmt == "md":
        text = result.to_markdown()
    elif fmt == "csv":
        text = result.to_csv("pairs")
    else:
        text = json.dumps(result.report, indent=1, default=str) + "\n"
    if out:
        atomic_write_text(Path(out), text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)
    if per_image:
        p = Path(per_image)
        if p.suffix.lower() == ".json":
            atomic_write_text(p, json.dumps(result.per_image, indent=1, default=str) + "\n")
        else:
            atomic_write_text(p, result.to_csv("per_image"))
        click.echo(f"wrote {per_image}")
