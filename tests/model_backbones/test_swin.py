"""D2 Swin backbone: oracle parity, shapes, padding, official keys and parameter counts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from backbone_support import (
    backbone_state_dict,
    manifest_backbone_shapes,
    meta_backbone,
    normalised_views,
)

from entityseg_data.errors import CheckpointError
from entityseg_data.model.backbones import (
    SWIN_LARGE_W7,
    SWIN_ORACLE_TINY,
    SWIN_TINY,
    SwinConfig,
    build_backbone,
)
from entityseg_data.model.backbones.swin import (
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

LEVELS = ("res2", "res3", "res4", "res5")


def _forward(model, x):
    with torch.inference_mode():
        return model(x)


def _oracle_swin(oracle_dir, fused: bool):
    cfg = dataclasses.replace(SWIN_ORACLE_TINY, fused_attention=fused)
    model = build_backbone(cfg).eval()
    model.load_state_dict(backbone_state_dict(oracle_dir / "tiny" / "weights.npz"), strict=True)
    return model


@pytest.mark.parity
@pytest.mark.parametrize(
    "fused",
    [pytest.param(False, id="official_ops", marks=pytest.mark.slow), pytest.param(True, id="sdpa")],
)
def test_swin_tiny_oracle_parity(oracle_dir, fused):
    with np.load(oracle_dir / "tiny" / "outputs_img_a_480x640.npz") as npz:
        x = normalised_views(npz)
        refs = {k: npz[f"backbone_{k}"] for k in LEVELS}
    model = _oracle_swin(oracle_dir, fused)
    with torch.inference_mode():
        out = model(x)
    for k in LEVELS:
        assert out[k].shape == refs[k].shape, k
        diff = float(np.abs(out[k].numpy() - refs[k]).max())
        assert diff <= 1e-4, f"{k}: max abs diff {diff}"
        if not fused:  # same kernels and order of operations as the official code
            assert diff <= 1e-5, f"{k}: max abs diff {diff}"


@pytest.mark.parametrize(
    ("cfg", "manifest"),
    [
        (SWIN_TINY, "cropformer_swin_tiny_3x"),
        (SWIN_TINY, "mask2former_swin_tiny_3x"),
        (SWIN_LARGE_W7, "cropformer_swin_large_3x"),
        (SWIN_LARGE_W7, "mask2former_swin_large_3x"),
    ],
)
def test_swin_keys_shapes_and_counts_match_manifest(oracle_dir, cfg, manifest):
    expected = manifest_backbone_shapes(oracle_dir / "manifests" / f"{manifest}.json")
    model = meta_backbone(cfg)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(got) == set(expected)
    assert got == expected
    n_params = sum(p.numel() for p in model.parameters())
    reference = {SWIN_TINY: 27_520_698, SWIN_LARGE_W7: 194_998_164}[cfg]  # REFERENCE 3.8
    assert n_params == reference
    buffers = {k for k, _ in model.named_buffers()}
    assert all(k.endswith("relative_position_index") for k in buffers)


def test_swin_oracle_tiny_keys_match_oracle_manifest(oracle_dir):
    import json

    manifest = json.loads((oracle_dir / "tiny" / "manifest.json").read_text())["state_dict"]
    expected = {k[9:]: tuple(v[0]) for k, v in manifest.items() if k.startswith("backbone.")}
    model = meta_backbone(SWIN_ORACLE_TINY)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


@pytest.mark.parametrize(
    "cfg",
    [SWIN_ORACLE_TINY, SWIN_TINY, pytest.param(SWIN_LARGE_W7, marks=pytest.mark.slow)],
    ids=["tiny", "T", "L"],
)
def test_swin_output_contract(cfg):
    torch.manual_seed(0)
    model = build_backbone(cfg).eval()
    assert model.size_divisibility == 32
    assert model.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    assert model.out_channels == {k: cfg.embed_dim * 2**i for i, k in enumerate(LEVELS)}
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 64, 64))
    assert list(out) == list(LEVELS)
    for k in LEVELS:
        s = model.out_strides[k]
        assert out[k].shape == (1, model.out_channels[k], 64 // s, 64 // s)
        assert torch.isfinite(out[k]).all()


def test_swin_odd_input_size_pads_like_official():
    """Odd sizes: patch embed pads to a multiple of 4, merging pads odd sizes (ceil)."""
    torch.manual_seed(0)
    model = build_backbone(SWIN_ORACLE_TINY).eval()
    x = torch.randn(1, 3, 45, 70)
    out = _forward(model, x)
    # explicit zero padding to a multiple of 4 gives the same features (the patch embedding pads)
    out_p = _forward(model, torch.nn.functional.pad(x, (0, 2, 0, 3)))
    assert out["res2"].shape[-2:] == (12, 18)
    assert out["res3"].shape[-2:] == (6, 9)
    assert out["res4"].shape[-2:] == (3, 5)
    assert out["res5"].shape[-2:] == (2, 3)
    for k in LEVELS:
        torch.testing.assert_close(out[k], out_p[k], rtol=0, atol=1e-5)


def test_swin_sdpa_matches_explicit_attention_with_odd_sizes():
    torch.manual_seed(1)
    explicit = build_backbone(SWIN_ORACLE_TINY).eval()
    fused = build_backbone(dataclasses.replace(SWIN_ORACLE_TINY, fused_attention=True)).eval()
    fused.load_state_dict(explicit.state_dict())
    x = torch.randn(2, 3, 100, 76)
    a, b = _forward(explicit, x), _forward(fused, x)
    for k in LEVELS:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-4)


def test_batch_items_are_independent():
    torch.manual_seed(2)
    model = build_backbone(SWIN_ORACLE_TINY).eval()
    x = torch.randn(2, 3, 64, 96)
    both, one = _forward(model, x), _forward(model, x[1:])
    torch.testing.assert_close(both["res5"][1:], one["res5"], rtol=0, atol=1e-5)


def test_window_partition_roundtrip_and_mask_values():
    x = torch.randn(2, 14, 21, 5)
    w = window_partition(x, 7)
    assert w.shape == (2, 6, 49, 5)
    torch.testing.assert_close(window_reverse(w, 7, 14, 21), x)
    mask = shifted_window_mask(14, 21, 7, 3)
    assert mask.shape == (6, 49, 49)
    assert set(torch.unique(mask).tolist()) == {-100.0, 0.0}
    assert (mask[0] == 0).all()  # the top-left window never mixes regions
    assert (mask[-1] != 0).any()  # the bottom-right window mixes 4 regions
    idx = relative_position_index(7)
    assert idx.shape == (49, 49) and idx.dtype == torch.int64
    assert int(idx.min()) == 0 and int(idx.max()) == 168
    assert int(idx[0, 0]) == 84  # zero offset -> centre of the 13x13 table


def test_checkpoint_filter_fills_and_checks_relative_position_index():
    model = build_backbone(SWIN_ORACLE_TINY)
    sd = {"backbone." + k: v for k, v in model.state_dict().items()}
    key = "backbone.layers.0.blocks.0.attn.relative_position_index"
    missing = {k: v for k, v in sd.items() if k != key}
    missing["backbone.layers.0.blocks.0.attn_mask"] = torch.zeros(1)
    filled = model.checkpoint_filter(missing, prefix="backbone.")
    assert torch.equal(filled[key], sd[key])
    assert "backbone.layers.0.blocks.0.attn_mask" not in filled
    bad = dict(sd)
    bad[key] = sd[key].flip(0)
    with pytest.raises(CheckpointError, match="relative_position_index"):
        model.checkpoint_filter(bad, prefix="backbone.")


def test_drop_path_only_in_training():
    cfg = dataclasses.replace(SWIN_ORACLE_TINY, drop_path_rate=0.5)
    torch.manual_seed(3)
    model = build_backbone(cfg)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x)["res5"], model(x)["res5"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.train()
    torch.manual_seed(4)
    c = model(x)["res5"]
    assert not torch.allclose(a, c)
    c.sum().backward()
    assert model.patch_embed.proj.weight.grad is not None


def test_config_validation():
    from entityseg_data.errors import ConfigError

    with pytest.raises(ConfigError, match="num_heads"):
        SwinConfig(embed_dim=32, num_heads=(3, 2, 4, 8))
    with pytest.raises(ConfigError, match="depths"):
        SwinConfig(depths=(2, 2, 2))
