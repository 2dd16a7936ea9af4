"""Model building blocks and the views/batch contract (random weights, tiny configs)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from entityseg_data.model import pixel_decoder as pixel_decoder_module
from entityseg_data.model.backbones import hornet as hornet_module
from entityseg_data.model.decoder import _mask_for_attention
from entityseg_data.model.fused import onednn_linear_available
from entityseg_data.model.layers import (
    MSDeformAttn,
    PositionEmbeddingSine,
    PositionEmbeddingSine3D2D,
    ms_deform_attn_gather,
    ms_deform_attn_gather_offsets,
    ms_deform_attn_grid_sample,
    ms_deform_attn_sample,
)
from entityseg_data.model.layers import ms_deform_attn as ms_deform_attn_module
from entityseg_data.model.layers.ms_deform_attn import _softmax_few_
from entityseg_data.model.loading import build_model
from entityseg_data.model.presets import PRESETS

needs_onednn = pytest.mark.skipif(
    not onednn_linear_available(), reason="this torch build has no oneDNN linear"
)


def _bilinear_zero_pad(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img (D, H, W) sampled at normalised (x, y) in [0, 1] (align_corners=False, zeros)."""
    d, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=torch.float64)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[:, yy, xx].double()
    return out


@pytest.mark.parametrize("sample", [ms_deform_attn_grid_sample, ms_deform_attn_gather])
def test_ms_deform_attn_matches_naive_sampling(sample):
    torch.manual_seed(0)
    shapes = [(3, 4), (2, 2)]
    n, m, d, lq, p = 2, 2, 3, 5, 2
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d)
    # some points fall outside, some far outside, some on a border pixel centre
    loc = torch.rand(n, lq, m, len(shapes), p, 2) * 1.4 - 0.2
    loc[:, 0, 0, :, 0] = torch.tensor([-3.0, 0.5])
    loc[:, 1, 1, :, 1] = torch.tensor([1.0, 4.0])
    loc[:, 2, 0, 0, 1] = torch.tensor([0.5 / 4, 2.5 / 3])
    loc[:, 3, 1, 1, 0] = torch.tensor([1.0 + 0.4 / 2, 0.99])
    weights = torch.rand(n, lq, m, len(shapes), p)
    out = sample(value, shapes, loc, weights)  # (N, Lq, M*D)
    assert out.shape == (n, lq, m * d)
    starts = [0, shapes[0][0] * shapes[0][1]]
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                acc = torch.zeros(d, dtype=torch.float64)
                for lvl, (h, w) in enumerate(shapes):
                    img = value[b, starts[lvl] : starts[lvl] + h * w, head].T.reshape(d, h, w)
                    for k in range(p):
                        x, y = loc[b, q, head, lvl, k].tolist()
                        wk = weights[b, q, head, lvl, k].double()
                        acc += wk * _bilinear_zero_pad(img, x, y)
                got = out[b, q, head * d : (head + 1) * d].double()
                assert torch.allclose(got, acc, atol=1e-5), (b, q, head)


def test_ms_deform_attn_gather_equals_grid_sample_at_layer_size():
    """The inference path (weighted gather) against the official grid_sample computation on a
    pixel-decoder-like input: 3 levels, 8 heads, samples around their queries and 200 queries
    sampling anywhere (outside too)."""
    torch.manual_seed(0)
    shapes = [(5, 7), (10, 14), (20, 28)]
    s = sum(h * w for h, w in shapes)
    n, m, d, levels, p = 2, 8, 32, 3, 4
    value = torch.randn(n, s, m, d)
    loc = torch.rand(n, s, 1, 1, 1, 2) + 0.05 * torch.randn(n, s, m, levels, p, 2)
    loc[:, :200] = torch.rand(n, 200, m, levels, p, 2) * 3 - 1
    weights = torch.softmax(torch.randn(n, s, m, levels * p), -1).view(n, s, m, levels, p)
    with torch.no_grad():
        ref = ms_deform_attn_grid_sample(value, shapes, loc, weights)
        got = ms_deform_attn_gather(value, shapes, loc, weights)
        assert torch.equal(ms_deform_attn_sample(value, shapes, loc, weights), got)
    assert (got - ref).abs().max().item() < 1e-5


def test_ms_deform_attn_sample_keeps_grid_sample_under_autograd():
    """Training differentiates through the official grid_sample path (gradients for values,
    locations and weights)."""
    torch.manual_seed(0)
    shapes = [(3, 4), (2, 2)]
    value = torch.randn(1, 16, 2, 3, requires_grad=True)
    loc = torch.rand(1, 4, 2, 2, 2, 2, requires_grad=True)
    weights = torch.rand(1, 4, 2, 2, 2, requires_grad=True)
    out = ms_deform_attn_sample(value, shapes, loc, weights)
    assert torch.equal(out, ms_deform_attn_grid_sample(value, shapes, loc, weights))
    out.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (value, loc, weights))


def test_sine_position_encodings():
    h, w, f = 3, 5, 8
    pos = PositionEmbeddingSine(num_pos_feats=f).encode(1, h, w, torch.device("cpu"))
    assert pos.shape == (1, 2 * f, h, w)
    i, j = 2, 4
    y = (i + 1) / (h + 1e-6) * 2 * math.pi
    x = (j + 1) / (w + 1e-6) * 2 * math.pi
    assert pos[0, 0, i, j].item() == pytest.approx(math.sin(y), abs=1e-6)
    assert pos[0, 1, i, j].item() == pytest.approx(math.cos(y), abs=1e-6)
    assert pos[0, 2, i, j].item() == pytest.approx(math.sin(y / 10000 ** (2 / f)), abs=1e-6)
    assert pos[0, f, i, j].item() == pytest.approx(math.sin(x), abs=1e-6)
    # 3-D: the view term depends on the number of views: z = (t+1)/(V+1e-6)*2pi
    pe = PositionEmbeddingSine3D2D(num_pos_feats=f)
    for views in (2, 5):
        p2, p3 = pe.encode(2, views, h, w, torch.device("cpu"))
        assert p2.shape == p3.shape == (2, views, 2 * f, h, w)
        assert torch.equal(p2[1, -1], pos[0])
        for t in range(views):
            z = (t + 1) / (views + 1e-6) * 2 * math.pi
            dz = p3[0, t] - p2[0, t]
            assert dz[0, 0, 0].item() == pytest.approx(math.sin(z), abs=1e-5)
            assert dz[1, 1, 1].item() == pytest.approx(math.cos(z), abs=1e-5)
            k = 2  # channel 2 uses dim_t_z over 2F features
            assert dz[k, 0, 0].item() == pytest.approx(
                math.sin(z / 10000 ** (2 / (2 * f))), abs=1e-5
            )


def test_attention_mask_threshold_release_and_layout():
    torch.manual_seed(0)
    masks = torch.randn(2, 3, 8, 8)
    masks[1, 2] = -5.0  # sigmoid < 0.5 everywhere: that row must be released
    attn = _mask_for_attention(masks, (4, 4), nheads=2)
    assert attn.shape == (4, 3, 16) and attn.dtype == torch.bool
    small = F.interpolate(masks, size=(4, 4), mode="bilinear", align_corners=False)
    expect = small.sigmoid().flatten(2) < 0.5
    expect[1, 2] = False
    for n in range(2):
        for h in range(2):
            assert torch.equal(attn[n * 2 + h], expect[n])  # batch-major, then heads
    # batch-level masks (N, Q, V, H, W) flatten view-major
    m5 = torch.randn(1, 2, 3, 8, 8)
    a5 = _mask_for_attention(m5, (2, 2), nheads=1)
    assert a5.shape == (1, 2, 12)
    v1 = F.interpolate(m5[:, :, 1], size=(2, 2), mode="bilinear", align_corners=False)
    assert torch.equal(a5[0, :, 4:8], v1.sigmoid().flatten(2)[0] < 0.5)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(PRESETS["tiny_swin"]).eval()


def test_batch_of_images_equals_one_at_a_time(tiny):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 3, 64, 96)
    with torch.no_grad():
        both = tiny(x)
        singles = [tiny(x[i : i + 1]) for i in range(2)]
    assert both.batch_level.final.pred_logits.shape == (2, 16, 2)
    assert both.batch_level.final.pred_masks.shape == (2, 16, 3, 16, 24)
    assert both.image_level.final.pred_masks.shape == (2, 3, 16, 16, 24)
    for i in range(2):
        for a, b in (
            (both.batch_level.final.pred_logits[i], singles[i].batch_level.final.pred_logits[0]),
            (both.batch_level.final.pred_masks[i], singles[i].batch_level.final.pred_masks[0]),
            (both.image_level.final.pred_logits[i], singles[i].image_level.final.pred_logits[0]),
        ):
            assert torch.allclose(a, b, atol=1e-5)


def test_view_chunks_equal_one_batch(tiny):
    """Backbone + pixel decoder one view (or two) at a time give the batched outputs."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 3, 64, 96)
    with torch.inference_mode():
        ref = tiny(x, aux=False)
        for chunk in (1, 2, 4):
            out = tiny(x, aux=False, view_chunk=chunk)
            for a, b in (
                (out.batch_level.final.pred_logits, ref.batch_level.final.pred_logits),
                (out.batch_level.final.pred_masks, ref.batch_level.final.pred_masks),
                (out.image_level.final.pred_masks, ref.image_level.final.pred_masks),
            ):
                assert torch.allclose(a, b, atol=1e-5), (chunk, (a - b).abs().max())


def test_batch_level_only_forward_skips_image_masks_and_keeps_values(tiny):
    """``image_masks=False`` (the CropFormer prediction path) leaves the image-level final masks
    out (they were held through the post-processing for nothing: 218 MB at 800x1088 x 5 views)
    and changes no value: batch-level logits and masks and image-level logits bitwise equal to
    the same forward with them, with and without view chunks (chunked against batched is only
    within float rounding on some CPUs: AVX-512 kernels differ by batch size, ~1e-6; see
    test_view_chunks_equal_one_batch); with ``aux`` (training) every head keeps its masks."""
    torch.manual_seed(5)
    x = torch.randn(1, 5, 3, 64, 96)
    with torch.inference_mode():
        for chunk in (None, 1):
            ref = tiny(x, aux=False, view_chunk=chunk)
            lean = tiny(x, aux=False, image_masks=False, view_chunk=chunk)
            assert lean.image_level.final.pred_masks is None
            assert ref.image_level.final.pred_masks is not None
            assert torch.equal(
                lean.image_level.final.pred_logits, ref.image_level.final.pred_logits
            )
            assert torch.equal(
                lean.batch_level.final.pred_logits, ref.batch_level.final.pred_logits
            )
            assert torch.equal(lean.batch_level.final.pred_masks, ref.batch_level.final.pred_masks)
        full = tiny(x, aux=True, image_masks=False)
    assert full.image_level.final.pred_masks is not None
    assert all(p.pred_masks is not None for p in full.image_level.aux)


def test_batch_level_reuses_the_image_level_averaged_features():
    """The batch level's averaged mask features are views of the image level's (computed and
    held once: 70 MB at 1/8 for 5 views of 800x1088), equal to computing them anew."""
    from entityseg_data.model.decoder import _ResizedFeatures

    torch.manual_seed(6)
    feats = torch.randn(5, 8, 32, 48)
    image_level = _ResizedFeatures(feats)
    first = image_level.pooled((8, 12))
    batch_level = image_level.viewed(feats.view(1, 5, 8, 32, 48))
    shared = batch_level.pooled((8, 12))
    alone = _ResizedFeatures(feats.view(1, 5, 8, 32, 48)).pooled((8, 12))
    assert first is not None and shared is not None and alone is not None
    assert shared.data_ptr() == first.data_ptr() and shared.shape == (1, 5, 8, 8, 12)
    assert torch.equal(shared, alone)
    # a size the image level never asked for is computed by the batch level itself
    other = batch_level.pooled((4, 6))
    assert other is not None and torch.equal(
        other, _ResizedFeatures(feats.view(1, 5, 8, 32, 48)).pooled((4, 6))
    )


def test_pooled_attention_masks_equal_resized_full_masks():
    """The intermediate heads' attention masks from the mask features averaged at the source
    pixels of the resize equal the official full-resolution-then-resize ones; the per-view
    batch-level product equals the einsum."""
    from entityseg_data.model.decoder import _mask_logits, _ResizedFeatures

    torch.manual_seed(4)
    feats = torch.randn(2, 16, 32, 48)
    emb = torch.randn(2, 5, 16)
    full = torch.einsum("nqc,nchw->nqhw", emb, feats)
    rf = _ResizedFeatures(feats)
    for size in ((4, 6), (8, 12), (16, 24), (4, 12)):
        ref = F.interpolate(full, size=size, mode="bilinear", align_corners=False)
        ours = _mask_logits(emb, rf.pooled(size))
        assert ours.shape == ref.shape
        assert torch.allclose(ours, ref, atol=1e-5)
        assert (
            torch.equal(_mask_for_attention(ours, None, 2), _mask_for_attention(full, size, 2))
            or (ours.abs() < 1e-4).any()
        )
    # the averages are bitwise the resize's own arithmetic on the four source pixels
    for sh, sw in ((8, 8), (4, 4), (2, 2), (8, 4)):
        r, c = sh // 2 - 1, sw // 2 - 1
        a, b = feats[..., r::sh, c::sw], feats[..., r::sh, c + 1 :: sw]
        cc, d = feats[..., r + 1 :: sh, c::sw], feats[..., r + 1 :: sh, c + 1 :: sw]
        want = (a * 0.5 + b * 0.5) * 0.5 + (cc * 0.5 + d * 0.5) * 0.5
        assert torch.equal(rf.pooled((32 // sh, 48 // sw)), want)
        grad = feats.clone().requires_grad_(True)
        assert torch.equal(_ResizedFeatures(grad).pooled((32 // sh, 48 // sw)), want)
    assert rf.pooled((5, 6)) is None  # not an even integer factor: caller resizes
    assert rf.pooled((6, 16)) is None  # odd factor (3 x 3)
    views = torch.randn(2, 3, 16, 8, 12)
    with torch.no_grad():
        per_view = _mask_logits(emb, views)
    assert per_view.shape == (2, 5, 3, 8, 12)
    assert torch.allclose(per_view, torch.einsum("bqc,bvchw->bqvhw", emb, views), atol=1e-5)


def test_any_number_of_views_and_mask2former(tiny):
    torch.manual_seed(2)
    for v in (1, 2, 4):
        with torch.no_grad():
            out = tiny(torch.randn(1, v, 3, 64, 64))
        assert out.batch_level.final.pred_masks.shape == (1, 16, v, 16, 16)
        assert out.image_level.aux == [] and out.batch_level.aux == []
    torch.manual_seed(0)
    m2f = build_model(dataclasses.replace(PRESETS["tiny_swin"], batch_level=False)).eval()
    assert not hasattr(m2f.sem_seg_head.predictor, "make_3d")
    x = torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        out = m2f(x, aux=True)
        alone = m2f(x[:, 1:2])
    assert out.batch_level is None
    assert len(out.image_level.aux) == 3
    # image level: every view is decoded on its own
    assert torch.allclose(
        out.image_level.final.pred_masks[0, 1], alone.image_level.final.pred_masks[0, 0], atol=1e-5
    )


def test_input_validation(tiny):
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny(torch.zeros(1, 1, 3, 60, 64))
    with pytest.raises(ValueError, match="B, V, 3, H, W"):
        tiny(torch.zeros(1, 3, 64, 64))


def test_meta_build_draws_nothing_and_restores_torch(monkeypatch):
    """build_model(device="meta") skips normal_ on meta parameters (torch's meta normal_ is a
    Python decomposition whose first call imports torch._dynamo: ~2 CPU s in every process that
    loads a checkpoint) and puts torch's methods back; a CPU build still draws its values."""
    meta_draws = []
    original = torch.Tensor.normal_

    def spy(self, *args, **kwargs):
        if self.is_meta:
            meta_draws.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "normal_", spy)
    cfg = PRESETS["tiny_swin"]
    model = build_model(cfg, device="meta")
    assert meta_draws == []
    assert all(p.is_meta for p in model.parameters())
    assert torch.Tensor.normal_ is spy
    assert torch.nn.Module.register_parameter.__qualname__ == "Module.register_parameter"
    torch.manual_seed(0)
    level_embed = build_model(cfg).sem_seg_head.pixel_decoder.transformer.level_embed
    assert not level_embed.is_meta and float(level_embed.detach().std()) > 0.1


@pytest.mark.slow
def test_loading_a_checkpoint_does_not_import_dynamo(oracle_dir):
    """In a fresh interpreter: load_checkpoint (a meta build, then the weights) leaves
    torch._dynamo unimported."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from entityseg_data.model.loading import load_checkpoint\n"
        f"load_checkpoint({str(oracle_dir / 'tiny' / 'weights.npz')!r}, preset='tiny_swin')\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_official_key_names(oracle_dir):
    import json

    manifest = json.loads((oracle_dir / "tiny" / "manifest.json").read_text())
    official = {k for k in manifest["perturbation_sigma"] if not k.startswith("criterion")}
    ours = set(build_model(PRESETS["tiny_swin"], device="meta").state_dict())
    assert ours == official


def test_training_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny_cpu"]).train()
    out = model(torch.randn(2, 2, 3, 64, 64))
    assert (
        len(out.image_level.aux) == len(out.batch_level.aux) == PRESETS["tiny_cpu"].dec_layers - 1
    )
    loss = sum(
        p.pred_logits.sum() + p.pred_masks.mean()
        for level in (out.image_level, out.batch_level)
        for p in [level.final, *level.aux]
    )
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == [], no_grad[:5]


def test_masked_attention_equals_multihead_attention():
    """The fused shared-mask attention (one scaled-dot-product call, the mask broadcast over
    the heads) gives nn.MultiheadAttention's values with the mask expanded per head
    (need_weights path), also when most keys are masked and with several images."""
    from entityseg_data.model.layers import transformer as tr

    torch.manual_seed(5)
    mha = torch.nn.MultiheadAttention(32, 4).eval()
    q, k, v = torch.randn(6, 2, 32), torch.randn(50, 2, 32), torch.randn(50, 2, 32)
    for p_masked in (0.5, 0.95):
        mask = torch.rand(2, 6, 50) < p_masked
        mask[:, :, 0] = False
        with torch.no_grad():
            ref = mha(q, k, v, attn_mask=mask.repeat_interleave(4, 0), need_weights=True)[0]
            ours = tr.masked_attention(mha, q, k, v, mask)
        assert torch.allclose(ours, ref, atol=1e-6), (ours - ref).abs().max()
    with torch.no_grad():
        assert torch.allclose(tr.masked_attention(mha, q, k, v, None), mha(q, k, v)[0], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny_swin", "tiny_hornet"])
@pytest.mark.parametrize("view_chunk", [None, 1])
def test_prediction_path_has_no_cpu_assumption(view_chunk, preset):
    """The inference path (pooled attention masks, per-view mask logits, shared-mask
    attention, the deformable-attention gather, HorNet's channels-last blocks and cached
    spectral filter, view chunks) runs on the meta device: every tensor it creates follows the
    input's device (what --device cuda relies on; no GPU here)."""
    model = build_model(PRESETS[preset], device="meta").to_empty(device="meta").eval()
    x = torch.zeros(1, 5, 3, 64, 96, device="meta")
    with torch.inference_mode():
        out = model(x, aux=False, view_chunk=view_chunk)
    assert out.batch_level.final.pred_masks.device.type == "meta"
    assert out.batch_level.final.pred_masks.shape == (1, 16, 5, 16, 24)


def _perturbed_tiny_hornet() -> torch.nn.Module:
    """tiny_hornet with every parameter moved off the official init (its deformable attention
    starts with zero attention logits: a uniform softmax would hide any difference there)."""
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny_hornet"]).eval().requires_grad_(False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)
    return model


def _plain_scaled_residual(shortcut, gamma, x, weight, bias, *, inplace=False):
    return torch.addcmul(shortcut, gamma, F.linear(x, weight, bias))


def _gather_of_locations(value, shapes, reference_points, offsets, weights):
    """The autograd path's normalised locations, sampled by the gather."""
    n, lq, _, levels, points, _ = offsets.shape
    normalizer = torch.tensor([[float(w), float(h)] for h, w in shapes])
    normalizer = normalizer[:, None, :].expand(levels, points, 2).contiguous()
    ref = reference_points[:, :, None, :, None, :].expand(n, lq, 1, levels, points, 2)
    return ms_deform_attn_gather(value, shapes, offsets / normalizer + ref.contiguous(), weights)


def _offsets_case(seed: int = 0):
    """A pixel-decoder-like sampling: 3 levels, 8 heads, offsets of a few pixels around the
    references and 50 queries sampling far outside every map."""
    torch.manual_seed(seed)
    shapes = [(5, 7), (10, 14), (20, 28)]
    s = sum(h * w for h, w in shapes)
    n, m, d, levels, p = 2, 8, 32, 3, 4
    value = torch.randn(n, s, m, d)
    ref = torch.rand(n, s, levels, 2)
    offsets = torch.randn(n, s, m, levels, p, 2) * 3
    offsets[:, :50] *= 30
    weights = torch.softmax(torch.randn(n, s, m, levels * p), -1).view(n, s, m, levels, p)
    return shapes, value, ref, offsets, weights


def test_ms_deform_attn_gather_offsets_matches_float64():
    """The inference gather from the offsets (pixel = ref W - 1/2 + offset, indices and weights
    by selection products) against the official grid_sample computation in float64: as close
    as the official float32 computation within a factor 2 (both a few 1e-6 here; at the
    pixel decoder's size ours was the closer, 2.3e-5 against 2.5e-5); the gather of locations
    likewise."""
    shapes, value, ref, offsets, weights = _offsets_case()
    normalizer = torch.tensor([[float(w), float(h)] for h, w in shapes])[:, None, :]
    loc64 = ref.double()[:, :, None, :, None, :] + offsets.double() / normalizer.double()
    with torch.no_grad():
        truth = ms_deform_attn_grid_sample(value.double(), shapes, loc64, weights.double())
        loc32 = ref[:, :, None, :, None, :] + offsets / normalizer  # as the official code
        official = ms_deform_attn_grid_sample(value, shapes, loc32, weights)
        got = ms_deform_attn_gather_offsets(value, shapes, ref, offsets, weights)
        of_locations = ms_deform_attn_gather(value, shapes, loc64.float(), weights)
    err = (got.double() - truth).abs().max().item()
    err_official = (official.double() - truth).abs().max().item()
    assert err < 2e-5 and err <= 2 * err_official
    assert (of_locations.double() - truth).abs().max().item() < 2e-5
    # far outside reads zeros: a sample 1000 pixels away contributes nothing
    far = offsets.clone()
    far[:, :, :, 0, 0] = 1000.0
    w0 = weights.clone()
    w0[:, :, :, 0, 0] = 0.0
    with torch.no_grad():
        a = ms_deform_attn_gather_offsets(value, shapes, ref, far, weights)
        b = ms_deform_attn_gather_offsets(value, shapes, ref, far, w0)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_ms_deform_attn_gather_offsets_float64_selection(monkeypatch):
    """With a float32 matmul precision below "highest" the selection products run in float64
    (a reduced float32 product would corrupt the indices): the same samples, the weights
    within float32 rounding."""
    shapes, value, ref, offsets, weights = _offsets_case(1)
    with torch.no_grad():
        exact32 = ms_deform_attn_gather_offsets(value, shapes, ref, offsets, weights)
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("medium")
        try:
            wide = ms_deform_attn_gather_offsets(value, shapes, ref, offsets, weights)
        finally:
            torch.set_float32_matmul_precision(previous)
    torch.testing.assert_close(wide, exact32, rtol=0, atol=2e-6)


def test_ms_deform_attn_module_inference_matches_autograd():
    """The module without autograd (gather from the offsets) against the module with autograd
    (normalised locations, grid_sample): within float rounding."""
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=64, n_levels=3, n_heads=4, n_points=4)
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.3)
        attn.attention_weights.weight.normal_(0, 0.3)
    shapes = [(4, 6), (8, 12), (16, 24)]
    s = sum(h * w for h, w in shapes)
    query, src = torch.randn(2, s, 64), torch.randn(2, s, 64)
    ref = torch.rand(2, s, 3, 2)
    with torch.no_grad():
        fast = attn(query, ref, src, shapes)
    slow = attn(query, ref, src, shapes)
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-5, atol=1e-5)
    # with the encoder's skip connection: summed into output_proj's product without autograd
    # (the residual itself left as it was), added after it with autograd
    with torch.no_grad():
        attn.output_proj.bias.normal_()
        keep = src.clone()
        fused = attn(query, ref, src, shapes, residual=src)
        assert torch.equal(src, keep)
        plain = src + attn(query, ref, src, shapes)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fused, plain - src, atol=1e-3)  # the residual is in
    graded = attn(query, ref, src, shapes, residual=src)
    torch.testing.assert_close(graded.detach(), plain, rtol=1e-5, atol=1e-5)


def test_inference_fast_paths_equal_the_autograd_computation(monkeypatch):
    """Without autograd HorNet scales the mixer output and applies GELU in place, the
    deformable attention adds its reference points in place and the decoder writes its tokens
    into their final layout: bitwise the values of the out-of-place ops that run while
    autograd records (parameters frozen here, so that both runs take the same
    deformable-attention sampler: the gather). The attention-weight softmax, the one fast path
    that is not bitwise (within ~1 ulp, next test), is the plain one in both runs here, and so
    is HorNet's residual with the layer scale folded into the product and its gnconv scale
    folded into the gates and its small 1x1 products as oneDNN calls with packed weights
    (test_hornet.py), its global filter as products (test_spectral.py), the deformable
    attention's projections as oneDNN calls (test_deformable_attention_packed_projections),
    the encoder FFN's biases folded (test_encoder_ffn_folds_its_biases) and the deformable
    attention's gather from the offsets (next tests)."""
    monkeypatch.setattr(ms_deform_attn_module, "_softmax_few_", lambda x: F.softmax(x, -1))
    monkeypatch.setattr(hornet_module, "_filter_by_products", lambda x: False)
    monkeypatch.setattr(hornet_module, "_fold_gate_scale", lambda: False)
    monkeypatch.setattr(hornet_module, "_packed_products", lambda x: False)
    monkeypatch.setattr(pixel_decoder_module, "_ffn_folded", lambda layer, src: False)
    monkeypatch.setattr(ms_deform_attn_module, "_packed_projections", lambda proj, x: False)
    monkeypatch.setattr(hornet_module, "scaled_residual", _plain_scaled_residual)
    monkeypatch.setattr(
        ms_deform_attn_module, "ms_deform_attn_gather_offsets", _gather_of_locations
    )
    model = _perturbed_tiny_hornet()
    x = torch.randn(2, 3, 64, 96)
    runs = []
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            feats = model.backbone(x)
            runs.append((feats, model.sem_seg_head.pixel_decoder(feats)))
    (feats, pix), (feats_grad, pix_grad) = runs
    for key, value in feats.items():
        assert torch.equal(value, feats_grad[key]), key
    assert torch.equal(pix.mask_features, pix_grad.mask_features)
    for ours, ref in zip(pix.multi_scale, pix_grad.multi_scale, strict=True):
        assert torch.equal(ours, ref)
    # the decoder's tokens: written straight into their (hw, N, C) layout without autograd
    views = x.view(1, 2, 3, 64, 96)
    outs = []
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            outs.append(model(views, aux=False).batch_level.final)
    assert torch.equal(outs[0].pred_logits, outs[1].pred_logits)
    assert torch.equal(outs[0].pred_masks, outs[1].pred_masks)


def test_deformable_attention_softmax_fast_path(monkeypatch):
    """The attention-weight softmax without autograd on CPU (max, exp, sum, divide in place):
    within ~1 ulp of ``F.softmax``, stable for large logits; with autograd ``F.softmax`` itself
    and the input untouched; the whole tiny model's outputs stay within float rounding."""
    torch.manual_seed(0)
    logits = torch.randn(2, 300, 4, 12) * 4
    logits[0, 0, 0] = torch.tensor([88.0, -88.0, 87.5, *[0.0] * 9])  # exp would overflow
    ref = F.softmax(logits, -1)
    x = logits.clone()
    with torch.no_grad():
        got = _softmax_few_(x)
    assert got.data_ptr() == x.data_ptr()  # in place
    assert torch.isfinite(got).all()
    assert (got - ref).abs().max() <= 1e-6
    assert (got.sum(-1) - 1).abs().max() <= 1e-6
    y = logits.clone().requires_grad_(True)
    out = _softmax_few_(y)
    assert torch.equal(out, ref) and torch.equal(y.detach(), logits)
    out[..., 0].sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    # end to end: inference (fast softmax) against the autograd run (F.softmax)
    model = _perturbed_tiny_hornet()
    views = torch.randn(1, 2, 3, 64, 96)
    in_place: list[bool] = []  # per call: the result overwrote its input (the fast path)

    def spy(t: torch.Tensor) -> torch.Tensor:
        ptr = t.data_ptr()
        res = _softmax_few_(t)
        in_place.append(res.data_ptr() == ptr)
        return res

    monkeypatch.setattr(ms_deform_attn_module, "_softmax_few_", spy)
    outs, paths = [], []
    for grad in (False, True):
        in_place.clear()
        with torch.set_grad_enabled(grad):
            outs.append(model(views, aux=False).batch_level.final)
        paths.append(set(in_place))
    assert paths == [{True}, {False}]  # every encoder layer: fast without autograd, not with
    torch.testing.assert_close(outs[0].pred_logits, outs[1].pred_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0].pred_masks, outs[1].pred_masks, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "packed", [False, pytest.param(True, marks=needs_onednn)], ids=["folded", "packed"]
)
def test_encoder_ffn_folds_its_biases(monkeypatch, packed):
    """Without autograd the deformable encoder layer's FFN computes ``relu(h + b1)`` as
    ``max(h, -b1) + b1`` with b1 carried through W2 and the residual summed into the second
    product, or (``packed``, where oneDNN is there) as two oneDNN calls with the ReLU, biases
    and the residual in their epilogues: the plain FFN's values within float rounding, also
    when most units are off (strongly negative b1) and with a batch of 2; with autograd, or
    with dropout active in training, the plain form runs."""
    monkeypatch.setenv("ENTITYSEG_ONEDNN_PACKED", "1")
    if not packed:
        monkeypatch.setattr(pixel_decoder_module, "_packed_ffn", lambda src: False)
    layer = pixel_decoder_module.DeformableEncoderLayer(
        d_model=32, d_ffn=128, n_levels=2, n_heads=4, n_points=2, dropout=0.0
    ).eval()
    torch.manual_seed(8)
    for shift in (0.0, -2.0):
        with torch.no_grad():
            layer.linear1.bias.normal_().add_(shift)
            layer.linear2.bias.normal_()
        src = torch.randn(2, 37, 32)
        ref = src + layer.linear2(F.relu(layer.linear1(src)))
        assert pixel_decoder_module._ffn_folded(layer, src) is False  # autograd on
        with torch.no_grad():
            assert pixel_decoder_module._ffn_folded(layer, src)
            got = layer._ffn_residual(src)
        assert torch.allclose(got, ref.detach(), rtol=1e-5, atol=1e-5), (got - ref).abs().max()
        assert bool(layer._packed._entries) is packed
    layer.train()
    layer.dropout.p = 0.1
    with torch.no_grad():
        assert not pixel_decoder_module._ffn_folded(layer, src)


def test_attention_bias_is_the_kernels_float_mask(monkeypatch):
    """``attention_bias``: exactly 0 / -inf where the bool mask keeps / masks (a row masked
    everywhere released; logits at and next to 0), made in place; ``_mask_for_attention``
    returns it on CPU float32 without autograd when the logits are its own (resized here, or
    ``owned``), the bool mask otherwise. The attention gives bitwise the same values with
    either mask and with the keys and values copied head-major or left strided, over several
    of the kernel's key blocks (the first ones masked for every query), and the training path
    (``nn.MultiheadAttention``) takes the float mask too."""
    from entityseg_data.model.decoder import attention_bias
    from entityseg_data.model.layers import CrossAttentionLayer
    from entityseg_data.model.layers import transformer as tr

    torch.manual_seed(6)
    logits = torch.randn(2, 5, 1100)
    logits[:, :, :600] -= 4.0  # mostly masked first blocks
    logits[0, 1] = -3.0  # masked everywhere: released
    logits[1, 2, :4] = torch.tensor([0.0, -0.0, 1e-9, -1e-9])
    maps = logits.view(2, 5, 22, 50)
    ref = _mask_for_attention(maps, None)  # not owned: the bool mask
    assert ref.dtype == torch.bool and ref.shape == (2, 5, 1100) and not ref[0, 1].any()
    assert ref[:, :, :600].float().mean() > 0.8  # (the released row counts as kept)
    expect = torch.zeros(ref.shape).masked_fill_(ref, float("-inf"))
    with torch.no_grad():
        assert _mask_for_attention(maps, None).dtype == torch.bool  # not owned
        owned = maps.clone()
        bias = _mask_for_attention(owned, None, owned=True)
        assert bias.dtype == torch.float32 and torch.equal(bias, expect)
        assert bias.data_ptr() == owned.data_ptr()  # made in place
        assert torch.equal(attention_bias(logits.clone()), expect)
        assert _mask_for_attention(maps.clone(), None, 2, owned=True).dtype == torch.bool
        resized = _mask_for_attention(maps, (11, 25))
        assert resized.dtype == torch.float32
        assert torch.equal(maps.reshape(2, 5, 1100), logits)  # the caller's logits untouched
    bool_resized = _mask_for_attention(maps, (11, 25))  # autograd on: the bool mask
    assert bool_resized.dtype == torch.bool
    assert torch.equal(resized, torch.zeros(resized.shape).masked_fill_(bool_resized, -math.inf))

    mha = torch.nn.MultiheadAttention(32, 4).eval()
    q, k, v = torch.randn(5, 2, 32), torch.randn(1100, 2, 32), torch.randn(1100, 2, 32)
    with torch.no_grad():
        fast = tr.masked_attention(mha, q, k, v, bias)
        assert torch.isfinite(fast).all()
        monkeypatch.setattr(tr, "_head_major_inputs", lambda x: False)
        plain = tr.masked_attention(mha, q, k, v, ref)
    assert torch.equal(fast, plain)
    layer = CrossAttentionLayer(d_model=32, nhead=4).train()  # nn.MultiheadAttention's path
    with torch.no_grad():
        with_bias = layer(q, k, memory_mask=bias)
        with_bool = layer(q, k, memory_mask=ref)
    assert torch.allclose(with_bias, with_bool, atol=1e-6)


def test_cross_attention_takes_a_precomputed_key():
    """The decoder hands each cross-attention layer ``memory + pos`` computed once per level:
    the same values as the layer computing the sum itself, on the fused inference path and on
    ``nn.MultiheadAttention``'s (training) path."""
    from entityseg_data.model.layers import CrossAttentionLayer

    torch.manual_seed(0)
    layer = CrossAttentionLayer(d_model=32, nhead=4)
    tgt, query_pos = torch.randn(6, 2, 32), torch.randn(6, 2, 32)
    memory, pos = torch.randn(40, 2, 32), torch.randn(40, 2, 32)
    mask = torch.rand(2, 6, 40) < 0.3
    for training in (False, True):
        layer.train(training)
        with torch.no_grad():
            own = layer(tgt, memory, memory_mask=mask, pos=pos, query_pos=query_pos)
            given = layer(
                tgt, memory, memory_mask=mask, pos=pos, query_pos=query_pos, key=memory + pos
            )
            other = layer(tgt, memory, memory_mask=mask, pos=pos, query_pos=query_pos, key=memory)
        assert torch.equal(own, given), training
        assert not torch.allclose(own, other), training  # the key given is the key used


def test_gather_table_border_is_zero_whatever_the_fresh_memory_holds():
    """The zero-bordered value table is allocated uninitialised and only its border zeroed:
    with deterministic mode on, fresh tensors are filled with NaN, so any table cell left
    unwritten would turn the samples outside the map into NaN."""
    shapes, value, ref, offsets, weights = _offsets_case(2)
    offsets[:, :, :, :, 0] = torch.tensor([-1e4, 5.0])  # far outside every level
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.no_grad():
            got = ms_deform_attn_gather_offsets(value, shapes, ref, offsets, weights)
    finally:
        torch.use_deterministic_algorithms(previous)
    normalizer = torch.tensor([[float(w), float(h)] for h, w in shapes])[:, None, :]
    loc = ref[:, :, None, :, None, :] + offsets / normalizer
    with torch.no_grad():
        expected = ms_deform_attn_grid_sample(value, shapes, loc, weights)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)


@needs_onednn
def test_deformable_attention_packed_projections(monkeypatch):
    """Without autograd on CPU float32 the deformable attention's four projections run as
    oneDNN calls on packed weights (output_proj with the skip connection in its epilogue):
    the plain projections' values within float rounding; autograd packs nothing."""
    monkeypatch.setenv("ENTITYSEG_ONEDNN_PACKED", "1")
    torch.manual_seed(9)
    attn = MSDeformAttn(d_model=64, n_levels=2, n_heads=4, n_points=2)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.2)
    shapes = [(6, 8), (3, 4)]
    s = sum(h * w for h, w in shapes)
    query, src, ref = torch.randn(2, s, 64), torch.randn(2, s, 64), torch.rand(2, s, 2, 2)
    attn(query, ref, src, shapes)
    assert not attn._packed._entries
    with torch.no_grad():
        fast = attn(query, ref, src, shapes)
        fast_res = attn(query, ref, src, shapes, residual=src)
        assert set(attn._packed._entries) == {
            "value_proj",
            "sampling_offsets",
            "attention_weights",
            "output_proj",
        }
        monkeypatch.setattr(ms_deform_attn_module, "_packed_projections", lambda proj, x: False)
        plain = attn(query, ref, src, shapes)
        plain_res = attn(query, ref, src, shapes, residual=src)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_res, plain_res, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fast_res, fast, atol=1e-2)  # the residual is in
