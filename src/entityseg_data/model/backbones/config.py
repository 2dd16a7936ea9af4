"""Frozen backbone configurations (no torch import here).

Each config has a ``name`` discriminator ("swin" / "hornet" / "resnet"); :func:`build_backbone`
(in ``backbones/__init__.py``) dispatches on it. The released CropFormer / Mask2Former checkpoints
use :data:`SWIN_TINY`, :data:`SWIN_LARGE_W7` and :data:`HORNET_LARGE_GF`; the oracle fixtures use
:data:`SWIN_ORACLE_TINY` and :data:`HORNET_ORACLE_TINY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from entityseg_data.errors import ConfigError

OUT_FEATURES = ("res2", "res3", "res4", "res5")
OUT_STRIDES = (4, 8, 16, 32)


def _check_four(name: str, values: tuple, what: str) -> None:
    if len(values) != 4:
        raise ConfigError(f"{name}.{what}: expected 4 values (one per stage), got {list(values)}")


@dataclass(frozen=True)
class SwinConfig:
    """detectron2-style Swin Transformer (``D2SwinTransformer`` of Mask2Former / CropFormer).

    Channels of res2..res5 are ``embed_dim * (1, 2, 4, 8)``.
    """

    name: Literal["swin"] = "swin"
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.3
    #: use ``F.scaled_dot_product_attention`` for window attention (max abs diff ~3e-6 from the
    #: official ops on the oracle); off by default: with 49-token windows it is not faster on CPU
    #: (docs/benchmarks.md), and the official ops reproduce the oracle bitwise
    fused_attention: bool = False
    #: recompute each block in the backward pass (official USE_CHECKPOINT; training memory only)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        _check_four("swin", self.depths, "depths")
        _check_four("swin", self.num_heads, "num_heads")
        for i, h in enumerate(self.num_heads):
            width = self.embed_dim * 2**i
            if width % h:
                raise ConfigError(
                    f"swin.num_heads[{i}]={h} does not divide the stage width {width}"
                )
        if self.window_size < 2:
            raise ConfigError(f"swin.window_size: must be >= 2, got {self.window_size}")

    @property
    def out_channels(self) -> dict[str, int]:
        return {f: self.embed_dim * 2**i for i, f in enumerate(OUT_FEATURES)}


@dataclass(frozen=True)
class HorNetConfig:
    """HorNet with gnconv blocks (``D2HorNet``; ``raoyongming/HorNet`` object-detection variant).

    Per stage ``i``: gnconv of order ``gnconv_orders[i]`` with scale ``gnconv_scale``; the spatial
    mixer is a depthwise ``dw_kernel`` conv when ``gf_sizes[i]`` is None, else a GlobalLocalFilter
    whose learnable spectrum has size ``gf_sizes[i] = (h, w)`` (interpolated at run time when the
    feature spectrum differs). Channels of res2..res5 are ``base_dim * (1, 2, 4, 8)``.
    """

    name: Literal["hornet"] = "hornet"
    base_dim: int = 192
    depths: tuple[int, ...] = (2, 3, 18, 2)
    gnconv_orders: tuple[int, ...] = (2, 3, 4, 5)
    gnconv_scale: float = 1.0 / 3.0
    gf_sizes: tuple[tuple[int, int] | None, ...] = (None, None, (24, 13), (12, 7))
    dw_kernel: int = 7
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.6
    layer_scale_init_value: float = 1e-6
    #: recompute each block in the backward pass (training memory only; same results)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        _check_four("hornet", self.depths, "depths")
        _check_four("hornet", self.gnconv_orders, "gnconv_orders")
        _check_four("hornet", self.gf_sizes, "gf_sizes")
        for i, order in enumerate(self.gnconv_orders):
            dim = self.base_dim * 2**i
            if order < 1 or dim % 2 ** (order - 1):
                raise ConfigError(
                    f"hornet.gnconv_orders[{i}]={order}: the stage width {dim} must be divisible "
                    f"by 2**(order-1)"
                )
            mixer_channels = sum(dim // 2**k for k in range(order))
            if self.gf_sizes[i] is not None and mixer_channels % 2:
                raise ConfigError(
                    f"hornet.gf_sizes[{i}]: the GlobalLocalFilter needs an even channel count, "
                    f"got {mixer_channels} (stage width {dim}, order {order})"
                )

    @property
    def out_channels(self) -> dict[str, int]:
        return {f: self.base_dim * 2**i for i, f in enumerate(OUT_FEATURES)}


@dataclass(frozen=True)
class ResNetConfig:
    """torchvision-style ResNet (bottleneck) for new training; res2..res5 = layer1..layer4."""

    name: Literal["resnet"] = "resnet"
    depth: Literal[50, 101] = 50
    #: "bn" (trainable BatchNorm) or "frozen_bn" (detectron2-style frozen statistics and affine)
    norm: Literal["bn", "frozen_bn"] = "frozen_bn"
    #: stages whose parameters are frozen: 0 = none, 1 = stem, 2 = stem + res2, ...
    freeze_at: int = 1
    #: optional local torchvision-format state_dict (``.pth``) to initialise from
    #: (loaded with ``weights_only=True``; ``fc.*`` keys are ignored)
    weights_path: str | None = None

    @property
    def out_channels(self) -> dict[str, int]:
        return {f: 256 * 2**i for i, f in enumerate(OUT_FEATURES)}


BackboneConfig = SwinConfig | HorNetConfig | ResNetConfig

SWIN_TINY = SwinConfig()
SWIN_LARGE_W7 = SwinConfig(
    embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=7
)
SWIN_ORACLE_TINY = SwinConfig(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
HORNET_LARGE_GF = HorNetConfig()
HORNET_ORACLE_TINY = HorNetConfig(base_dim=32, depths=(1, 1, 2, 1))
RESNET50 = ResNetConfig()

#: named backbone presets (used by the model presets)
BACKBONE_PRESETS: dict[str, BackboneConfig] = {
    "swin_tiny": SWIN_TINY,
    "swin_large_w7": SWIN_LARGE_W7,
    "swin_oracle_tiny": SWIN_ORACLE_TINY,
    "hornet_large_gf": HORNET_LARGE_GF,
    "hornet_oracle_tiny": HORNET_ORACLE_TINY,
    "resnet50": RESNET50,
}
