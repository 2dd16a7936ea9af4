"""Frozen configuration of the CropFormer / Mask2Former model, its views and its inference.

Names follow the official detectron2 keys where one exists (noted per field) so a config can be
read from an official YAML (:mod:`entityseg_data.model.yaml_config`). No torch import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from entityseg_data.errors import ConfigError
from entityseg_data.model.backbones.config import (
    BackboneConfig,
    HorNetConfig,
    ResNetConfig,
    SwinConfig,
)

__all__ = [
    "BackboneConfig",
    "HorNetConfig",
    "InferenceConfig",
    "ModelConfig",
    "ResNetConfig",
    "SwinConfig",
    "ViewConfig",
]


@dataclass(frozen=True)
class ViewConfig:
    """Test-time views: the full image plus the corner crops (official ENTITY.CROP_* and
    INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST). ``crop_side_ratio`` is a side ratio (0.7 -> 49 % area)."""

    crop_side_ratio: float = 0.7
    crop_stride_ratio: float = 0.6
    min_size: int = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        if not 0.0 < self.crop_side_ratio <= 1.0:
            raise ConfigError(
                f"views.crop_side_ratio: must be in (0, 1], got {self.crop_side_ratio}"
            )
        if not 0.0 < self.crop_stride_ratio <= 1.0:
            raise ConfigError(
                f"views.crop_stride_ratio: must be in (0, 1], got {self.crop_stride_ratio}"
            )
        if self.min_size <= 0 or self.max_size < self.min_size:
            raise ConfigError(
                f"views: need 0 < min_size <= max_size, got {self.min_size} / {self.max_size}"
            )


ScoreMode = Literal["calibrated", "reference"]
Decoder = Literal["batch_full_crops", "crops_only", "full_only", "image_full_only"]
#: the allowed values, from the types above (one definition: the CLI's choices come from here)
SCORE_MODES: tuple[str, ...] = get_args(ScoreMode)
DECODERS: tuple[str, ...] = get_args(Decoder)


@dataclass(frozen=True)
class InferenceConfig:
    """How model outputs become entities (``model/inference``; never inside the module): the
    one post-processing config of ``predict``, :class:`EntitySegmenter
    <entityseg_data.model.inference.predictor.EntitySegmenter>` and a model's ``config.json``.

    score_mode: "reference" = the official double-sigmoid score, "calibrated" = class score times
    the mean mask probability. decoder: which predictions are fused ("batch_full_crops" = the
    official batch-level masks of the full view and the crops). score_thresh / min_area (pixels)
    / max_entities (None = all): which entities are kept. mask2former_topk: Mask2Former keeps the
    top-k queries by entity probability before painting (official ``TEST.DETECTIONS_PER_IMAGE``;
    the released configs keep 100, i.e. all of Q = 100 or the best 100 of Q = 200); CropFormer
    keeps every query. tile / tile_budget_mb: the fusion works on output tiles of ``tile`` pixels,
    the upsampled logits of one tile held within ``tile_budget_mb`` MiB per fusion thread (memory
    and speed only: the entities do not depend on them beyond float rounding, ~1 ulp of a
    score; the number of threads changes nothing). The defaults (256 px, 32 MiB) were measured on
    CropFormer HorNet-L at 12 MP against 512 px / 256 MiB: 15 % less post-processing time, and
    the tuned allocator's heap no longer grows during the fusion (docs/benchmarks.md, issue 17).
    """

    score_mode: ScoreMode = "calibrated"
    decoder: Decoder = "batch_full_crops"
    score_thresh: float = 0.0
    min_area: int = 0
    max_entities: int | None = 200
    mask2former_topk: int = 100
    tile: int = 256
    tile_budget_mb: float = 32.0

    def __post_init__(self) -> None:
        if self.score_mode not in SCORE_MODES:
            raise ConfigError(
                f"inference.score_mode: must be one of {list(SCORE_MODES)}, got {self.score_mode!r}"
            )
        if self.decoder not in DECODERS:
            raise ConfigError(
                f"inference.decoder: must be one of {list(DECODERS)}, got {self.decoder!r}"
            )
        if self.mask2former_topk < 1:
            raise ConfigError(
                f"inference.mask2former_topk: must be >= 1, got {self.mask2former_topk}"
            )
        if not 0.0 <= self.score_thresh <= 1.0:
            raise ConfigError(f"inference.score_thresh: must be in [0, 1], got {self.score_thresh}")
        if self.min_area < 0:
            raise ConfigError(f"inference.min_area: must be >= 0, got {self.min_area}")
        if self.max_entities is not None and self.max_entities < 0:
            raise ConfigError(
                f"inference.max_entities: must be >= 0 or None (all), got {self.max_entities}"
            )
        if self.tile < 1 or self.tile_budget_mb <= 0:
            raise ConfigError("inference: tile must be >= 1 and tile_budget_mb > 0")

    @classmethod
    def from_config(cls, cfg: Any, **changes: Any) -> InferenceConfig:
        """The settings of any object with matching attribute names, then ``changes``
        (None values ignored)."""
        kwargs = {f.name: getattr(cfg, f.name) for f in fields(cls) if hasattr(cfg, f.name)}
        kwargs.update({k: v for k, v in changes.items() if v is not None})
        return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of CropFormer (``batch_level=True``) or Mask2Former (``batch_level=False``).

    Official keys: num_queries = MASK_FORMER.NUM_OBJECT_QUERIES, hidden_dim = HIDDEN_DIM,
    nheads = NHEADS (decoder and deformable encoder), dim_feedforward = DIM_FEEDFORWARD,
    dec_layers = DEC_LAYERS (1 + number of decoder layers), conv_dim / mask_dim =
    SEM_SEG_HEAD.CONVS_DIM / MASK_DIM, enc_layers = TRANSFORMER_ENC_LAYERS, enc_ffn_dim = the
    deformable encoder FFN (hard-coded 1024 officially), assoc_* = ENTITY.FUSE_NUM_LAYERS /
    FUSE_ENC_NHEADS / FUSE_ENC_DIM_FEEDFORWARD. pixel_mean / pixel_std are RGB, 0..255 units.
    """

    backbone: BackboneConfig = field(default_factory=SwinConfig)
    num_queries: int = 100
    hidden_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 10
    conv_dim: int = 256
    mask_dim: int = 256
    enc_layers: int = 6
    enc_ffn_dim: int = 1024
    enc_n_points: int = 4
    num_classes: int = 1
    batch_level: bool = True
    assoc_layers: int = 1
    assoc_nheads: int = 8
    assoc_dim_feedforward: int = 2048
    dropout: float = 0.0
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    views: ViewConfig = field(default_factory=ViewConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        if self.hidden_dim % self.nheads:
            raise ConfigError(
                f"model.nheads={self.nheads} does not divide hidden_dim={self.hidden_dim}"
            )
        if self.conv_dim % self.nheads:
            raise ConfigError(
                f"model.nheads={self.nheads} does not divide conv_dim={self.conv_dim}"
            )
        if self.conv_dim % 32:
            raise ConfigError(
                f"model.conv_dim={self.conv_dim} must be a multiple of 32 (GroupNorm(32))"
            )
        if self.hidden_dim % self.assoc_nheads:
            raise ConfigError(
                f"model.assoc_nheads={self.assoc_nheads} does not divide "
                f"hidden_dim={self.hidden_dim}"
            )
        if self.dec_layers < 1 or self.num_queries < 1 or self.enc_layers < 0:
            raise ConfigError("model: need dec_layers >= 1, num_queries >= 1, enc_layers >= 0")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise ConfigError("model.pixel_mean / pixel_std: need 3 values (RGB)")

    @property
    def architecture(self) -> str:
        """ "cropformer" or "mask2former"."""
        return "cropformer" if self.batch_level else "mask2former"
