"""``predict``: segment images into non-overlapping entities (CropFormer / Mask2Former)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from entityseg_data.cli.common import config_option, config_overrides, get_workspace, set_option

FORMAT_CHOICES = ("png", "json", "coco", "overlay", "cutouts", "npz")


@click.command("predict")
@click.argument("inputs", nargs=-1)
@click.option(
    "-o",
    "--output",
    default=None,
    help="Output folder, or a path template without extension using {stem} {name} {parent} "
    "{relpath} {index} (e.g. 'out/{parent}/mask/{stem}'). Folder = 'OUT/{relpath}'.",
)
@click.option(
    "-f",
    "--format",
    "formats",
    multiple=True,
    type=click.Choice(FORMAT_CHOICES),
    help="Output formats (repeatable; default png + json): png = uint16 label map, json = "
    "sidecar, coco = COCO/SAM RLE records, overlay, cutouts = RGBA per entity, npz.",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    help="Released model name, e.g. "
    "cropformer_hornet_3x (downloaded once), or the preset of --weights.",
)
@click.option(
    "--weights",
    default=None,
    type=click.Path(exists=True),
    help="Official checkpoint file (.pth/.pkl/.npz) or converted model folder.",
)
@click.option(
    "--mode",
    type=click.Choice(["cropformer", "mask2former"]),
    default=None,
    help="Model family (with a bare name such as hornet_3x it picks the family).",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="torch device (cpu, cuda, cuda:1, or 'auto' = cuda:$LOCAL_RANK when CUDA is available).",
)
@click.option(
    "--batch-size", default=1, show_default=True, type=int, help="Images per forward pass."
)
@click.option(
    "--stride", default=1, show_default=True, type=int, help="Use every N-th input (video frames)."
)
@click.option(
    "--resize",
    default=None,
    help="Resize inputs first: HxW (e.g. 480x640) or a short side N; outputs are at that size.",
)
@config_option(
    "--score-thresh",
    root="model",
    key="inference.score_thresh",
    help="Drop entities scoring below.",
)
@config_option(
    "--min-area", root="model", key="inference.min_area", help="Drop entities smaller (pixels)."
)
@config_option(
    "--max-entities", root="model", key="inference.max_entities", help="Keep at most N entities."
)
@config_option(
    "--score-mode",
    root="model",
    key="inference.score_mode",
    help="calibrated = entity prob x mean mask prob (default); reference = official.",
)
@config_option(
    "--decoder",
    root="model",
    key="inference.decoder",
    help="Which decoder outputs feed the result (paper ablation).",
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Skip images whose outputs all exist (resume a killed run).",
)
@click.option(
    "--shard",
    default=None,
    help="i/n: process the i-th of n interleaved parts; 'auto' = torchrun's RANK/WORLD_SIZE.",
)
@click.option(
    "--failures",
    default=None,
    type=click.Path(dir_okay=False),
    help="Failure records (JSON lines; default OUTPUT/failures[.i-of-n].jsonl).",
)
@click.option(
    "--workspace-images",
    is_flag=True,
    help="Predict the workspace's accepted "
    "images and store them as stage-1 pre-annotations (predictions table).",
)
@click.option(
    "--from-sam",
    "from_sam",
    is_flag=True,
    help="INPUTs are SAM automatic-mask-generator outputs (COCO-RLE JSON files or mask folders "
    "with metadata.csv): make them non-overlapping (higher predicted_iou wins) and write the "
    "same outputs. No model is loaded.",
)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="fp32 = the official computation; bf16/fp16 autocast (fp16: GPU; bf16 on CPU only with "
    "AVX512-BF16/AMX: ~1.7x there, several times slower without) and int8 (dynamic quantization "
    "of Linear layers, CPU) are faster approximations whose masks move (docs/benchmarks.md).",
)
@click.option("--trust-pickle", is_flag=True, help="Allow pickled checkpoints (trusted files).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@set_option
@click.pass_context
def predict(
    ctx: click.Context,
    inputs: tuple[str, ...],
    output: str | None,
    formats: tuple[str, ...],
    model_name: str | None,
    weights: str | None,
    mode: str | None,
    device: str,
    batch_size: int,
    stride: int,
    resize: str | None,
    score_thresh: float | None,
    min_area: int | None,
    max_entities: int | None,
    score_mode: str | None,
    decoder: str | None,
    skip_existing: bool,
    shard: str | None,
    failures: str | None,
    workspace_images: bool,
    from_sam: bool,
    threads: int | None,
    precision: str,
    trust_pickle: bool,
    no_progress: bool,
    overrides: tuple[str, ...],
) -> None:
    """Segment INPUT images (files, folders, globs, .txt lists) into non-overlapping entities.

    Writes one uint16 label-map PNG per image (0 = none, ids 1..N by descending score) plus a
    JSON sidecar (id, score, area, bbox), and optionally COCO/SAM RLE records, overlays, RGBA
    cut-outs and .npz. A bad image is reported (summary + failures file) and the run goes on;
    the exit code is 1 only if some image failed. --set takes inference.* and views.* keys of
    the model config (e.g. --set views.min_size=640).

    \b
    Example:
      entityseg-data predict photos/ -o out/ --model cropformer_hornet_3x --device cuda
      entityseg-data predict 'scene0/color/*.jpg' -o 'scene0/mask/{stem}' --stride 10 \\
          --resize 480x640 --score-thresh 0.5 --min-area 400 \\
          --weights CropFormer_hornet_3x_03823a.pth
      torchrun --nproc-per-node 4 -m entityseg_data predict frames/ -o out/ --shard auto \\
          --device auto --model cropformer_hornet_3x --skip-existing
      entityseg-data -w my_set predict --workspace-images --model cropformer_hornet_3x
    """
    from entityseg_data.api.predict import plan_predictions, predict_files, prepare_device
    from entityseg_data.api.segmenters import load_segmenter

    if not inputs and not workspace_images:
        raise click.UsageError(
            "give INPUT images (files, folders, globs, lists) or --workspace-images"
        )
    if output is None and not workspace_images:
        raise click.UsageError("-o/--output is required (unless --workspace-images)")
    if from_sam:
        _convert_sam(inputs, output, formats, min_area, skip_existing)
        return
    if model_name is None and weights is None:
        raise click.UsageError("pass --model NAME or --weights PATH")
    if workspace_images and resize:
        raise click.UsageError(
            "--resize cannot be used with --workspace-images (pre-annotations "
            "must have the stored image's size)"
        )
    # everything is checked (outputs, shard, resize) before the model is loaded
    plan = plan_predictions(
        inputs,
        output=output,
        formats=formats,
        workspace=get_workspace(ctx) if workspace_images else None,
        stride=stride,
        resize=resize,
        shard=shard,
        failures=failures,
    )
    device = prepare_device(device, threads=threads)
    seg = load_segmenter(
        str(weights or model_name),
        device=device,
        mode=mode,
        preset=model_name if weights else None,
        trust_pickle=trust_pickle,
        precision=precision,
        # --score-thresh & co. and --set: inference.* / views.* of the model's config
        overrides=config_overrides(ctx, "model", overrides),
    )
    bar = None
    if not no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), unit="img", desc="predict", file=sys.stderr, dynamic_ncols=True)
    try:
        summary = predict_files(
            seg,
            plan,
            batch_size=batch_size,
            skip_existing=skip_existing,
            progress=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    info = summary.as_dict()
    click.echo(
        f"predicted {info['done']} image(s), skipped {info['skipped']}, failed {info['failed']}; "
        f"{info['entities']} entities; {info['seconds']} s ({info['images_per_second']} img/s, "
        f"{info['images_per_hour']} img/h)"
    )
    if summary.failures:
        # each failure was logged as a warning while running (path: problem)
        if plan.failures_path:
            click.echo(f"{summary.failed} failure(s) written to {plan.failures_path}", err=True)
        sys.exit(1)


def _convert_sam(
    inputs: Sequence[str],
    output: str | None,
    formats: Sequence[str],
    min_area: int | None,
    skip_existing: bool,
) -> None:
    """``--from-sam``: SAM outputs -> non-overlapping label maps and sidecars."""
    from entityseg_data.api.predict import DEFAULT_FORMATS, convert_sam_outputs

    if output is None:
        raise click.UsageError("-o/--output is required with --from-sam")
    if set(formats or DEFAULT_FORMATS) & {"overlay", "cutouts"}:
        raise click.UsageError("--from-sam writes png, json, coco and npz (no image is read)")
    rep = convert_sam_outputs(
        inputs, output, formats=formats, min_area=min_area or 0, skip_existing=skip_existing
    )
    for failure in rep.failed:
        click.echo(f"failed: {failure}", err=True)
    click.echo(
        f"converted {rep.done} SAM output(s), skipped {rep.skipped}, failed {len(rep.failed)}"
    )
    if rep.failed:
        sys.exit(1)
