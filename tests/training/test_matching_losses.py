"""Hand-built cases for point sampling, the two Hungarian matchers and the set criterion."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from entityseg_data.model.training.config import LossConfig
from entityseg_data.model.training.losses import ImageTarget, SetCriterion, total_loss
from entityseg_data.model.training.matcher import (
    HungarianMatcher,
    ViewHungarianMatcher,
    assign,
    sanitize,
)
from entityseg_data.model.training.point_sample import (
    point_sample,
    sample_unpadded,
    uncertain_point_coords,
)

L = 40.0  # logit magnitude of a confident prediction


def _blocks(h: int, w: int) -> torch.Tensor:
    """Three large disjoint rectangles (N=3, h, w) bool."""
    m = torch.zeros(3, h, w, dtype=torch.bool)
    m[0, : h // 2, : w // 2] = True
    m[1, : h // 2, w // 2 :] = True
    m[2, h // 2 :, :] = True
    return m


def _pred_from(masks: torch.Tensor, order: list[int], q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries order[i] predict entity i confidently; the others predict no-object, empty mask."""
    _, h, w = masks.shape
    logits = torch.tensor([-L, L]).repeat(q, 1)
    pm = torch.full((q, h, w), -L)
    for i, qi in enumerate(order):
        logits[qi] = torch.tensor([L, -L])
        pm[qi] = torch.where(masks[i], L, -L)
    return logits, pm


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_point_sample_unpadded_equals_padded():
    g = _gen(1)
    masks = torch.rand(4, 37, 53, generator=g) > 0.5
    pad = (64, 96)
    padded = torch.zeros(4, *pad)
    padded[:, :37, :53] = masks.float()
    coords = torch.rand(500, 2, generator=g)
    ref = point_sample(padded[:, None], coords[None].expand(4, -1, -1))[:, 0]
    got = sample_unpadded(masks, coords, pad)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=0)
    # per-mask coordinates
    c2 = torch.rand(4, 300, 2, generator=g)
    ref2 = point_sample(padded[:, None], c2)[:, 0]
    torch.testing.assert_close(sample_unpadded(masks, c2, pad), ref2, atol=2e-5, rtol=0)


def test_point_sample_align_corners_false():
    img = torch.arange(4.0).reshape(1, 1, 2, 2)  # [[0,1],[2,3]]
    # pixel centres of a 2x2 image are at normalised 0.25 / 0.75 (align_corners=False)
    pts = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]])
    assert point_sample(img, pts)[0, 0].tolist() == [0.0, 1.0, 2.0, 1.5]


def test_uncertain_points_prefer_boundary():
    logits = torch.full((1, 1, 32, 32), -10.0)
    logits[..., 12:20, 12:20] = 10.0
    logits[..., 8:24, :] = 0.0  # a maximally uncertain band covering half the image
    coords = uncertain_point_coords(logits, 400, 3.0, 0.75, _gen(3))
    assert coords.shape == (1, 400, 2)
    vals = point_sample(logits, coords)[0, 0]
    assert vals[:300].abs().max() < 1e-6  # the 300 importance points are all in the band
    assert vals[300:].abs().mean() > 3  # the 100 uniform ones mostly are not


@pytest.mark.parametrize("order", [[0, 1, 2], [4, 0, 2], [2, 3, 1]])
def test_image_level_matcher_perfect_and_permuted(order):
    gt = _blocks(64, 64)
    logits, pm = _pred_from(gt, order, q=5)
    pm16 = torch.nn.functional.interpolate(pm[None], size=(16, 16), mode="nearest")[0]
    rows, cols = HungarianMatcher(num_points=2000).match(logits, pm16, gt, (64, 64), _gen())
    got = dict(zip(cols.tolist(), rows.tolist()))
    assert got == {i: q for i, q in enumerate(order)}


def test_view_matcher_equals_image_matcher_with_one_view():
    g = _gen(5)
    gt = torch.rand(4, 48, 40, generator=g) > 0.6
    logits = torch.randn(7, 2, generator=g)
    pm = torch.randn(7, 16, 16, generator=g) * 3
    pad = (64, 64)
    coords = torch.rand(1000, 2, generator=g)
    c2 = HungarianMatcher().cost_matrix(logits, pm, gt, pad, coords)
    c3 = ViewHungarianMatcher().cost_matrix(logits, pm[:, None], [gt], pad, coords)
    torch.testing.assert_close(c3, c2)
    m2 = HungarianMatcher(num_points=1000).match(logits, pm, gt, pad, _gen(9))
    m3 = ViewHungarianMatcher(num_points=1000).match(logits, pm[:, None], [gt], pad, _gen(9))
    assert [x.tolist() for x in m2] == [x.tolist() for x in m3]


def test_view_matcher_uses_all_views_jointly():
    """Two queries agree with the GT in one view each; the joint cost picks the one agreeing in
    the view where the GT is larger, which a single-view matcher on view 0 would not."""
    gt0 = torch.zeros(1, 32, 32, dtype=torch.bool)
    gt0[0, :4, :4] = True  # small in view 0
    gt1 = torch.zeros(1, 32, 32, dtype=torch.bool)
    gt1[0, :, :16] = True  # large in view 1
    logits = torch.tensor([[L, -L], [L, -L]])
    pm = torch.full((2, 2, 8, 8), -L)
    pm[0, 0, :1, :1] = L  # query 0: right in view 0, empty in view 1
    pm[1, 1, :, :4] = L  # query 1: empty in view 0, right in view 1
    rows, _ = ViewHungarianMatcher(num_points=4000).match(logits, pm, [gt0, gt1], (32, 32), _gen())
    assert rows.tolist() == [1]
    rows2, _ = HungarianMatcher(num_points=4000).match(logits, pm[:, 0], gt0, (32, 32), _gen())
    assert rows2.tolist() == [0]


def test_sanitize_nan_inf():
    c = torch.tensor([[float("nan"), 1.0], [float("inf"), 0.5], [2.0, -float("inf")]])
    s = sanitize(c)
    assert torch.isfinite(s).all()
    rows, cols = assign(c)
    assert len(rows) == 2 and sorted(cols.tolist()) == [0, 1]


def _outputs_2d(logits, masks, aux=0):
    lp = SimpleNamespace(pred_logits=logits, pred_masks=masks)
    dec = SimpleNamespace(final=lp, aux=[lp] * aux)
    return SimpleNamespace(image_level=dec, batch_level=None)


def _cfg(**kw):
    base = dict(num_points=4096)
    base.update(kw)
    return LossConfig(**base)


@pytest.mark.slow
def test_perfect_prediction_zero_mask_loss_identity_matching():
    """The only residual is the 1-px bilinear band on mask edges (labels in (0, 1) there)."""
    s = 512
    gt = _blocks(s, s)
    logits, pm = _pred_from(gt, [0, 1, 2], q=6)
    pm = pm.clamp(-8, 8)
    tgt = ImageTarget(masks=[gt], valid=torch.ones(3, 1, dtype=torch.bool))
    out = _outputs_2d(logits[None, None], pm[None, None])
    crit = SetCriterion(config=_cfg(importance_sample_ratio=0.0, oversample_ratio=1.0))
    terms = crit(out, [tgt], (s, s), [_gen()])
    assert terms["loss_mask_2d"].item() / 5 < 0.01
    assert terms["loss_dice_2d"].item() / 5 < 0.01
    assert terms["loss_ce_2d"].item() < 1e-6
    rows, cols = crit.matcher.match(logits, pm, gt, (s, s), _gen())
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [0, 1, 2]
    # default importance sampling concentrates on the boundary band; dice stays ~0
    terms = SetCriterion(config=_cfg())(out, [tgt], (s, s), [_gen()])
    assert terms["loss_dice_2d"].item() / 5 < 0.01
    # a wrong (inverted masks) prediction is far worse
    bad = -pm
    bad_terms = SetCriterion(config=_cfg())(
        _outputs_2d(logits[None, None], bad[None, None]), [tgt], (s, s), [_gen()]
    )
    assert bad_terms["loss_mask_2d"] > 50 * terms["loss_mask_2d"]


def test_ce_no_object_weight():
    q = 4
    logits = torch.zeros(1, 1, q, 2)  # uniform: CE = ln 2 for every query
    gt = torch.zeros(0, 16, 16, dtype=torch.bool)
    tgt = ImageTarget(masks=[gt], valid=torch.zeros(0, 1, dtype=torch.bool))
    out = _outputs_2d(logits, torch.zeros(1, 1, q, 4, 4, requires_grad=True))
    terms = SetCriterion(config=_cfg())(out, [tgt], (16, 16), [_gen()])
    assert terms["loss_ce_2d"].item() == pytest.approx(2.0 * 0.6931, abs=1e-3)
    assert terms["loss_mask_2d"].item() == 0.0
    # one matched query with logit favouring entity: weighted mean with weights 1 / 0.1
    gt = _blocks(16, 16)[:1]
    tgt = ImageTarget(masks=[gt], valid=torch.ones(1, 1, dtype=torch.bool))
    logits = torch.zeros(1, 1, q, 2)
    logits[0, 0, 2] = torch.tensor([2.0, 0.0])
    pm = torch.full((1, 1, q, 4, 4), -5.0)
    pm[0, 0, 2] = torch.where(gt[0, ::4, ::4], 5.0, -5.0)
    terms = SetCriterion(config=_cfg(class_weight=1.0))(
        _outputs_2d(logits, pm), [tgt], (16, 16), [_gen()]
    )
    ce_matched = torch.nn.functional.cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    expected = (ce_matched + 3 * 0.1 * 0.6931471805599453) / (1 + 3 * 0.1)
    assert terms["loss_ce_2d"].item() == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.slow
def test_deep_supervision_keys_and_weights():
    gt = _blocks(32, 32)
    logits, pm = _pred_from(gt, [0, 1, 2], q=4)
    pm8 = torch.nn.functional.interpolate(pm[None], size=(8, 8))[0]
    tgt = ImageTarget(masks=[gt, gt], valid=torch.ones(3, 2, dtype=torch.bool))
    lp2 = SimpleNamespace(
        pred_logits=logits[None, None].repeat(1, 2, 1, 1),
        pred_masks=pm8[None, None].repeat(1, 2, 1, 1, 1),
    )
    lp3 = SimpleNamespace(
        pred_logits=logits[None], pred_masks=pm8[None, :, None].repeat(1, 1, 2, 1, 1)
    )
    out = SimpleNamespace(
        image_level=SimpleNamespace(final=lp2, aux=[lp2, lp2]),
        batch_level=SimpleNamespace(final=lp3, aux=[lp3, lp3]),
    )
    terms = SetCriterion(config=_cfg())(out, [tgt], (32, 32), [_gen()])
    expected = {
        f"loss_{n}{s}_{d}"
        for n in ("ce", "mask", "dice")
        for s in ("", "_0", "_1")
        for d in ("2d", "3d")
    }
    assert set(terms) == expected
    # ce_2d is x0.5 x 2 = 1.0 x raw ce, ce_3d is 2 x raw ce; same logits -> ratio 2
    assert terms["loss_ce_3d"].item() == pytest.approx(2 * terms["loss_ce_2d"].item(), rel=1e-5)
    no_ds = SetCriterion(config=_cfg(deep_supervision=False))(out, [tgt], (32, 32), [_gen()])
    assert set(no_ds) == {f"loss_{n}_{d}" for n in ("ce", "mask", "dice") for d in ("2d", "3d")}
    assert torch.isfinite(total_loss(terms))


@pytest.mark.slow
def test_num_masks_3d_not_multiplied_by_views():
    """3D mask losses sum over views but divide by N: two identical views ~double the loss;
    2D losses divide by the valid (entity, view) count so they stay the same."""
    g = _gen(11)
    gt = _blocks(32, 32)
    logits = torch.randn(4, 2, generator=g)
    pm = torch.randn(4, 8, 8, generator=g)

    def run(v):
        lp2 = SimpleNamespace(
            pred_logits=logits[None, None].repeat(1, v, 1, 1),
            pred_masks=pm[None, None].repeat(1, v, 1, 1, 1),
        )
        lp3 = SimpleNamespace(
            pred_logits=logits[None], pred_masks=pm[None, :, None].repeat(1, 1, v, 1, 1)
        )
        out = SimpleNamespace(
            image_level=SimpleNamespace(final=lp2, aux=[]),
            batch_level=SimpleNamespace(final=lp3, aux=[]),
        )
        tgt = ImageTarget(masks=[gt] * v, valid=torch.ones(3, v, dtype=torch.bool))
        return SetCriterion(
            config=_cfg(num_points=20000, importance_sample_ratio=0.0, oversample_ratio=1.0)
        )(out, [tgt], (32, 32), [_gen(1)])

    one, two = run(1), run(2)
    assert two["loss_mask_3d"].item() == pytest.approx(2 * one["loss_mask_3d"].item(), rel=0.05)
    assert two["loss_dice_3d"].item() == pytest.approx(2 * one["loss_dice_3d"].item(), rel=0.05)
    assert two["loss_mask_2d"].item() == pytest.approx(one["loss_mask_2d"].item(), rel=0.05)


def test_invalid_entities_kept_in_3d_targets():
    gt = _blocks(16, 16)
    valid = torch.tensor([[True, False], [False, False], [True, True]])
    tgt = ImageTarget(masks=[gt, gt], valid=valid)
    crit = SetCriterion(config=_cfg())
    views = crit._targets_3d(tgt)
    assert [v.shape[0] for v in views] == [3, 3]
    assert not views[1][0].any() and not views[0][1].any() and views[0][0].any()
    views = SetCriterion(config=_cfg(keep_invalid_3d=False))._targets_3d(tgt)
    assert [v.shape[0] for v in views] == [2, 2]


def test_gradients_flow_and_fp32_under_autocast():
    gt = _blocks(32, 32)
    logits = torch.randn(1, 1, 5, 2, requires_grad=True)
    pm = torch.randn(1, 1, 5, 8, 8, requires_grad=True)
    tgt = ImageTarget(masks=[gt], valid=torch.ones(3, 1, dtype=torch.bool))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = SetCriterion(config=_cfg())(
            _outputs_2d(logits.bfloat16(), pm.bfloat16()), [tgt], (32, 32), [_gen()]
        )
        loss = total_loss(terms)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad.abs().sum() > 0 and pm.grad.abs().sum() > 0
