"""Training configuration: frozen dataclasses, loaded from YAML with ``--set key=value`` overrides.

Defaults are the official CropFormer recipe (REFERENCE.md section 5): AdamW lr 1e-4, weight decay
0.05, backbone lr x0.1, poly schedule (power 0.9), full-model gradient clipping at 0.01, AMP,
matching/loss weights 2/5/5 with 12544 points, no-object weight 0.1, image-level losses x0.5.
The paper's batch (16 images over 8 GPUs) and iteration counts live in ``configs/train/*.yaml``.
This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from entityseg_data.config import apply_overrides, from_dict, parse_override
from entityseg_data.config.machinery import read_yaml_mapping
from entityseg_data.errors import ConfigError
from entityseg_data.model.config import ModelConfig
from entityseg_data.model.presets import get_preset

DEFAULT_PRESET = "tiny_cpu"
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class DataConfig:
    """Where the training images come from and how samples are made.

    ``train_json``: an EntitySeg/COCO instance JSON (compressed RLE, polygons are converted) whose
    ``file_name`` values are relative to ``image_root``. Several pairs may be given with
    ``extra_train`` (``[[json, root], ...]``), like the official three per-split sets.
    ``workspace``: a dataset workspace folder instead: its approved stage-1 masks, images of the
    catalog split ``workspace_split`` (empty = every image).
    ``mapper``: ``entity_crop`` (CropFormer: full view + ``num_crops`` random corner crops, V = 2),
    ``lsj`` (Mask2Former baselines: large-scale jitter, V = 1) or ``full`` (multi-scale full view
    only, V = 1). ``val_json``/``val_image_root``: the periodic evaluation set (AP^e and boundary
    AP, predicted like ``predict`` at ``eval_min_size``/``eval_max_size``; ``eval_max_images``
    limits it).
    """

    train_json: str = ""
    image_root: str = ""
    extra_train: tuple[tuple[str, str], ...] = ()
    workspace: str = ""
    workspace_split: str = "train"
    val_json: str = ""
    val_image_root: str = ""
    mapper: Literal["entity_crop", "lsj", "full"] = "entity_crop"
    min_sizes: tuple[int, ...] = (640, 672, 704, 736, 768, 800)
    max_size: int = 1333
    crop_side_ratio: float = 0.7
    crop_stride_ratio: float = 0.6
    num_crops: int = 1
    lsj_size: int = 1024
    lsj_min_scale: float = 0.1
    lsj_max_scale: float = 2.0
    lsj_pad_value: int = 128
    filter_empty: bool = True
    max_images: int = 0
    eval_min_size: int = 800
    eval_max_size: int = 1333
    eval_max_images: int = 0
    eval_boundary: bool = True
    num_workers: int = 2
    size_divisibility: int = 32


@dataclass(frozen=True)
class LossConfig:
    """Matching and loss settings (REFERENCE.md sections 5.2 and 5.3).

    ``keep_invalid_3d`` replicates the official behaviour (REFERENCE 8.5): batch-level targets keep
    entities that are invalid in every view (all-zero masks). ``image_level_weight`` is the 0.5
    applied to the 2D losses of CropFormer; Mask2Former (no batch-level output) uses 1.0 for its
    only (single-view) losses regardless of this value.
    """

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    image_level_weight: float = 0.5
    deep_supervision: bool = True
    keep_invalid_3d: bool = True


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + poly schedule + full-model clipping (REFERENCE.md section 5.4).

    ``decay_policy``: ``official`` exempts from weight decay only parameters of torch norm
    modules, ``nn.Embedding`` and Swin's ``relative_position_bias_table`` /
    ``absolute_pos_embed`` (so HorNet's custom LayerNorm, layer-scale gammas,
    ``complex_weight`` and the pixel decoder's bare
    ``level_embed`` Parameter DO get decay, REFERENCE 8.14); ``extended`` also exempts those (every
    parameter with ndim <= 1 plus ``level_embed``/``complex_weight``/``gamma``). Default: official,
    for reproducing the paper.
    """

    lr: float = 1e-4
    weight_decay: float = 0.05
    weight_decay_norm: float = 0.0
    weight_decay_embed: float = 0.0
    backbone_multiplier: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_norm: float = 0.01
    poly_power: float = 0.9
    warmup_iters: int = 0
    decay_policy: Literal["official", "extended"] = "official"


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    ``ims_per_batch`` is the TOTAL number of images per optimizer step over all processes and
    accumulation micro-steps (like detectron2's IMS_PER_BATCH); each process runs micro-batches of
    ``ims_per_batch // (world_size * grad_accum)`` images. ``model`` is the architecture (a
    ``ModelConfig`` section); :func:`load_train_config` starts it from the preset named by
    ``preset`` (``entityseg_data.model.presets.PRESETS``; ``model: NAME`` in a YAML file or
    ``--set model=NAME`` name it too) and applies ``model.*`` keys on top, e.g.
    ``model.num_queries=8`` or ``model.backbone.drop_path_rate=0``. ``init`` is an official or
    converted checkpoint to start from.
    ``amp``: ``auto`` = bf16 on CPUs with native bf16 support and fp16 (+ GradScaler) on CUDA,
    else fp32 (``fp32`` = no autocast).
    """

    preset: str = DEFAULT_PRESET
    model: ModelConfig = field(default_factory=lambda: get_preset(DEFAULT_PRESET))
    init: str = ""
    out_dir: str = "runs/train"
    seed: int = 0
    max_iter: int = 1000
    ims_per_batch: int = 2
    grad_accum: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    deterministic: bool = False
    checkpoint_period: int = 5000
    keep_checkpoints: int = 2
    eval_period: int = 0
    log_period: int = 20
    tensorboard: bool = True
    threads: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def micro_batch(self, world_size: int) -> int:
        """Images per process per micro-step; raises ConfigError when it does not divide."""
        denom = world_size * self.grad_accum
        if self.ims_per_batch % denom or self.ims_per_batch < denom:
            raise ConfigError(
                f"ims_per_batch={self.ims_per_batch} must be a positive multiple of "
                f"world_size x grad_accum = {world_size} x {self.grad_accum}"
            )
        return self.ims_per_batch // denom


def load_train_config(
    path: str | os.PathLike[str] | None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> TrainConfig:
    """Read a YAML file (missing keys keep their defaults) and apply ``key=value`` overrides.

    The architecture: ``preset`` (or ``model: NAME`` / ``model=NAME``) picks the starting
    ``ModelConfig``, then the file's ``model:`` mapping and ``model.*`` overrides change its
    fields. The older ``model_overrides: ["k=v", ...]`` list is read as ``model.k=v`` keys.
    Relative data paths are relative to the current working directory.
    """
    data: dict[str, Any] = dict(read_yaml_mapping(path)) if path is not None else {}
    items = list(overrides.items()) if isinstance(overrides, Mapping) else None
    if items is None:
        items = [parse_override(text) for text in overrides]
    where = f"{path}: " if path is not None else ""

    preset = data.pop("preset", None)
    section: Any = data.pop("model", None)
    if isinstance(section, str):
        preset, section = section, None
    model_keys = _flatten(section or {}, "model")
    model_keys += [(f"model.{k}", v) for k, v in _legacy(data.pop("model_overrides", None))]
    rest = []
    for key, value in items:
        if key in ("preset", "model") and isinstance(value, str):
            preset = value
        elif key == "model" and isinstance(value, Mapping):
            model_keys += _flatten(value, "model")
        elif key == "model_overrides":
            model_keys += [(f"model.{k}", v) for k, v in _legacy(value)]
        elif key.startswith("model."):
            model_keys.append((key, value))
        else:
            rest.append((key, value))
    name = str(preset or DEFAULT_PRESET)
    try:
        cfg = from_dict(TrainConfig, {**data, "preset": name, "model": {}})
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    cfg = dataclasses.replace(cfg, model=get_preset(name))
    for key, value in model_keys:
        cfg = _set_model_key(cfg, key, value)
    return apply_overrides(cfg, dict(rest))


def _flatten(section: Any, prefix: str) -> list[tuple[str, Any]]:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{prefix}: expected a preset name or a mapping, got {section!r}")
    out: list[tuple[str, Any]] = []
    for k, v in section.items():
        if isinstance(v, Mapping):
            out += _flatten(v, f"{prefix}.{k}")
        else:
            out.append((f"{prefix}.{k}", v))
    return out


def _legacy(value: Any) -> list[tuple[str, Any]]:
    """``model_overrides`` (a list of ``k=v`` strings, or its YAML text) as (key, value)."""
    if value is None:
        return []
    if isinstance(value, str):
        import yaml

        value = yaml.safe_load(value) or []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"model_overrides: expected a list of key=value, got {value!r}")
    return [parse_override(str(v)) for v in value]


def _set_model_key(cfg: TrainConfig, key: str, value: Any) -> TrainConfig:
    """``model.a.b=value``; the backbone is one of several config types (a union), so its keys
    are set on the backbone the preset chose."""
    if key.startswith("model.backbone."):
        sub = key[len("model.backbone.") :]
        backbone = apply_overrides(cfg.model.backbone, {sub: value})
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone))
    return apply_overrides(cfg, {key: value})
