"""Named model configurations: the six released ones, the oracle tiny ones and a CPU training one.

Released (official yaml + code defaults; see docs/design.md):
``cropformer_hornet_3x``, ``mask2former_hornet_3x`` (HorNet-L GF, Q=200),
``cropformer_swin_large_3x``, ``mask2former_swin_large_3x`` (Swin-L window 7, Q=100),
``cropformer_swin_tiny_3x``, ``mask2former_swin_tiny_3x`` (Swin-T, Q=100).
``tiny_swin`` / ``tiny_hornet`` are the oracle fixtures' models (shared/oracle/*/overrides.yaml);
``tiny_cpu`` is a small ResNet-free Swin model for CPU training tests.
"""

from __future__ import annotations

from dataclasses import replace

from entityseg_data.errors import ConfigError
from entityseg_data.model.backbones.config import (
    HORNET_LARGE_GF,
    HORNET_ORACLE_TINY,
    SWIN_LARGE_W7,
    SWIN_ORACLE_TINY,
    SWIN_TINY,
    SwinConfig,
)
from entityseg_data.model.config import ModelConfig

_SWIN_T = ModelConfig(backbone=SWIN_TINY, num_queries=100)
_SWIN_L = ModelConfig(backbone=SWIN_LARGE_W7, num_queries=100)
_HORNET_L = ModelConfig(backbone=HORNET_LARGE_GF, num_queries=200)
#: the oracle fixtures' sizes (the backbone is set per preset)
_TINY = ModelConfig(
    num_queries=16,
    hidden_dim=64,
    nheads=4,
    dim_feedforward=128,
    dec_layers=4,
    conv_dim=64,
    mask_dim=64,
    enc_layers=2,
    assoc_nheads=4,
    assoc_dim_feedforward=128,
)

PRESETS: dict[str, ModelConfig] = {
    "cropformer_hornet_3x": _HORNET_L,
    "mask2former_hornet_3x": replace(_HORNET_L, batch_level=False),
    "cropformer_swin_large_3x": _SWIN_L,
    "mask2former_swin_large_3x": replace(_SWIN_L, batch_level=False),
    "cropformer_swin_tiny_3x": _SWIN_T,
    "mask2former_swin_tiny_3x": replace(_SWIN_T, batch_level=False),
    "tiny_swin": replace(_TINY, backbone=SWIN_ORACLE_TINY),
    "tiny_hornet": replace(_TINY, backbone=HORNET_ORACLE_TINY),
    "tiny_cpu": replace(
        _TINY,
        backbone=SwinConfig(
            embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.1
        ),
        enc_layers=1,
        enc_ffn_dim=128,
        dec_layers=4,
    ),
}

#: the released configurations (official checkpoints exist for these)
RELEASED = tuple(PRESETS)[:6]


def get_preset(name: str) -> ModelConfig:
    """The preset called ``name``; a ConfigError lists the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}"
        ) from None
