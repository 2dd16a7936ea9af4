"""Backbone configs from an official detectron2 config (the ``MODEL`` section of a merged YAML).

``MODEL.BACKBONE.NAME`` selects the reader: ``D2SwinTransformer`` reads ``MODEL.SWIN.*``,
``D2HorNet`` reads ``MODEL.HORNET.*`` (``GCONV`` strings such as
``"partial(gnconv, order=4, s=1/3, h=24, w=13, gflayer=GlobalLocalFilter)"`` are parsed, not
evaluated). Settings this implementation does not reproduce raise :class:`ConfigError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from entityseg_data.errors import ConfigError
from entityseg_data.model.backbones.config import (
    OUT_FEATURES,
    BackboneConfig,
    HorNetConfig,
    SwinConfig,
)

log = logging.getLogger(__name__)

#: official gnconv defaults (``gnconv(dim, order=5, gflayer=None, h=14, w=8, s=1.0)``)
_GNCONV_DEFAULTS = {"order": 5, "h": 14, "w": 8, "s": 1.0, "gflayer": None}
_GCONV_RE = re.compile(
    r"^\s*partial\(\s*gnconv\s*(?P<args>(,\s*[A-Za-z_]\w*\s*=\s*[^,()]+)*)\)\s*$"
)


def _number(text: str, where: str) -> float:
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{where}: cannot read the number {text.strip()!r}") from None


def parse_gconv(text: str, where: str = "MODEL.HORNET.GCONV") -> dict[str, Any]:
    """``"partial(gnconv, order=4, s=1/3, h=24, w=13, gflayer=GlobalLocalFilter)"`` ->
    ``{"order": 4, "s": 0.333.., "h": 24, "w": 13, "gflayer": "GlobalLocalFilter"}``
    (official defaults filled in)."""
    m = _GCONV_RE.match(text)
    if not m:
        raise ConfigError(f"{where}: expected 'partial(gnconv, key=value, ...)', got {text!r}")
    out = dict(_GNCONV_DEFAULTS)
    for part in filter(None, (p.strip() for p in m.group("args").split(","))):
        key, value = (s.strip() for s in part.split("=", 1))
        if key == "gflayer":
            if value not in ("GlobalLocalFilter", "None"):
                raise ConfigError(f"{where}: unsupported gflayer {value!r} in {text!r}")
            out[key] = None if value == "None" else value
        elif key in ("order", "h", "w"):
            out[key] = int(_number(value, where))
        elif key == "s":
            out[key] = _number(value, where)
        else:
            raise ConfigError(f"{where}: unknown gnconv argument {key!r} in {text!r}")
    return out


def _section(model: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    sec = model.get(name)
    if not isinstance(sec, Mapping):
        raise ConfigError(f"MODEL.{name}: missing from the official config")
    return sec


def _check_out_features(sec: Mapping[str, Any], where: str) -> None:
    feats = tuple(sec.get("OUT_FEATURES", OUT_FEATURES))
    if feats != OUT_FEATURES:
        raise ConfigError(f"{where}.OUT_FEATURES: expected {list(OUT_FEATURES)}, got {list(feats)}")


def _swin(model: Mapping[str, Any]) -> SwinConfig:
    sec = _section(model, "SWIN")
    _check_out_features(sec, "MODEL.SWIN")
    if sec.get("APE", False):
        raise ConfigError("MODEL.SWIN.APE: absolute position embedding is not supported")
    if not sec.get("PATCH_NORM", True):
        raise ConfigError("MODEL.SWIN.PATCH_NORM: only PATCH_NORM=True is supported")
    if sec.get("QK_SCALE") is not None:
        raise ConfigError("MODEL.SWIN.QK_SCALE: only the default head_dim**-0.5 is supported")
    for key in ("DROP_RATE", "ATTN_DROP_RATE"):
        if float(sec.get(key, 0.0)):
            log.warning("MODEL.SWIN.%s=%s is ignored (dropout is not implemented)", key, sec[key])
    try:
        return SwinConfig(
            embed_dim=int(sec.get("EMBED_DIM", 96)),
            depths=tuple(int(v) for v in sec.get("DEPTHS", (2, 2, 6, 2))),
            num_heads=tuple(int(v) for v in sec.get("NUM_HEADS", (3, 6, 12, 24))),
            window_size=int(sec.get("WINDOW_SIZE", 7)),
            patch_size=int(sec.get("PATCH_SIZE", 4)),
            mlp_ratio=float(sec.get("MLP_RATIO", 4.0)),
            qkv_bias=bool(sec.get("QKV_BIAS", True)),
            drop_path_rate=float(sec.get("DROP_PATH_RATE", 0.3)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"MODEL.SWIN: invalid value ({exc})") from None


def _hornet(model: Mapping[str, Any]) -> HorNetConfig:
    sec = _section(model, "HORNET")
    _check_out_features(sec, "MODEL.HORNET")
    gconv = sec.get("GCONV")
    if not isinstance(gconv, (list, tuple)) or len(gconv) != 4:
        raise ConfigError(f"MODEL.HORNET.GCONV: expected 4 gnconv strings, got {gconv!r}")
    parsed = [parse_gconv(str(g), f"MODEL.HORNET.GCONV[{i}]") for i, g in enumerate(gconv)]
    scales = {p["s"] for p in parsed}
    if len(scales) != 1:
        raise ConfigError(f"MODEL.HORNET.GCONV: different s per stage is not supported: {gconv}")
    try:
        return HorNetConfig(
            base_dim=int(sec.get("BASE_DIM", 192)),
            depths=tuple(int(v) for v in sec.get("DEPTHS", (2, 3, 18, 2))),
            gnconv_orders=tuple(p["order"] for p in parsed),
            gnconv_scale=scales.pop(),
            gf_sizes=tuple((p["h"], p["w"]) if p["gflayer"] else None for p in parsed),
            drop_path_rate=float(sec.get("DROP_PATH_RATE", 0.6)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"MODEL.HORNET: invalid value ({exc})") from None


def backbone_config_from_official(model: Mapping[str, Any]) -> BackboneConfig:
    """Backbone config from the ``MODEL`` mapping of an official (merged) detectron2 config."""
    name = (model.get("BACKBONE") or {}).get("NAME")
    if name == "D2SwinTransformer":
        return _swin(model)
    if name == "D2HorNet":
        return _hornet(model)
    raise ConfigError(
        f"MODEL.BACKBONE.NAME: {name!r} is not supported (expected D2SwinTransformer or D2HorNet)"
    )
