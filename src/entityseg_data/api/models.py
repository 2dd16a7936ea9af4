"""The model's presets and official checkpoint conversion (the ``model`` commands).

>>> [p.name for p in model_presets()]                  # the named configurations
>>> rep = convert_checkpoint("CropFormer_hornet_3x_03823a.pth", "models/hornet",
...                          preset="cropformer_hornet_3x")
>>> seg = load_segmenter("models/hornet")

torch is imported only when parameters are counted or a checkpoint is converted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entityseg_data.model.config import ModelConfig


@dataclass(frozen=True)
class PresetInfo:
    """One named model configuration: its architecture (``cropformer`` | ``mask2former``),
    backbone, queries, hidden width, decoder layers (without the first, query-only one),
    whether official weights are released for it and, when counted, its parameters."""

    name: str
    architecture: str
    backbone: str
    num_queries: int
    hidden_dim: int
    decoder_layers: int
    released: bool
    parameters: int | None = None


def model_preset(name: str) -> ModelConfig:
    """The :class:`~entityseg_data.model.config.ModelConfig` of a preset (ConfigError naming
    the presets when unknown). Cheap: no torch."""
    from entityseg_data.model.presets import get_preset

    return get_preset(name)


def model_presets(*, count_parameters: bool = False) -> list[PresetInfo]:
    """Every preset, in the presets' order (the released ones first). ``count_parameters``
    builds each model on the meta device (imports torch; no memory for weights)."""
    from entityseg_data.model.presets import PRESETS, RELEASED

    out = []
    for name, cfg in PRESETS.items():
        params = None
        if count_parameters:
            from entityseg_data.model.loading import build_model

            m = build_model(cfg, device="meta")
            params = sum(p.numel() for p in m.parameters())
            del m
        out.append(
            PresetInfo(
                name=name,
                architecture=cfg.architecture,
                backbone=cfg.backbone.name,
                num_queries=cfg.num_queries,
                hidden_dim=cfg.hidden_dim,
                decoder_layers=cfg.dec_layers - 1,
                released=name in RELEASED,
                parameters=params,
            )
        )
    return out


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_checkpoint` wrote to ``out_dir``: tensors and parameters converted,
    the architecture, the source keys dropped (from the documented list); ``report`` is the
    whole ``conversion_report.json`` (source sha256, dropped, missing, unexpected keys...)."""

    out_dir: Path
    architecture: str
    num_tensors: int
    num_parameters: int
    dropped: tuple[str, ...]
    report: dict[str, Any]


def convert_checkpoint(
    src: str | Path,
    out_dir: str | Path,
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    trust_pickle: bool = False,
) -> ConversionReport:
    """Convert an official CropFormer / Mask2Former checkpoint (``.pth``, ``.pkl``, ``.npz``)
    into a model folder (model.safetensors, config.json, conversion_report.json) that
    :func:`~entityseg_data.api.segmenters.load_segmenter` loads. The architecture comes from
    exactly one of ``preset`` (a preset name) or ``config`` (an official detectron2 YAML).
    Every source key is consumed or dropped from a documented list and every model weight is
    filled, else a CheckpointError names them. ``trust_pickle``: allow arbitrary unpickling
    (only for files you trust). A wrong ``preset`` / ``config`` choice is a ConfigError raised
    before torch is imported."""
    from entityseg_data.errors import ConfigError

    if (preset is None) == (config is None):
        raise ConfigError("give exactly one of preset or config")
    if preset is not None:
        model_preset(preset)  # cheap check before torch is imported
    from entityseg_data.model.convert import convert_file

    report = convert_file(src, out_dir, preset=preset, config=config, trust_pickle=trust_pickle)
    return ConversionReport(
        out_dir=Path(out_dir),
        architecture=str(report["architecture"]),
        num_tensors=int(report["num_tensors"]),
        num_parameters=int(report["num_parameters"]),
        dropped=tuple(report["dropped"]),
        report=report,
    )
