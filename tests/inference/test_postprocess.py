"""Memory-bounded fusion/post-processing against the oracle and the full-resolution reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_helpers import PAIRS, load_pair, unpack_masks

from entityseg_data.errors import ConfigError
from entityseg_data.model.inference import fusion
from entityseg_data.model.inference.postprocess import (
    PostprocessOptions,
    postprocess_batch,
    postprocess_single,
)
from entityseg_data.model.inference.reference import reference_fused_probs, reference_postprocess
from entityseg_data.model.inference.views import ViewGeometry, view_geometry

ALL = dict(score_thresh=0.0, min_area=0, max_entities=None)
UNIT_PAIRS = {("tiny", "img_b_600x400"), ("tiny_hornet", "img_a_480x640")}


def oracle_geometry(d) -> ViewGeometry:
    h, w = (int(x) for x in d["original_hw"])
    crops = tuple(tuple(int(v) for v in b) for b in d["crop_regions_xyxy"])
    sizes = tuple(tuple(int(v) for v in s) for s in d["view_resized_hw"])
    return ViewGeometry((h, w), ((0, 0, w, h), *crops), sizes)


def compare_with(ref_masks, ref_scores, ref_query, result, score_tol=1e-5):
    """(mismatching pixels, max score difference) of a result against official rows."""
    by_query = {int(q): i for i, q in enumerate(result.query_index)}
    mismatch, worst = 0, 0.0
    for row, q in enumerate(ref_query):
        ref = ref_masks[row]
        if q in by_query:
            i = by_query[int(q)]
            mismatch += int((result.mask(i + 1) != ref).sum())
            worst = max(worst, abs(float(result.scores[i]) - float(ref_scores[row])))
        else:
            mismatch += int(ref.sum())
    return mismatch, worst


@pytest.mark.parity
@pytest.mark.parametrize(
    # 61 px tiles on the oracle captures: slow tier; the unit tier fuses small tiles (23 and 37 px,
    # one query per chunk, two workers) on random logits against the full-resolution reference
    "tile",
    [512, pytest.param(61, marks=pytest.mark.slow)],
)
def test_reference_mode_reproduces_the_oracle(oracle_pair, tile):
    d = oracle_pair
    geo = oracle_geometry(d)
    opts = PostprocessOptions(score_mode="reference", tile=tile, **ALL)
    res = postprocess_single(
        torch.from_numpy(d["dec3d_pred_logits"][0]),
        torch.from_numpy(d["dec3d_pred_masks"][0]),
        geo,
        opts,
    )
    masks = unpack_masks(d)
    mismatch, worst = compare_with(masks, d["final_scores"], d["final_query_index"], res)
    # README 4: a count of mismatching pixels near the 0.5 cut; we get none on these captures
    assert mismatch <= 5
    assert worst <= 1e-5
    nonempty = masks.reshape(len(masks), -1).any(1)
    assert len(res) == int(nonempty.sum())
    assert sorted(res.query_index.tolist()) == sorted(d["final_query_index"][nonempty].tolist())
    # class scores of the kept rows equal the official sorted class scores
    cls = dict(zip(d["final_query_index"].tolist(), d["final_class_scores_sorted"].tolist()))
    np.testing.assert_allclose(res.class_scores, [cls[int(q)] for q in res.query_index], atol=1e-6)
    # ids are 1..N by descending score and the map is the union of the official masks
    assert np.all(np.diff(res.scores) <= 0)
    assert res.label_map.dtype == np.uint16
    assert ((res.label_map > 0) == masks.any(0)).mean() > 0.9999
    assert res.areas.tolist() == [int((res.label_map == i + 1).sum()) for i in range(len(res))]


@pytest.mark.parity
@pytest.mark.parametrize(
    # each model and each image once in the unit tier, the other two pairs in the slow tier
    "oracle_pair",
    [
        pytest.param(p, id=f"{p[0]}-{p[1]}", marks=[] if p in UNIT_PAIRS else pytest.mark.slow)
        for p in PAIRS
    ],
    indirect=True,
)
def test_reference_reimplementation_is_bitwise_on_masks(oracle_pair):
    d = oracle_pair
    ref = reference_postprocess(
        torch.from_numpy(d["dec3d_pred_logits"][0]),
        torch.from_numpy(d["dec3d_pred_masks"][0]),
        oracle_geometry(d),
    )
    np.testing.assert_array_equal(ref.masks, unpack_masks(d))
    np.testing.assert_array_equal(ref.query_index, d["final_query_index"])
    np.testing.assert_allclose(ref.scores, d["final_scores"], atol=1e-6)
    np.testing.assert_array_equal(ref.class_scores, d["final_class_scores_sorted"])


def _random_case(seed, h, w, q=12, grid=((0.7, 0.6))):
    g = torch.Generator().manual_seed(seed)
    geo = view_geometry(h, w, min_size=64, max_size=96, side_ratio=grid[0], stride_ratio=grid[1])
    hp = -(-max(s[0] for s in geo.resized_hw) // 32) * 32
    wp = -(-max(s[1] for s in geo.resized_hw) // 32) * 32
    # smooth blobs: low-frequency noise, mostly negative
    low = torch.randn((q, geo.num_views, 4, 4), generator=g) * 4 - 1.5
    masks = torch.nn.functional.interpolate(low, size=(hp // 4, wp // 4), mode="bilinear")
    logits = torch.randn((q, 2), generator=g)
    return logits, masks, geo


@pytest.mark.parametrize(
    "seed,h,w,grid",
    [
        (0, 97, 131, (0.7, 0.6)),
        (1, 150, 61, (0.7, 0.6)),
        (2, 80, 200, ((0.7, 0.4), (0.6, 0.25))),
        (3, 64, 64, (0.5, 0.25)),
    ],
)
def test_tiled_equals_reference_on_random_logits(seed, h, w, grid):
    logits, masks, geo = _random_case(seed, h, w, grid=grid)
    ref = reference_postprocess(logits, masks, geo)
    for tile, budget in [(512, 256.0), (23, 0.001)]:  # one query per chunk in the second case
        res = postprocess_single(
            logits,
            masks,
            geo,
            PostprocessOptions(score_mode="reference", tile=tile, tile_budget_mb=budget, **ALL),
        )
        mismatch, worst = compare_with(ref.masks, ref.scores, ref.query_index, res)
        assert mismatch == 0 and worst < 1e-5


def test_a_fully_claimed_tile_skips_the_remaining_candidates(monkeypatch):
    """Once every pixel of a tile is taken, the later (lower-priority) candidates cannot win
    any of it: the tile stops there, and the result is still the reference's."""
    logits, masks, geo = _random_case(11, 97, 131, q=12)
    masks[0] = 8.0  # candidate 0 covers the whole image in every view...
    logits[0] = torch.tensor([10.0, -10.0])  # ...and comes first
    calls: list[int] = []
    fused = fusion._fused_tile

    def spy(masks_, ids, *a, **k):
        calls.append(int(ids[0]))
        return fused(masks_, ids, *a, **k)

    monkeypatch.setattr(fusion, "_fused_tile", spy)
    tile = 23
    opts = PostprocessOptions(  # one candidate per chunk
        score_mode="reference", tile=tile, tile_budget_mb=0.001, **ALL
    )
    res = postprocess_single(logits, masks, geo, opts)
    tiles = -(-97 // tile) * -(-131 // tile)
    assert calls == [0] * tiles  # one chunk per tile: candidate 0's
    ref = reference_postprocess(logits, masks, geo)
    mismatch, worst = compare_with(ref.masks, ref.scores, ref.query_index, res)
    assert mismatch == 0 and worst < 1e-5
    assert res.query_index.tolist() == [0] and res.areas.tolist() == [97 * 131]


@pytest.mark.parametrize("m2f", [False, True])
def test_parallel_tiles_give_the_same_result(m2f, monkeypatch):
    """Tiles fused by 2 worker threads (ops on one thread each) give exactly the one-worker
    result: the reduction runs in tile order whatever the number of workers."""
    logits, masks, geo = _random_case(5, 150, 190, q=10)
    if m2f:
        masks, geo = masks[:, :1], geo.select([0])
    # a budget of 3 queries per chunk: the chunks (hence every op's shape) must not depend on
    # the number of workers either (1-ulp score differences between 1 and 2 threads otherwise)
    opts = PostprocessOptions(
        score_mode="reference", tile=37, tile_budget_mb=3 * 37 * 37 * 20 / 2**20, **ALL
    )
    chunks: dict[int, list[int]] = {1: [], 2: []}
    fused = fusion._fused_tile

    def spy(masks_, ids, *a, **k):
        chunks[workers].append(int(ids.numel()))
        return fused(masks_, ids, *a, **k)

    monkeypatch.setattr(fusion, "_fused_tile", spy)
    before = torch.get_num_threads()
    workers = 1
    one = postprocess_single(logits, masks, geo, opts, mask2former=m2f, workers=1)
    workers = 2
    two = postprocess_single(logits, masks, geo, opts, mask2former=m2f, workers=2)
    assert max(chunks[1]) == 3 and sorted(chunks[1]) == sorted(chunks[2])
    assert torch.get_num_threads() == before  # the intra-op count is restored
    assert len(one) > 1
    np.testing.assert_array_equal(one.label_map, two.label_map)
    np.testing.assert_array_equal(one.scores, two.scores)
    np.testing.assert_array_equal(one.boxes, two.boxes)
    np.testing.assert_array_equal(one.areas, two.areas)
    np.testing.assert_array_equal(one.mask_quality, two.mask_quality)


@pytest.mark.slow
def test_decoder_choices_match_the_reference_on_view_subsets(oracle_dir):
    """On the oracle's outputs (600x400, 16 queries; the unit tier runs the same checks on a
    90x120 random case below)."""
    d = load_pair(oracle_dir, "tiny_hornet", "img_b_600x400")
    check_decoder_choices(
        torch.from_numpy(d["dec3d_pred_logits"]),  # (1, Q, 2)
        torch.from_numpy(d["dec3d_pred_masks"]),  # (1, Q, V, h, w)
        torch.from_numpy(d["dec2d_pred_logits"])[None],  # (1, V, Q, 2)
        oracle_geometry(d),
    )


def test_decoder_choices_match_the_reference_on_view_subsets_small():
    logits, masks, geo = _random_case(7, 90, 120, q=16)
    assert geo.num_views == 5  # the full view and 4 crops, like the oracle's
    g = torch.Generator().manual_seed(8)
    img_logits = torch.randn((1, geo.num_views, logits.shape[0], 2), generator=g)
    check_decoder_choices(logits[None], masks[None], img_logits, geo)


def check_decoder_choices(logits, masks, img_logits, geo) -> None:
    """Each ``decoder`` choice of postprocess_batch equals the reference on its views/level."""
    img_masks = masks.transpose(1, 2)  # stand-in image-level masks (1, V, Q, h, w)

    from entityseg_data.model.outputs import DecoderOutput, LevelPrediction, ModelOutput

    out = ModelOutput(
        image_level=DecoderOutput(LevelPrediction(img_logits, img_masks)),
        batch_level=DecoderOutput(LevelPrediction(logits, masks)),
    )
    cases = {
        "crops_only": (logits[0], masks[0][:, 1:], geo.select([1, 2, 3, 4])),
        "full_only": (logits[0], masks[0][:, :1], geo.select([0])),
        "image_full_only": (img_logits[0, 0], masks[0][:, :1], geo.select([0])),
        "batch_full_crops": (logits[0], masks[0], geo),
    }
    for decoder, (lg, mk, g) in cases.items():
        ref = reference_postprocess(lg, mk, g)
        (res,) = postprocess_batch(
            out, [geo], PostprocessOptions(decoder=decoder, score_mode="reference", **ALL)
        )
        mismatch, worst = compare_with(ref.masks, ref.scores, ref.query_index, res)
        assert mismatch == 0 and worst < 1e-5, decoder
    # Mask2Former: no batch level -> single view, top-k, logits > 0
    m2f = ModelOutput(image_level=out.image_level, batch_level=None)
    ref = reference_postprocess(
        img_logits[0, 0], masks[0][:, :1], geo.select([0]), mask2former=True, topk=10
    )
    (res,) = postprocess_batch(
        m2f, [geo], PostprocessOptions(score_mode="reference", mask2former_topk=10, **ALL)
    )
    mismatch, worst = compare_with(ref.masks, ref.scores, ref.query_index, res)
    assert mismatch == 0 and worst < 1e-5
    assert set(res.query_index.tolist()) <= set(ref.query_index.tolist())
    assert len(ref.query_index) == 10


def test_calibrated_scores_and_filters():
    logits, masks, geo = _random_case(5, 90, 120, q=16)
    fused = reference_fused_probs(masks, geo).numpy()
    s = logits.softmax(-1)[:, 0].numpy()
    res = postprocess_single(logits, masks, geo, PostprocessOptions(**ALL))
    assert res.score_mode == "calibrated" and len(res) > 3
    for i in range(len(res)):
        m = res.mask(i + 1)
        q = int(res.query_index[i])
        assert res.mask_quality[i] == pytest.approx(fused[q][m].mean(), abs=1e-5)
        assert res.scores[i] == pytest.approx(s[q] * fused[q][m].mean(), abs=1e-5)
        assert res.areas[i] == m.sum()
        ys, xs = np.nonzero(m)
        assert res.boxes[i].tolist() == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
    # filters: thresholds drop entities and leave their pixels empty; ids stay 1..N
    cut = float(np.median(res.scores))
    area_cut = int(np.median(res.areas))
    f = postprocess_single(
        logits, masks, geo, PostprocessOptions(score_thresh=cut, min_area=area_cut)
    )
    keep = (res.scores >= cut) & (res.areas >= area_cut)
    assert f.query_index.tolist() == res.query_index[keep].tolist()
    assert int(f.label_map.max()) == len(f)
    assert (f.label_map > 0).sum() == res.areas[keep].sum()
    top = postprocess_single(logits, masks, geo, PostprocessOptions(max_entities=2))
    assert top.query_index.tolist() == res.query_index[:2].tolist()
    with pytest.raises(ConfigError):
        PostprocessOptions(decoder="nope")
