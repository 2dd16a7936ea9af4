"""Build a :class:`ModelConfig` from an official detectron2 / CropFormer YAML.

Accepts a merged dump (``cfg.dump()``, e.g. shared/oracle/tiny/cfg.yaml) or a released config
whose ``_BASE_`` chain is resolved relative to each file (child values override the base).
Only model-relevant keys are read; everything else (solver, datasets, ...) is ignored. Keys absent
from the chain take the official code defaults (``add_maskformer2_config`` / CropFormer
``config.py``), which are listed in :data:`OFFICIAL_DEFAULTS`.

Test-time settings carried into ``ModelConfig`` (what the official entity inference reads):
``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` (view resize), ``ENTITY.CROP_AREA_RATIO`` /
``CROP_STRIDE_RATIO`` (crop views) and ``TEST.DETECTIONS_PER_IMAGE`` (Mask2Former's top-k queries,
``inference.mask2former_topk``). ``MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD`` /
``OVERLAP_THRESHOLD`` are read only by the official panoptic inference and do not affect entity
inference (REFERENCE.md 6.1); ``ENTITY.ENABLE = False`` (the overlapping, class-aware
``instance_inference``; also the official default when no YAML of the chain sets it) is refused
for Mask2Former because predictions here are non-overlapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from entityseg_data.errors import ConfigError
from entityseg_data.model.backbones.config import (
    BackboneConfig,
    HorNetConfig,
    ResNetConfig,
    SwinConfig,
)
from entityseg_data.model.config import InferenceConfig, ModelConfig, ViewConfig

#: official defaults of the keys we read, used when the YAML chain does not set them
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": 100,
    "MODEL.MASK_FORMER.HIDDEN_DIM": 256,
    "MODEL.MASK_FORMER.NHEADS": 8,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD": 2048,
    "MODEL.MASK_FORMER.DEC_LAYERS": 6,
    "MODEL.MASK_FORMER.DROPOUT": 0.1,
    "MODEL.MASK_FORMER.SIZE_DIVISIBILITY": 32,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 256,
    "MODEL.SEM_SEG_HEAD.MASK_DIM": 256,
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 1,
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS": 0,
    "ENTITY.FUSE_NUM_LAYERS": 1,
    "ENTITY.FUSE_ENC_NHEADS": 8,
    "ENTITY.FUSE_ENC_DIM_FEEDFORWARD": 2048,
    "ENTITY.CROP_AREA_RATIO": 0.7,
    "ENTITY.CROP_STRIDE_RATIO": 0.6,
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "TEST.DETECTIONS_PER_IMAGE": 100,
    "ENTITY.ENABLE": False,
    "MODEL.RESNETS.DEPTH": 50,
}

_SWIN_KEYS = {
    "EMBED_DIM": "embed_dim",
    "DEPTHS": "depths",
    "NUM_HEADS": "num_heads",
    "WINDOW_SIZE": "window_size",
    "PATCH_SIZE": "patch_size",
    "MLP_RATIO": "mlp_ratio",
    "QKV_BIAS": "qkv_bias",
    "DROP_PATH_RATE": "drop_path_rate",
}
_HORNET_KEYS = {"BASE_DIM": "base_dim", "DEPTHS": "depths", "DROP_PATH_RATE": "drop_path_rate"}


def _deep_merge(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_yaml_chain(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML at ``path`` merged over its ``_BASE_`` chain (bases resolved relative to the
    file that names them)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: _BASE_ cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level of the YAML")
    base = data.get("_BASE_")
    merged: dict[str, Any] = {}
    if base:
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{path}: _BASE_ file {base_path} not found")
        merged = load_yaml_chain(base_path, (*_seen, path))
    return _deep_merge(merged, {k: v for k, v in data.items() if k != "_BASE_"})


def _get(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return OFFICIAL_DEFAULTS.get(dotted, default)
        node = node[part]
    return node


_RESNET_DEPTHS: dict[int, Literal[50, 101]] = {50: 50, 101: 101}


def _rgb(values: Any) -> tuple[float, float, float]:
    """Three floats (RGB) from a YAML list (ModelConfig's error for another length)."""
    v = tuple(float(x) for x in values)
    if len(v) != 3:
        raise ConfigError("model.pixel_mean / pixel_std: need 3 values (RGB)")
    return (v[0], v[1], v[2])


def _parse_gconv(spec: str, where: str) -> tuple[int, tuple[int, int] | None, float]:
    """``"partial(gnconv, order=4, s=1/3, h=24, w=13, gflayer=GlobalLocalFilter)"`` ->
    (order, (h, w) or None, s)."""
    args = dict(re.findall(r"(\w+)\s*=\s*([\w./]+)", spec))
    try:
        order = int(args["order"])
        num, _, den = args.get("s", "1").partition("/")
        scale = float(num) / float(den or 1)
    except (KeyError, ValueError):
        raise ConfigError(f"{where}: cannot parse gnconv spec {spec!r}") from None
    gf = None
    if args.get("gflayer") == "GlobalLocalFilter":
        gf = (int(args.get("h", 14)), int(args.get("w", 8)))
    return order, gf, scale


def _backbone(cfg: Mapping[str, Any], source: str) -> BackboneConfig:
    name = _get(cfg, "MODEL.BACKBONE.NAME")
    if name == "D2SwinTransformer":
        swin = _get(cfg, "MODEL.SWIN", {}) or {}
        kw = {ours: swin[k] for k, ours in _SWIN_KEYS.items() if k in swin}
        for k in ("depths", "num_heads"):
            if k in kw:
                kw[k] = tuple(int(x) for x in kw[k])
        if swin.get("APE"):
            raise ConfigError(f"{source}: MODEL.SWIN.APE=True is not supported")
        return SwinConfig(**kw)
    if name == "D2HorNet":
        hor = _get(cfg, "MODEL.HORNET", {}) or {}
        kw = {ours: hor[k] for k, ours in _HORNET_KEYS.items() if k in hor}
        if "depths" in kw:
            kw["depths"] = tuple(int(x) for x in kw["depths"])
        if "GCONV" in hor:
            parsed = [_parse_gconv(s, f"{source}: MODEL.HORNET.GCONV") for s in hor["GCONV"]]
            kw["gnconv_orders"] = tuple(p[0] for p in parsed)
            kw["gf_sizes"] = tuple(p[1] for p in parsed)
            scales = {p[2] for p in parsed}
            if len(scales) != 1:
                raise ConfigError(f"{source}: MODEL.HORNET.GCONV mixes gnconv scales {scales}")
            kw["gnconv_scale"] = scales.pop()
        return HorNetConfig(**kw)
    if name in ("build_resnet_backbone", "D2ResNet"):
        depth = int(_get(cfg, "MODEL.RESNETS.DEPTH"))
        if depth not in _RESNET_DEPTHS:
            raise ConfigError(f"{source}: MODEL.RESNETS.DEPTH must be 50 or 101, got {depth}")
        return ResNetConfig(depth=_RESNET_DEPTHS[depth])
    raise ConfigError(f"{source}: unsupported MODEL.BACKBONE.NAME {name!r}")


def config_from_mapping(cfg: Mapping[str, Any], *, source: str = "<config>") -> ModelConfig:
    """Map a (merged) official config mapping onto a ModelConfig."""
    arch = _get(cfg, "MODEL.META_ARCHITECTURE")
    if arch not in ("CropFormer", "MaskFormer"):
        raise ConfigError(
            f"{source}: MODEL.META_ARCHITECTURE {arch!r} is neither CropFormer nor MaskFormer"
        )
    pix = _get(cfg, "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MSDeformAttnPixelDecoder")
    if pix != "MSDeformAttnPixelDecoder":
        raise ConfigError(f"{source}: unsupported pixel decoder {pix!r}")
    if _get(cfg, "MODEL.MASK_FORMER.PRE_NORM", False):
        raise ConfigError(f"{source}: MODEL.MASK_FORMER.PRE_NORM=True is not supported")
    if arch == "MaskFormer" and not _get(cfg, "ENTITY.ENABLE"):
        raise ConfigError(
            f"{source}: ENTITY.ENABLE=False selects the official overlapping, class-aware "
            f"instance inference; only entity (non-overlapping) inference is supported"
        )
    topk = int(_get(cfg, "TEST.DETECTIONS_PER_IMAGE"))
    if topk < 1:
        raise ConfigError(f"{source}: TEST.DETECTIONS_PER_IMAGE must be >= 1, got {topk}")
    hidden = int(_get(cfg, "MODEL.MASK_FORMER.HIDDEN_DIM"))
    fuse_hidden = _get(cfg, "ENTITY.FUSE_ENC_HIDDIEN_DIM", hidden)
    if arch == "CropFormer" and int(fuse_hidden) != hidden:
        raise ConfigError(
            f"{source}: ENTITY.FUSE_ENC_HIDDIEN_DIM ({fuse_hidden}) must equal "
            f"MODEL.MASK_FORMER.HIDDEN_DIM ({hidden})"
        )
    return ModelConfig(
        backbone=_backbone(cfg, source),
        num_queries=int(_get(cfg, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES")),
        hidden_dim=hidden,
        nheads=int(_get(cfg, "MODEL.MASK_FORMER.NHEADS")),
        dim_feedforward=int(_get(cfg, "MODEL.MASK_FORMER.DIM_FEEDFORWARD")),
        dec_layers=int(_get(cfg, "MODEL.MASK_FORMER.DEC_LAYERS")),
        conv_dim=int(_get(cfg, "MODEL.SEM_SEG_HEAD.CONVS_DIM")),
        mask_dim=int(_get(cfg, "MODEL.SEM_SEG_HEAD.MASK_DIM")),
        enc_layers=int(_get(cfg, "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS")),
        num_classes=int(_get(cfg, "MODEL.SEM_SEG_HEAD.NUM_CLASSES")),
        batch_level=arch == "CropFormer",
        assoc_layers=int(_get(cfg, "ENTITY.FUSE_NUM_LAYERS")),
        assoc_nheads=int(_get(cfg, "ENTITY.FUSE_ENC_NHEADS")),
        assoc_dim_feedforward=int(_get(cfg, "ENTITY.FUSE_ENC_DIM_FEEDFORWARD")),
        dropout=float(_get(cfg, "MODEL.MASK_FORMER.DROPOUT")),
        size_divisibility=int(_get(cfg, "MODEL.MASK_FORMER.SIZE_DIVISIBILITY")),
        pixel_mean=_rgb(_get(cfg, "MODEL.PIXEL_MEAN")),
        pixel_std=_rgb(_get(cfg, "MODEL.PIXEL_STD")),
        views=ViewConfig(
            crop_side_ratio=float(_get(cfg, "ENTITY.CROP_AREA_RATIO")),
            crop_stride_ratio=float(_get(cfg, "ENTITY.CROP_STRIDE_RATIO")),
            min_size=_min_size(_get(cfg, "INPUT.MIN_SIZE_TEST")),
            max_size=int(_get(cfg, "INPUT.MAX_SIZE_TEST")),
        ),
        inference=InferenceConfig(mask2former_topk=topk),
    )


def _min_size(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        value = value[-1]
    return int(value)


def config_from_yaml(path: str | Path) -> ModelConfig:
    """ModelConfig of an official YAML (merged dump or released file with ``_BASE_``)."""
    try:
        return config_from_mapping(load_yaml_chain(path), source=str(path))
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
