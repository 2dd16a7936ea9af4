"""Boundary bands: both fast methods equal the official iterated-erosion definition."""

from __future__ import annotations

import numpy as np
import pytest

from entityseg_data.evaluation import boundary as B
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks import runs as R


def _scene(rng, h, w, k):
    lm = np.zeros((h, w), np.int32)
    for i in range(k):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = y0 + rng.integers(1, h), x0 + rng.integers(1, w)
        lm[y0:y1, x0:x1] = i + 1
        if rng.random() < 0.5:  # ragged edges and holes
            lm[(lm == i + 1) & (rng.random((h, w)) < 0.03)] = 0
    return [(lm == i + 1).astype(np.uint8) for i in range(k)]


def test_band_width_official_rounding():
    assert B.band_width(2700, 4000) == round(0.02 * (2700**2 + 4000**2) ** 0.5) == 97
    assert B.band_width(10, 10) == 1  # at least one pixel
    assert B.band_width(45, 60) == 2  # 1.5 rounds half to even (Python round, official tool)
    assert B.band_width(75, 100) == 2  # 2.5 -> 2


@pytest.mark.parametrize("seed", range(4))
def test_bands_equal_iterated_erosion(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(3, 70, 2))
        d = int(rng.integers(1, 8)) if rng.random() < 0.5 else B.band_width(h, w)
        masks = _scene(rng, h, w, int(rng.integers(1, 6)))
        rles = [rle_utils.encode(m) for m in masks]
        ref = [B.reference_band(m, d) for m in masks]
        for method in ("mask", "labelmap", "auto"):
            got = B.bands(rles, h, w, d, disjoint=True, method=method)
            for g, r in zip(got, ref):
                assert np.array_equal(rle_utils.decode(g), r), (h, w, d, method)


def test_bands_large_image_blocked_transpose():
    # > 65536 pixels: exercises the tiled transpose and the label-map path on a real size
    rng = np.random.default_rng(5)
    h, w = 300, 410
    masks = _scene(rng, h, w, 6)
    d = B.band_width(h, w)
    rles = [rle_utils.encode(m) for m in masks]
    for method in ("mask", "labelmap"):
        got = B.bands(rles, h, w, d, disjoint=True, method=method)
        for g, m in zip(got, masks):
            assert np.array_equal(rle_utils.decode(g), B.reference_band(m, d)), method


def test_overlapping_masks_use_per_mask_bands():
    h, w = 40, 50
    a = np.zeros((h, w), np.uint8)
    a[5:30, 5:40] = 1
    b = np.zeros((h, w), np.uint8)
    b[10:40, 20:50] = 1  # overlaps a, touches the border
    rles = [rle_utils.encode(a), rle_utils.encode(b)]
    got = B.bands(rles, h, w, 3, disjoint=False)
    assert np.array_equal(rle_utils.decode(got[0]), B.reference_band(a, 3))
    assert np.array_equal(rle_utils.decode(got[1]), B.reference_band(b, 3))
    with pytest.raises(ValueError):
        B.bands(rles, h, w, 3, method="labelmap")


def test_tiny_mask_is_its_own_band():
    m = np.zeros((50, 50), np.uint8)
    m[10:14, 20 : 60 - 20] = 1
    r = rle_utils.encode(m)
    assert B.bands([r], 50, 50, 2)[0] == r  # 4 px high <= 2d: no interior


def test_runs_roundtrip():
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        r = rle_utils.encode(m)
        assert rle_utils.counts(r).sum() == h * w
        rr = rle_utils.runs(r)
        x0, x1 = R.column_range(rr, h)
        if x1 > x0:
            blk = R.decode_columns(rr, h, x0, x1)
            assert np.array_equal(blk, m.T[x0:x1])
            assert rle_utils.from_runs(R.columns_to_runs(blk, x0, h), h, w) == r
        lm = rng.integers(0, 4, (h, w))
        flat = np.ascontiguousarray(lm.T).reshape(-1)
        for k, v in rle_utils.flat_label_map_to_rles(flat, h, w, [0, 1, 2, 3, 9]).items():
            assert v["counts"] == rle_utils.encode(lm == k)["counts"]
