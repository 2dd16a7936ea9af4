"""Backbones with the res2..res5 contract (see ``common.Backbone``).

``build_backbone(cfg)`` returns a module whose ``forward(x (N,3,H,W))`` gives
``{"res2","res3","res4","res5"}`` NCHW features at strides 4/8/16/32, with ``out_channels``,
``out_strides`` and ``size_divisibility`` attributes. Importing this package does not import
torch; :func:`build_backbone` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from entityseg_data.errors import ConfigError
from entityseg_data.model.backbones.config import (
    BACKBONE_PRESETS,
    HORNET_LARGE_GF,
    HORNET_ORACLE_TINY,
    OUT_FEATURES,
    OUT_STRIDES,
    RESNET50,
    SWIN_LARGE_W7,
    SWIN_ORACLE_TINY,
    SWIN_TINY,
    BackboneConfig,
    HorNetConfig,
    ResNetConfig,
    SwinConfig,
)

if TYPE_CHECKING:
    from entityseg_data.model.backbones.common import Backbone

__all__ = [
    "BACKBONE_PRESETS",
    "HORNET_LARGE_GF",
    "HORNET_ORACLE_TINY",
    "OUT_FEATURES",
    "OUT_STRIDES",
    "RESNET50",
    "SWIN_LARGE_W7",
    "SWIN_ORACLE_TINY",
    "SWIN_TINY",
    "BackboneConfig",
    "HorNetConfig",
    "ResNetConfig",
    "SwinConfig",
    "build_backbone",
]


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """Build the backbone described by ``cfg`` (random initialisation, ``train()`` mode)."""
    if isinstance(cfg, SwinConfig):
        from entityseg_data.model.backbones.swin import SwinTransformer

        return SwinTransformer(cfg)
    if isinstance(cfg, HorNetConfig):
        from entityseg_data.model.backbones.hornet import HorNet

        return HorNet(cfg)
    if isinstance(cfg, ResNetConfig):
        from entityseg_data.model.backbones.resnet import ResNet

        return ResNet(cfg)
    raise ConfigError(
        f"backbone: expected a SwinConfig, HorNetConfig or ResNetConfig, got {type(cfg).__name__}"
    )
