"""Parity with the official CropFormer outputs stored in shared/oracle (tiny seeded models).

Tolerance 1e-4 on features and logits (values O(1..6)); final masks compared by mismatch count.
Measured maxima are recorded in docs/design.md ("Model parity").
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from oracle_support import IMAGES, ORACLES, unpack_masks, views_tensor

from entityseg_data.model.inference.reference import reference_postprocess
from entityseg_data.model.inference.views import ViewGeometry

pytestmark = pytest.mark.parity
TOL = 1e-4


def _maxdiff(a: torch.Tensor, b: np.ndarray) -> float:
    assert tuple(a.shape) == b.shape, (tuple(a.shape), b.shape)
    return (a.detach().float() - torch.from_numpy(b)).abs().max().item()


def _final_outputs(res, z) -> tuple[np.ndarray, np.ndarray]:
    """(masks (Q, H, W) bool, scores (Q,)) in descending class score: the official
    post-processing (the toolkit's reference copy, model/inference/reference.py) of the model's
    batch-level outputs, with the oracle's view geometry (view 0 = full image, then its crops)."""
    h, w = (int(v) for v in z["original_hw"])
    crops = tuple(tuple(int(v) for v in c) for c in z["crop_regions_xyxy"].tolist())
    sizes = tuple(tuple(int(v) for v in hw) for hw in z["view_resized_hw"].tolist())
    geometry = ViewGeometry((h, w), ((0, 0, w, h), *crops), sizes)
    out = reference_postprocess(
        res.batch_level.final.pred_logits[0], res.batch_level.final.pred_masks[0], geometry
    )
    return out.masks, out.scores


@pytest.fixture(scope="module", autouse=True)
def oracle_threads():
    """The oracle ran with 2 intra-op threads. The tiny HorNet at test size is sensitive to the
    reduction order: with 1 thread its heads move by up to 2e-3 (attention masks flip at the 0.5
    cut), so parity is checked with the oracle's thread count whatever an earlier test left set."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(oracle_dir, oracle_model):
    """Model outputs for every oracle x image, computed once."""
    out = {}
    for sub in ORACLES:
        model, cfg, _ = oracle_model(sub)
        for img in IMAGES:
            z = np.load(oracle_dir / sub / f"{img}.npz")
            with torch.no_grad():
                res = model(
                    views_tensor(z, cfg.pixel_mean, cfg.pixel_std), aux=True, return_features=True
                )
            out[sub, img] = (res, z)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sub", list(ORACLES))
@pytest.mark.parametrize("img", IMAGES)
def test_logits_masks_association(runs, sub, img):
    res, z = runs[sub, img]
    f = res.features
    diffs = {
        "dec2d_pred_logits": _maxdiff(res.image_level.final.pred_logits[0], z["dec2d_pred_logits"]),
        "assoc_in": _maxdiff(f["assoc_in"], z["assoc_in_query_feats_2d"]),
        "assoc_out": _maxdiff(f["assoc_out"], z["assoc_out_queries_3d"]),
        "dec3d_pred_logits": _maxdiff(res.batch_level.final.pred_logits, z["dec3d_pred_logits"]),
        "dec3d_aux_pred_logits": _maxdiff(
            torch.stack([a.pred_logits for a in res.batch_level.aux]), z["dec3d_aux_pred_logits"]
        ),
        "dec3d_pred_masks": _maxdiff(res.batch_level.final.pred_masks, z["dec3d_pred_masks"]),
    }
    for k in range(2, 6):
        if f"backbone_res{k}" in z.files:
            diffs[f"res{k}"] = _maxdiff(f[f"res{k}"], z[f"backbone_res{k}"])
    for k in range(2):
        if f"pixdec_multi_scale_{k}" in z.files:
            diffs[f"multi_scale_{k}"] = _maxdiff(
                f[f"multi_scale_{k}"], z[f"pixdec_multi_scale_{k}"]
            )
    print(sub, img, json.dumps({k: f"{v:.2e}" for k, v in diffs.items()}))
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, bad
    # shapes of the typed outputs
    q = z["dec3d_pred_logits"].shape[1]
    hp, wp = (int(v) for v in z["padded_hw"])
    assert res.image_level.final.pred_masks.shape == (1, 5, q, hp // 4, wp // 4)
    assert len(res.image_level.aux) == len(res.batch_level.aux) == 3


@pytest.mark.slow  # the unit tier keeps test_fast_paths_keep_parity and the end-to-end oracle
# tests of tests/inference/test_predictor.py
def test_pixel_decoder_from_stored_backbone(oracle_dir, oracle_model):
    """The pixel decoder alone, fed the oracle's own backbone outputs (Swin image A)."""
    model, _, _ = oracle_model("tiny")
    z = np.load(oracle_dir / "tiny" / f"{IMAGES[0]}.npz")
    feats = {f"res{k}": torch.from_numpy(z[f"backbone_res{k}"]) for k in range(2, 6)}
    with torch.no_grad():
        out = model.sem_seg_head.pixel_decoder(feats)
    for k in range(2):
        assert _maxdiff(out.multi_scale[k], z[f"pixdec_multi_scale_{k}"]) <= 1e-5


def test_fast_paths_keep_parity(oracle_dir, oracle_model):
    """inference_mode + fused (SDPA) decoder attention + channels_last stay within tolerance."""
    model, cfg, _ = oracle_model("tiny")
    z = np.load(oracle_dir / "tiny" / f"{IMAGES[0]}.npz")
    x = views_tensor(z, cfg.pixel_mean, cfg.pixel_std)
    model.set_fused_attention(True)
    model.to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            res = model(x)
    finally:
        model.set_fused_attention(False)
        model.to(memory_format=torch.contiguous_format)
    assert _maxdiff(res.batch_level.final.pred_logits, z["dec3d_pred_logits"]) <= TOL
    assert _maxdiff(res.batch_level.final.pred_masks, z["dec3d_pred_masks"]) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("sub", list(ORACLES))
@pytest.mark.parametrize("img", IMAGES)
def test_inference_path_keeps_parity(oracle_dir, oracle_model, sub, img):
    """The prediction path (inference_mode, no aux heads: attention masks of the intermediate
    heads computed from resized mask features, masked attention without per-head masks, each
    MSDeformAttn level reduced over contiguous rows) against the oracle's final outputs.

    Run at 2 intra-op threads like the module's ``runs``: tiny_hornet on image A has an
    attention-mask entry so close to the cut that the official computation itself moves its
    2d logits by 7e-4 between 1 and 2 threads (measured on this code before these paths)."""
    from entityseg_data.model.runtime import intraop_threads

    model, cfg, _ = oracle_model(sub)
    z = np.load(oracle_dir / sub / f"{img}.npz")
    with intraop_threads(2), torch.inference_mode():
        res = model(views_tensor(z, cfg.pixel_mean, cfg.pixel_std), aux=False)
    assert res.batch_level.aux == [] and res.image_level.aux == []
    diffs = {
        "dec2d_pred_logits": _maxdiff(res.image_level.final.pred_logits[0], z["dec2d_pred_logits"]),
        "dec3d_pred_logits": _maxdiff(res.batch_level.final.pred_logits, z["dec3d_pred_logits"]),
        "dec3d_pred_masks": _maxdiff(res.batch_level.final.pred_masks, z["dec3d_pred_masks"]),
    }
    print(sub, img, json.dumps({k: f"{v:.2e}" for k, v in diffs.items()}))
    assert max(diffs.values()) <= TOL, diffs


@pytest.mark.slow  # every oracle x image forward (~4 CPU s quiet, 20-30 s on a busy machine)
@pytest.mark.parametrize("sub", list(ORACLES))
@pytest.mark.parametrize("img", IMAGES)
def test_final_masks_and_scores(runs, sub, img):
    res, z = runs[sub, img]
    masks, scores = _final_outputs(res, z)
    mismatch = int((masks != unpack_masks(z)).sum())
    score_diff = float(np.abs(scores - z["final_scores"]).max())
    print(sub, img, "mask pixels differing", mismatch, "score max diff", f"{score_diff:.2e}")
    assert mismatch <= 20
    assert score_diff <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("sub", list(ORACLES))
def test_default_size_final_outputs(oracle_dir, oracle_model, sub):
    """Test size 800/1333: views rebuilt with PIL bilinear (README 3.2), final masks/scores."""
    from PIL import Image

    model, cfg, _ = oracle_model(sub)
    z = np.load(oracle_dir / sub / "default_size_img_a_480x640.npz")
    img = np.asarray(Image.open(oracle_dir / "images" / "img_a_480x640.png").convert("RGB"))
    crops = z["crop_regions_xyxy"].tolist()
    regions = [img] + [img[y0:y1, x0:x1] for x0, y0, x1, y1 in crops]
    views = []
    for region, (h, w) in zip(regions, z["view_resized_hw"].tolist()):
        resized = Image.fromarray(region).resize((w, h), Image.BILINEAR)
        views.append(np.asarray(resized).transpose(2, 0, 1))
    fake = {
        "input_full_rgb_u8": views[0],
        "input_crops_rgb_u8": np.stack(views[1:]),
        "padded_hw": z["padded_hw"],
    }
    with torch.no_grad():
        res = model(views_tensor(fake, cfg.pixel_mean, cfg.pixel_std))
    # at 800 a 1e-6 difference can flip an attention-mask entry and grow (the official code
    # itself differs by 2.3e-5 between 1 and 2 threads here, README 4): looser bound
    logit_diff = _maxdiff(res.batch_level.final.pred_logits, z["dec3d_pred_logits"])
    print(sub, "default size: 3d logits max diff", f"{logit_diff:.2e}")
    assert logit_diff <= 1e-3
    masks, scores = _final_outputs(res, z)
    mismatch = int((masks != unpack_masks(z)).sum())
    print(sub, "default size: mask pixels differing", mismatch)
    score_diff = float(np.abs(scores - z["final_scores"]).max())
    print(sub, "default size: score max diff", f"{score_diff:.2e}")
    assert mismatch <= 200
    assert score_diff <= 1e-4
