"""HorNet (GF) backbone: oracle parity, shapes, official keys, parameter counts, GF details."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
import torch
from backbone_support import (
    backbone_state_dict,
    manifest_backbone_shapes,
    meta_backbone,
    normalised_views,
)

from entityseg_data.errors import ConfigError
from entityseg_data.model.backbones import (
    HORNET_LARGE_GF,
    HORNET_ORACLE_TINY,
    HorNetConfig,
    build_backbone,
)
from entityseg_data.model.backbones import hornet as hornet_module
from entityseg_data.model.backbones.common import LayerNorm2d
from entityseg_data.model.backbones.hornet import (
    GlobalLocalFilter,
    GnConv,
    HorBlock,
    scaled_residual,
)
from entityseg_data.model.fused import onednn_linear_available

LEVELS = ("res2", "res3", "res4", "res5")


@pytest.mark.parity
def test_hornet_tiny_oracle_parity(oracle_dir):
    with np.load(oracle_dir / "tiny_hornet" / "outputs_img_a_480x640.npz") as npz:
        x = normalised_views(npz)
        refs = {k: npz[f"backbone_{k}"] for k in LEVELS}
    model = build_backbone(HORNET_ORACLE_TINY).eval()
    sd = backbone_state_dict(oracle_dir / "tiny_hornet" / "weights.npz")
    model.load_state_dict(sd, strict=True)
    with torch.inference_mode():
        out = model(x)
    for k in LEVELS:
        assert out[k].shape == refs[k].shape, k
        diff = float(np.abs(out[k].numpy() - refs[k]).max())
        assert diff <= 1e-4, f"{k}: max abs diff {diff}"


def test_oracle_tiny_config_matches_the_oracle_cfg(oracle_dir):
    """The fields carry what the oracle's merged config says (GCONV strings, depths, dims)."""
    text = (oracle_dir / "tiny_hornet" / "cfg.yaml").read_text()
    assert "partial(gnconv, order=4, s=1/3, h=24, w=13, gflayer=GlobalLocalFilter)" in text
    assert "partial(gnconv, order=5, s=1/3, h=12, w=7, gflayer=GlobalLocalFilter)" in text
    assert "partial(gnconv, order=2, s=1/3)" in text
    cfg = HORNET_ORACLE_TINY
    assert cfg.gnconv_orders == (2, 3, 4, 5)
    assert cfg.gf_sizes == (None, None, (24, 13), (12, 7))
    assert cfg.gnconv_scale == pytest.approx(1 / 3)
    manifest = json.loads((oracle_dir / "tiny_hornet" / "manifest.json").read_text())
    expected = {
        k[9:]: tuple(v[0]) for k, v in manifest["state_dict"].items() if k[:9] == "backbone."
    }
    model = meta_backbone(cfg)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


@pytest.mark.parametrize("manifest", ["cropformer_hornet_3x", "mask2former_hornet_3x"])
def test_hornet_large_keys_shapes_and_count_match_manifest(oracle_dir, manifest):
    expected = manifest_backbone_shapes(oracle_dir / "manifests" / f"{manifest}.json")
    model = meta_backbone(HORNET_LARGE_GF)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(got) == set(expected)
    assert got == expected
    assert len(got) == 644  # REFERENCE 4.3
    assert sum(p.numel() for p in model.parameters()) == 200_272_512  # REFERENCE 3.8


@pytest.mark.parametrize(
    "cfg",
    [HORNET_ORACLE_TINY, pytest.param(HORNET_LARGE_GF, marks=pytest.mark.slow)],
    ids=["tiny", "L"],
)
def test_hornet_output_contract(cfg):
    torch.manual_seed(0)
    model = build_backbone(cfg).eval()
    assert model.size_divisibility == 32
    assert model.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    assert model.out_channels == {k: cfg.base_dim * 2**i for i, k in enumerate(LEVELS)}
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 64, 96))
    assert list(out) == list(LEVELS)
    for k in LEVELS:
        s = model.out_strides[k]
        assert out[k].shape == (1, model.out_channels[k], 64 // s, 96 // s)
        assert torch.isfinite(out[k]).all()


def test_hornet_non_multiple_sizes_floor_like_strided_convs():
    torch.manual_seed(0)
    model = build_backbone(HORNET_ORACLE_TINY).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 70, 45))
    assert [tuple(out[k].shape[-2:]) for k in LEVELS] == [(17, 11), (8, 5), (4, 2), (2, 1)]


def test_layernorm2d_matches_layer_norm_over_channels():
    torch.manual_seed(0)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-6)
    torch.testing.assert_close(ln(x), ref.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-5)


def _reference_gf(gf: GlobalLocalFilter, x: torch.Tensor) -> torch.Tensor:
    """Independent statement of the GF layer: explicit complex FFT filter per channel."""
    x = gf.pre_norm(x)
    c = x.shape[1] // 2
    local = torch.nn.functional.conv2d(x[:, :c], gf.dw.weight, padding=1, groups=c)
    h, w = x.shape[2:]
    spec = torch.fft.rfft2(x[:, c:], norm="ortho")
    cw = gf.complex_weight
    wr = torch.nn.functional.interpolate(
        cw[..., 0][None], size=spec.shape[2:], mode="bilinear", align_corners=True
    )[0]
    wi = torch.nn.functional.interpolate(
        cw[..., 1][None], size=spec.shape[2:], mode="bilinear", align_corners=True
    )[0]
    glob = torch.fft.irfft2(spec * torch.complex(wr, wi), s=(h, w), norm="ortho")
    out = torch.empty_like(x)
    out[:, 0::2] = local
    out[:, 1::2] = glob
    return gf.post_norm(out)


@pytest.mark.parametrize("size", [(24, 24), (20, 28), (9, 13)])
def test_global_local_filter_interleaves_and_interpolates(size):
    torch.manual_seed(0)
    gf = GlobalLocalFilter(dim=8, h=24, w=13).eval()
    x = torch.randn(2, 8, *size)
    torch.testing.assert_close(gf(x), _reference_gf(gf, x), rtol=1e-5, atol=1e-5)
    # with a stored spectrum of the right size no interpolation happens (weight used as is)
    if size == (24, 24):
        spec = gf.spectral_weight((24, 13))
        torch.testing.assert_close(torch.view_as_real(spec), gf.complex_weight)


def test_gnconv_dims_and_recursion():
    torch.manual_seed(0)
    g = GnConv(dim=32, order=3, scale=1 / 3, gf_size=None, dw_kernel=7).eval()
    assert g.dims == [8, 16, 32]
    assert g.dwconv.weight.shape == (56, 1, 7, 7)
    x = torch.randn(1, 32, 9, 9)
    fused = g.proj_in(x)
    pwa, abc = fused[:, :8], fused[:, 8:]
    dw = g.dwconv(abc) / 3
    y = pwa * dw[:, :8]
    y = g.pws[0](y) * dw[:, 8:24]
    y = g.pws[1](y) * dw[:, 24:56]
    torch.testing.assert_close(g(x), g.proj_out(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gf_size", [None, (6, 4)])
def test_gnconv_without_autograd_folds_the_scale_into_the_gates(gf_size):
    """Without autograd the mixer's scale multiplies the gate products' weights instead of the
    mixer's output, and the gates are applied in place: the same values within float rounding
    (both mixers; the shortcut form too), and not the values of a missing scale."""
    torch.manual_seed(1)
    g = GnConv(dim=32, order=3, scale=1 / 3, gf_size=gf_size, dw_kernel=7).eval()
    x, shortcut, gamma = torch.randn(2, 9, 11, 32), torch.randn(2, 9, 11, 32), torch.rand(32)
    ref = g.forward_nhwc(x)
    ref_res = g.forward_nhwc(x, shortcut=shortcut, gamma=gamma)
    assert ref.requires_grad  # the plain path
    with torch.no_grad():
        got = g.forward_nhwc(x)
        got_res = g.forward_nhwc(x, shortcut=shortcut.clone(), gamma=gamma)
        g.scale = 1.0
        unscaled = g.forward_nhwc(x)
    torch.testing.assert_close(got, ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_res, ref_res.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(unscaled, got, rtol=1e-3, atol=1e-3)


def test_hornet_config_validation():
    with pytest.raises(ConfigError, match="gnconv_orders"):
        HorNetConfig(base_dim=15, gnconv_orders=(2, 3, 4, 5))
    with pytest.raises(ConfigError, match="even channel count"):
        HorNetConfig(base_dim=2, gnconv_orders=(2, 3, 4, 5))
    with pytest.raises(ConfigError, match="gf_sizes"):
        HorNetConfig(gf_sizes=(None, None, (24, 13)))


def test_hornet_channels_last_keeps_parity():
    """The NHWC memory-format fast path computes the same features (within 1e-4)."""
    torch.manual_seed(5)
    model = build_backbone(HORNET_ORACLE_TINY).eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.inference_mode():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    for k in LEVELS:
        torch.testing.assert_close(out[k], ref[k], rtol=0, atol=1e-4)


def _residual_case(seed: int = 0, rows: int = 70):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(24, 8)
    gamma = torch.nn.Parameter(torch.rand(8) + 0.5)
    shortcut = torch.randn(2, rows // 2, 8)
    x = torch.randn(2, rows // 2, 24)
    return lin, gamma, shortcut, x


def test_scaled_residual_folds_the_scale_within_rounding():
    """Without autograd ``shortcut + gamma * linear(x)`` as a sum and one accumulating product
    with the folded ``gamma * weight``: equal to the plain form within float rounding, a new
    tensor unless ``inplace``; with autograd the plain form itself (bitwise, gradients flow)."""
    lin, gamma, shortcut, x = _residual_case()
    ref = torch.addcmul(shortcut, gamma, lin(x))
    with torch.no_grad():
        before = shortcut.clone()
        got = scaled_residual(shortcut, gamma, x, lin.weight, lin.bias)
        assert torch.equal(shortcut, before) and got.data_ptr() != shortcut.data_ptr()
        torch.testing.assert_close(got, ref.detach(), rtol=1e-6, atol=1e-6)
        assert not torch.equal(got, ref.detach())  # really the folded computation
        own = shortcut.clone()
        into = scaled_residual(own, gamma, x, lin.weight, lin.bias, inplace=True)
        assert into.data_ptr() == own.data_ptr() and torch.equal(into, got)
        no_bias = scaled_residual(shortcut, gamma, x, lin.weight, None)
        torch.testing.assert_close(
            no_bias, torch.addcmul(shortcut, gamma, x @ lin.weight.t()), rtol=1e-6, atol=1e-6
        )
        # fewer rows than input features: the plain form (folding would cost more)
        lin, gamma, shortcut, x = _residual_case(rows=20)
        few = scaled_residual(shortcut, gamma, x, lin.weight, lin.bias)
        assert torch.equal(few, torch.addcmul(shortcut, gamma, lin(x)))
    lin, gamma, shortcut, x = _residual_case()
    before = shortcut.clone()
    with_grad = scaled_residual(shortcut, gamma, x, lin.weight, lin.bias, inplace=True)
    assert torch.equal(with_grad, torch.addcmul(shortcut, gamma, lin(x)))
    assert torch.equal(shortcut, before)
    with_grad.sum().backward()
    assert gamma.grad is not None and lin.weight.grad is not None


def test_scaled_residual_plain_form_where_folding_is_unsafe():
    """Autocast and mixed dtypes take the plain form; meta tensors (shape tracing) work."""
    lin, gamma, shortcut, x = _residual_case(1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = scaled_residual(shortcut, gamma, x, lin.weight, lin.bias)
        assert torch.equal(mixed, torch.addcmul(shortcut, gamma, lin(x)))
    with torch.no_grad():
        half = scaled_residual(shortcut, gamma, x.bfloat16(), lin.weight.bfloat16(), None)
        assert half.dtype == torch.float32
        meta = scaled_residual(
            shortcut.to("meta"),
            gamma.to("meta"),
            x.to("meta"),
            lin.weight.to("meta"),
            lin.bias.to("meta"),
        )
        assert meta.shape == shortcut.shape and meta.device.type == "meta"


def test_hornet_block_residual_fast_path_matches_the_autograd_form():
    """The whole tiny HorNet without autograd (scales folded, sums in place) against the same
    weights with autograd (plain residuals): within float rounding, not bitwise."""
    torch.manual_seed(3)
    model = build_backbone(HORNET_ORACLE_TINY).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma1", "gamma2")):
                p.uniform_(0.5, 1.5)  # the 1e-6 init would hide the residual branch
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        fast = model(x)
    slow = model(x)
    for k in LEVELS:
        torch.testing.assert_close(fast[k], slow[k].detach(), rtol=1e-4, atol=1e-4)
    assert any(not torch.equal(fast[k], slow[k].detach()) for k in LEVELS)


needs_onednn = pytest.mark.skipif(
    not onednn_linear_available(), reason="this torch build has no oneDNN linear"
)


def _gated_block(dim: int) -> HorBlock:
    gnconv = GnConv(dim=dim, order=3, scale=1 / 3, gf_size=None, dw_kernel=7)
    block = HorBlock(dim=dim, drop_path=0.0, layer_scale=1.0, mlp_ratio=4.0, gnconv=gnconv)
    return block.eval()


@needs_onednn
def test_packed_products_match_the_plain_ones_and_follow_weight_changes(monkeypatch):
    """Without autograd on CPU float32 a HorBlock's 1x1 products with <= 384 inputs run as
    oneDNN calls with packed weights (MLP: bias and GELU in the epilogue): the same values as
    the plain products within float rounding; an in-place weight change repacks; copies and
    pickles of the block drop the packed tensors and rebuild them."""
    monkeypatch.setenv("ENTITYSEG_ONEDNN_PACKED", "1")
    torch.manual_seed(4)
    block = _gated_block(32)
    x = torch.randn(1, 9, 11, 32)
    with torch.no_grad():
        fast = block(x.clone())
        assert set(block._packed._entries) == {"pwconv1"}
        assert {
            "proj_in.a*0.3333333333333333",
            "proj_in.bc*None",
            "pws.0*0.3333333333333333",
        } <= set(block.gnconv._packed._entries)
        packed_switch = hornet_module._packed_products
        monkeypatch.setattr(hornet_module, "_packed_products", lambda t: False)
        plain = block(x.clone())
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        # a weight changed in place (e.g. load_state_dict): the packed copies follow
        block.pwconv1.weight.mul_(-1)
        block.gnconv.pws[0].weight.add_(0.5)
        plain_changed = block(x.clone())
        monkeypatch.setattr(hornet_module, "_packed_products", packed_switch)
        fast_changed = block(x.clone())
    torch.testing.assert_close(fast_changed, plain_changed, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fast_changed, fast, atol=1e-3)
    copied = copy.deepcopy(block)
    restored = pickle.loads(pickle.dumps(block))
    for other in (copied, restored):
        assert not other._packed._entries and not other.gnconv._packed._entries
        with torch.no_grad():
            torch.testing.assert_close(other(x.clone()), fast_changed, rtol=1e-6, atol=1e-6)
        assert other._packed._entries


def test_packed_products_are_opt_in(monkeypatch):
    """Without ``ENTITYSEG_ONEDNN_PACKED=1`` (the default: they raised 12 MP peak memory)
    nothing is packed."""
    monkeypatch.delenv("ENTITYSEG_ONEDNN_PACKED", raising=False)
    block = _gated_block(32)
    with torch.no_grad():
        block(torch.randn(1, 4, 5, 32))
    assert not block._packed._entries and not block.gnconv._packed._entries


@needs_onednn
def test_packed_products_only_where_they_pay(monkeypatch):
    """Wider inputs (HorNet-L's stages 2-3: oneDNN's product is slower than MKL's there),
    autograd and float64 keep the plain products: nothing is packed."""
    monkeypatch.setenv("ENTITYSEG_ONEDNN_PACKED", "1")
    torch.manual_seed(5)
    wide = _gated_block(2 * hornet_module._PACKED_MAX_IN)
    with torch.no_grad():
        wide(torch.randn(1, 2, 3, wide.gnconv.dims[-1]))
    assert not wide._packed._entries
    assert all(not k.startswith("proj_in") for k in wide.gnconv._packed._entries)
    block = _gated_block(32)
    block(torch.randn(1, 4, 5, 32))  # autograd
    with torch.no_grad():
        block.double()(torch.randn(1, 4, 5, 32, dtype=torch.float64))
    assert not block._packed._entries and not block.gnconv._packed._entries
