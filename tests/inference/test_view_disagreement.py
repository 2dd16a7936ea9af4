"""The full-view vs crop-view disagreement of each predicted entity (selection's signal, issue
18): known values on hand-built logits, carried by postprocess into the result, the Segmenter's
entity ``extra`` and the workspace prediction file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entityseg_data.model.inference.disagreement import view_disagreement
from entityseg_data.model.inference.postprocess import PostprocessOptions, postprocess_single
from entityseg_data.model.inference.views import ViewGeometry, view_geometry

# a 32x32 image: view 0 = full (resized 32x32 -> 8x8 logit cells of 4x4 pixels), view 1 = the
# top-left 16x16 crop (resized to 32x32 -> 8x8 cells of 2x2 original pixels)
GEO = ViewGeometry((32, 32), ((0, 0, 32, 32), (0, 0, 16, 16)), ((32, 32), (32, 32)))


def _logits(full: np.ndarray, crop: np.ndarray) -> torch.Tensor:
    """(Q, 2, 8, 8) logits: +5 where the boolean masks are set, -5 elsewhere."""
    m = np.stack([full, crop], axis=1).astype(np.float32) * 10 - 5
    return torch.from_numpy(m)


def test_known_values():
    q = 3
    full = np.zeros((q, 8, 8), bool)
    crop = np.zeros((q, 8, 8), bool)
    # query 0: the top-left quadrant seen by both views (full cells [0:4, 0:4] = the crop)
    full[0, :4, :4] = True
    crop[0] = True
    # query 1: the full view sees it in the quadrant, the crop view sees nothing
    full[1, :4, :4] = True
    # query 2: the crop's left half only vs the full view's whole quadrant: IoU 1/2
    full[2, :4, :4] = True
    crop[2, :, :4] = True
    vd = view_disagreement(_logits(full, crop), GEO, [0, 1, 2])
    np.testing.assert_allclose(vd, [0.0, 1.0, 0.5], atol=1e-6)
    assert vd.dtype == np.float32
    # outside every crop: nothing to compare -> 0; no crop view -> None
    out = np.zeros((1, 8, 8), bool)
    out[0, 6:, 6:] = True
    assert view_disagreement(_logits(out, np.zeros((1, 8, 8), bool)), GEO, [0])[0] == 0.0
    assert view_disagreement(_logits(full, crop)[:, :1], GEO.select([0]), [0]) is None
    assert view_disagreement(_logits(full, crop), GEO, []).shape == (0,)


def test_postprocess_and_segmenter_extra_carry_it():
    g = torch.Generator().manual_seed(0)
    geo = view_geometry(97, 131, min_size=64, max_size=96)
    assert geo.num_views > 1
    hp = -(-max(s[0] for s in geo.resized_hw) // 32) * 32
    wp = -(-max(s[1] for s in geo.resized_hw) // 32) * 32
    low = torch.randn((12, geo.num_views, 4, 4), generator=g) * 4 - 1.5
    masks = torch.nn.functional.interpolate(low, size=(hp // 4, wp // 4), mode="bilinear")
    logits = torch.randn((12, 2), generator=g)
    res = postprocess_single(logits, masks, geo, PostprocessOptions(score_thresh=0.0))
    assert len(res) > 0 and res.view_disagreement is not None
    assert res.view_disagreement.shape == (len(res),)
    assert ((res.view_disagreement >= 0) & (res.view_disagreement <= 1)).all()
    np.testing.assert_allclose(
        res.view_disagreement, view_disagreement(masks, geo, res.query_index), atol=0
    )
    assert all("view_disagreement" in r for r in res.records())
    # the full view alone (Mask2Former-style single view) has nothing to compare
    one = postprocess_single(
        logits, masks[:, :1], geo.select([0]), PostprocessOptions(score_thresh=0.0)
    )
    assert one.view_disagreement is None and "view_disagreement" not in one.records()[0]


def test_prediction_file_carries_it(tmp_path):
    """Through the workspace writer: the prediction file's entities hold the value, and the
    selection's signal reads it back."""
    from entityseg_data.annotation.selection import prediction_signals
    from entityseg_data.catalog.predictions import prediction_masks
    from entityseg_data.model.inference.workspace_io import write_workspace_prediction
    from entityseg_data.workspace import Workspace

    g = torch.Generator().manual_seed(1)
    geo = view_geometry(40, 48, min_size=32, max_size=64)
    hp = -(-max(s[0] for s in geo.resized_hw) // 32) * 32
    wp = -(-max(s[1] for s in geo.resized_hw) // 32) * 32
    low = torch.randn((8, geo.num_views, 4, 4), generator=g) * 4
    masks = torch.nn.functional.interpolate(low, size=(hp // 4, wp // 4), mode="bilinear")
    res = postprocess_single(
        torch.randn((8, 2), generator=g), masks, geo, PostprocessOptions(score_thresh=0.0)
    )
    assert len(res) > 0
    ws = Workspace.create(tmp_path / "ws")
    with ws.catalog() as cat:
        iid = cat.add_image(sha256="a" * 64, source="t", source_id="0", width=48, height=40)
    write_workspace_prediction(ws, iid, res, "m:1")
    with ws.catalog() as cat:
        rec = cat.latest_prediction(iid)
    m = prediction_masks(ws.root, rec)
    got = [e.extra["view_disagreement"] for e in m.entities]
    np.testing.assert_allclose(got, res.view_disagreement, atol=1e-6)
    sig = prediction_signals(m)
    areas = res.areas.astype(float)
    want = float((res.view_disagreement * areas).sum() / areas.sum())
    assert sig.view_disagreement == pytest.approx(want, abs=1e-5)


def test_segmenter_entities_carry_it(oracle_dir):
    """The tiny oracle CropFormer at a small view size: every entity of ``segment`` has its
    view disagreement in ``extra`` (the Segmenter protocol the workspace's predictions use)."""
    from PIL import Image

    from entityseg_data.model.inference.predictor import EntitySegmenter

    torch.set_num_threads(1)
    seg = EntitySegmenter.from_pretrained(
        oracle_dir / "tiny" / "weights.npz",
        preset="tiny_swin",
        min_size=96,
        max_size=160,
        score_thresh=0.0,
        min_area=0,
    )
    arr = np.asarray(Image.open(oracle_dir / "images" / "img_b_600x400.png").convert("RGB"))
    masks = seg.segment(arr)
    assert len(masks) > 0
    vd = [e.extra["view_disagreement"] for e in masks.entities]
    assert all(0.0 <= v <= 1.0 for v in vd) and len(set(vd)) > 1
