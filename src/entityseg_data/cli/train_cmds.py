"""``entityseg-data train``: train CropFormer / Mask2Former (single process or under torchrun)."""

from __future__ import annotations

import click

from entityseg_data.cli.common import config_option, config_overrides, set_option


@click.command("train")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Training YAML (configs/train/*.yaml); keys not given keep their defaults.",
)
@set_option
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints/last if present.")
@config_option(
    "--init",
    root="train",
    key="init",
    help="Start from an official checkpoint (.pth/.pkl/.npz) or a converted model folder.",
)
@config_option("--out", "out_dir", root="train", key="out_dir", help="Output folder.")
@click.option("--no-progress", is_flag=True, help="No progress bar (log lines instead).")
def train(config_path, overrides, resume, init, out_dir, no_progress):
    """Train CropFormer (or the Mask2Former baseline) on a COCO/EntitySeg JSON.

    Writes OUT/metrics.jsonl, OUT/checkpoints/step_*.pt (every checkpoint_period steps, with
    optimizer, schedule and RNG state for exact resume) and, at the end, OUT/model
    (model.safetensors + config.json) that `predict --model OUT/model` and the ML backend load.
    Under torchrun every process runs this command; rank 0 writes the files.

    \b
    Example:
      entityseg-data train --config configs/train/tiny_cpu.yaml \\
          --set data.train_json=export/train.json --set data.image_root=export/images \\
          --out runs/tiny
      entityseg-data train --config configs/train/tiny_cpu.yaml --out runs/tiny --resume
      torchrun --nproc_per_node 8 -m entityseg_data train \\
          --config configs/train/cropformer_swin_tiny_3x.yaml --out runs/cf_t \\
          --init converted/mask2former_swin_tiny_3x
    """
    import logging
    import os

    from entityseg_data.api.training import load_train_config, train

    cfg = load_train_config(
        config_path, config_overrides(click.get_current_context(), "train", overrides)
    )
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 reports
    if not main_rank:
        logging.getLogger("entityseg_data").setLevel(logging.WARNING)
    result = train(cfg, resume=resume, progress=not no_progress)
    if main_rank:
        last = result.losses[-1] if result.losses else float("nan")
        click.echo(
            f"trained {result.iteration} iterations (from {result.start_iteration}); "
            f"last loss {last:.4f}; model: {result.model_dir}; metrics: {result.metrics_path}"
        )
        for it, metrics in sorted(result.eval_results.items()):
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.endswith("/AP"))
            click.echo(f"eval @ {it}: {shown}")
