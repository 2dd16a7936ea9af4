"""``entityseg-data model``: presets and checkpoint conversion (torch imported lazily)."""

from __future__ import annotations

import click

from entityseg_data.cli.common import echo_table


@click.group("model")
def model() -> None:
    """Model presets and official checkpoint conversion.

    \b
    Example:
      entityseg-data model presets
      entityseg-data model convert --src CropFormer_hornet_3x_03823a.pth \\
          --preset cropformer_hornet_3x -o models/cropformer_hornet_3x
    """


@model.command("presets")
@click.option("--params", is_flag=True, help="Also count parameters (builds each model on meta).")
def presets(params: bool) -> None:
    """List the named model configurations.

    \b
    Example:
      entityseg-data model presets --params
    """
    from entityseg_data.api.models import model_presets

    rows = []
    for p in model_presets(count_parameters=params):
        row = {
            "name": p.name,
            "architecture": p.architecture,
            "backbone": p.backbone,
            "queries": p.num_queries,
            "hidden": p.hidden_dim,
            "decoder_layers": p.decoder_layers,
            "released": "yes" if p.released else "",
        }
        if p.parameters is not None:
            row["parameters"] = f"{p.parameters:,}"
        rows.append(row)
    echo_table(rows)


@model.command("convert")
@click.option(
    "--src",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Official checkpoint: .pth (detectron2 {'model': ...} or state_dict), .pkl or .npz.",
)
@click.option("--preset", default=None, help="Architecture of the checkpoint (a preset name).")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    help="Architecture from an official detectron2 YAML (merged dump or with _BASE_).",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Output folder (model.safetensors, config.json, conversion_report.json).",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow arbitrary unpickling (needed by some .pth/.pkl files; can run code: only for "
    "files you trust).",
)
def convert(
    src: str, preset: str | None, config_path: str | None, out: str, trust_pickle: bool
) -> None:
    """Convert an official CropFormer / Mask2Former checkpoint.

    Every source key is consumed or dropped from a documented list, every model weight is
    filled and shapes are checked; the report names source sha256, dropped, missing and
    unexpected keys.

    \b
    Example:
      entityseg-data model convert --src Mask2Former_swin_tiny_3x_3cacfb.pth \\
          --preset mask2former_swin_tiny_3x -o models/m2f_swin_t
      entityseg-data model convert --src model_final.pth \\
          --config configs/cropformer_swin_tiny_3x.yaml -o models/mine
    """
    from entityseg_data.api.models import convert_checkpoint
    from entityseg_data.errors import ConfigError

    if (preset is None) == (config_path is None):
        raise click.UsageError("give exactly one of --preset or --config")
    try:
        rep = convert_checkpoint(
            src, out, preset=preset, config=config_path, trust_pickle=trust_pickle
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"converted {rep.num_tensors} tensors ({rep.num_parameters:,} parameters, "
        f"{rep.architecture}); dropped {len(rep.dropped)}, missing 0, unexpected 0 -> {out}"
    )
