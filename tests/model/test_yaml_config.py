"""Official detectron2 YAMLs -> ModelConfig."""

from __future__ import annotations

import dataclasses

import pytest

from entityseg_data.errors import ConfigError
from entityseg_data.model.presets import PRESETS
from entityseg_data.model.yaml_config import config_from_yaml


@pytest.mark.parametrize(("sub", "preset"), [("tiny", "tiny_swin"), ("tiny_hornet", "tiny_hornet")])
def test_merged_dump_matches_preset(oracle_dir, sub, preset):
    assert config_from_yaml(oracle_dir / sub / "cfg.yaml") == PRESETS[preset]
    small = config_from_yaml(oracle_dir / sub / "cfg_test320.yaml")
    assert (small.views.min_size, small.views.max_size) == (320, 512)
    assert dataclasses.replace(small, views=PRESETS[preset].views) == PRESETS[preset]


BASE = """\
ENTITY:
  ENABLE: True
MODEL:
  BACKBONE:
    NAME: "build_resnet_backbone"
  PIXEL_MEAN: [123.675, 116.280, 103.530]
  PIXEL_STD: [58.395, 57.120, 57.375]
  RESNETS:
    DEPTH: 50
SOLVER:
  MAX_ITER: 34375
INPUT:
  MIN_SIZE_TRAIN: (640, 672, 704, 736, 768, 800)
"""

HEAD = """\
  SEM_SEG_HEAD:
    NAME: "MaskFormerHead"
    NUM_CLASSES: 1
    CONVS_DIM: 256
    MASK_DIM: 256
    NORM: "GN"
    PIXEL_DECODER_NAME: "MSDeformAttnPixelDecoder"
    TRANSFORMER_ENC_LAYERS: 6
  MASK_FORMER:
    TRANSFORMER_DECODER_NAME: "{decoder}"
    HIDDEN_DIM: 256
    NUM_OBJECT_QUERIES: {queries}
    NHEADS: 8
    DROPOUT: 0.0
    DIM_FEEDFORWARD: 2048
    PRE_NORM: False
    DEC_LAYERS: 10  # 9 decoder layers
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_base_chain_released_style(tmp_path):
    _write(tmp_path, "configs/Base-Mask2Former.yaml", BASE)
    hornet = _write(
        tmp_path,
        "configs/entity/cropformer_hornet_3x.yaml",
        '_BASE_: ../Base-Mask2Former.yaml\nMODEL:\n  BACKBONE:\n    NAME: "D2HorNet"\n'
        "  SWIN:\n    EMBED_DIM: 192\n"  # irrelevant block, as in the released HorNet yaml
        '  META_ARCHITECTURE: "CropFormer"\n'
        + HEAD.format(decoder="CropSharedMultiScaleMaskedTransformerDecoder", queries=200),
    )
    assert config_from_yaml(hornet) == PRESETS["cropformer_hornet_3x"]
    swin = _write(
        tmp_path,
        "configs/entity/mask2former_swin_tiny_3x.yaml",
        '_BASE_: ../Base-Mask2Former.yaml\nMODEL:\n  BACKBONE:\n    NAME: "D2SwinTransformer"\n'
        "  SWIN:\n    EMBED_DIM: 96\n    DEPTHS: [2, 2, 6, 2]\n    NUM_HEADS: [3, 6, 12, 24]\n"
        "    WINDOW_SIZE: 7\n    DROP_PATH_RATE: 0.3\n"
        '  META_ARCHITECTURE: "MaskFormer"\n'
        + HEAD.format(decoder="MultiScaleMaskedTransformerDecoder", queries=100),
    )
    assert config_from_yaml(swin) == PRESETS["mask2former_swin_tiny_3x"]
    large = _write(
        tmp_path,
        "configs/entity/large.yaml",
        "_BASE_: mask2former_swin_tiny_3x.yaml\nMODEL:\n  META_ARCHITECTURE: CropFormer\n"
        "  SWIN:\n    EMBED_DIM: 192\n    DEPTHS: [2, 2, 18, 2]\n    NUM_HEADS: [6, 12, 24, 48]\n",
    )
    assert config_from_yaml(large) == PRESETS["cropformer_swin_large_3x"]


def test_yaml_errors(tmp_path):
    missing = _write(tmp_path, "a.yaml", "_BASE_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        config_from_yaml(missing)
    rcnn = _write(tmp_path, "b.yaml", "MODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\n")
    with pytest.raises(ConfigError, match="GeneralizedRCNN"):
        config_from_yaml(rcnn)
    broken = _write(tmp_path, "c.yaml", "MODEL: [unclosed\n")
    with pytest.raises(ConfigError, match="c.yaml"):
        config_from_yaml(broken)


def test_detections_per_image_and_entity_switch(tmp_path):
    """TEST.DETECTIONS_PER_IMAGE becomes inference.mask2former_topk (issue 16); Mask2Former
    without ENTITY.ENABLE (official default False: overlapping class-aware inference) is refused."""
    _write(tmp_path, "configs/Base-Mask2Former.yaml", BASE)
    body = (
        '_BASE_: ../Base-Mask2Former.yaml\nMODEL:\n  META_ARCHITECTURE: "MaskFormer"\n'
        + HEAD.format(decoder="MultiScaleMaskedTransformerDecoder", queries=200)
    )
    default = _write(tmp_path, "configs/entity/m2f.yaml", body)
    assert config_from_yaml(default).inference.mask2former_topk == 100
    d = tmp_path / "configs" / "entity"
    seven = _write(d, "m2f7.yaml", body + "TEST:\n  DETECTIONS_PER_IMAGE: 7\n")
    assert config_from_yaml(seven).inference.mask2former_topk == 7
    off = _write(d, "off.yaml", "_BASE_: m2f.yaml\nENTITY:\n  ENABLE: False\n")
    with pytest.raises(ConfigError, match="ENTITY.ENABLE"):
        config_from_yaml(off)
    bare = _write(tmp_path, "bare.yaml", "MODEL:\n  META_ARCHITECTURE: MaskFormer\n")
    with pytest.raises(ConfigError, match="ENTITY.ENABLE"):
        config_from_yaml(bare)
    zero = _write(d, "z.yaml", "_BASE_: m2f.yaml\nTEST:\n  DETECTIONS_PER_IMAGE: 0\n")
    with pytest.raises(ConfigError, match="DETECTIONS_PER_IMAGE"):
        config_from_yaml(zero)
