"""Backbone configs read from official detectron2 configs (the oracle's merged cfg.yaml)."""

from __future__ import annotations

import pytest
import yaml

from entityseg_data.errors import ConfigError
from entityseg_data.model.backbones import HORNET_ORACLE_TINY, SWIN_ORACLE_TINY
from entityseg_data.model.backbones.official import backbone_config_from_official, parse_gconv


def _model_section(path):
    return yaml.safe_load(path.read_text())["MODEL"]


def test_oracle_configs_map_to_the_oracle_presets(oracle_dir):
    assert backbone_config_from_official(_model_section(oracle_dir / "tiny" / "cfg.yaml")) == (
        SWIN_ORACLE_TINY
    )
    hornet = backbone_config_from_official(_model_section(oracle_dir / "tiny_hornet" / "cfg.yaml"))
    assert hornet == HORNET_ORACLE_TINY


def test_parse_gconv_fills_official_defaults():
    assert parse_gconv("partial(gnconv, order=2, s=1/3)") == {
        "order": 2,
        "h": 14,
        "w": 8,
        "s": pytest.approx(1 / 3),
        "gflayer": None,
    }
    got = parse_gconv("partial(gnconv, order=5, s=1/3, h=12, w=7, gflayer=GlobalLocalFilter)")
    assert (got["order"], got["h"], got["w"], got["gflayer"]) == (5, 12, 7, "GlobalLocalFilter")
    assert parse_gconv("partial(gnconv)")["s"] == 1.0
    for bad in ("gnconv(order=2)", "partial(gnconv, order=2, foo=1)", "partial(gnconv, s=a/b)"):
        with pytest.raises(ConfigError, match="GCONV"):
            parse_gconv(bad)
    with pytest.raises(ConfigError, match="unsupported gflayer"):
        parse_gconv("partial(gnconv, gflayer=os.system)")


def test_unsupported_official_settings_are_clear_errors(oracle_dir):
    model = _model_section(oracle_dir / "tiny" / "cfg.yaml")
    with pytest.raises(ConfigError, match="APE"):
        backbone_config_from_official({**model, "SWIN": {**model["SWIN"], "APE": True}})
    with pytest.raises(ConfigError, match="QK_SCALE"):
        backbone_config_from_official({**model, "SWIN": {**model["SWIN"], "QK_SCALE": 0.1}})
    with pytest.raises(ConfigError, match="num_heads"):
        backbone_config_from_official(
            {**model, "SWIN": {**model["SWIN"], "NUM_HEADS": [3, 2, 4, 8]}}
        )
    with pytest.raises(ConfigError, match="BACKBONE.NAME"):
        backbone_config_from_official({**model, "BACKBONE": {"NAME": "build_resnet_backbone"}})
    hornet = _model_section(oracle_dir / "tiny_hornet" / "cfg.yaml")
    gconv = list(hornet["HORNET"]["GCONV"])
    gconv[0] = "partial(gnconv, order=2, s=1/2)"
    with pytest.raises(ConfigError, match="different s"):
        backbone_config_from_official({**hornet, "HORNET": {**hornet["HORNET"], "GCONV": gconv}})
