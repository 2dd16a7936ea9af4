from __future__ import annotations

import numpy as np
import pytest

from entityseg_data.errors import DataError
from entityseg_data.masks import rle


def _label_map(h=37, w=53, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n + 1, size=(h, w)).astype(np.uint16)


def test_encode_decode_round_trip():
    lm = _label_map()
    for k in range(1, 7):
        m = lm == k
        r = rle.encode(m)
        assert r["size"] == [37, 53] and isinstance(r["counts"], str)
        np.testing.assert_array_equal(rle.decode(r), m.astype(np.uint8))
        assert rle.area(r) == int(m.sum())


def test_label_map_round_trip_and_fortran_views():
    lm = _label_map()
    rles = rle.label_map_to_rles(lm)
    assert sorted(rles) == [1, 2, 3, 4, 5, 6]
    for k, r in rles.items():
        assert r == rle.encode(lm == k)
    back = rle.rles_to_label_map(list(rles.values()), 37, 53, ids=list(rles))
    np.testing.assert_array_equal(back, lm)
    assert rle.overlap_pixels(list(rles.values())) == 0
    many = rle.decode_many(list(rles.values()))
    assert many.shape == (6, 37, 53)


def test_bbox_iou_polygon_and_uncompressed():
    m = np.zeros((20, 30), np.uint8)
    m[2:7, 3:13] = 1
    r = rle.encode(m)
    assert rle.bbox(r) == [3.0, 2.0, 10.0, 5.0]
    assert rle.iou_matrix([r], [r])[0, 0] == pytest.approx(1.0)
    poly = rle.to_compressed([[3, 2, 13, 2, 13, 7, 3, 7]], 20, 30)
    assert rle.area(poly) > 0
    assert rle.area(rle.to_compressed({"size": [20, 30], "counts": [600]})) == 0
    assert rle.area(rle.to_compressed({"size": [20, 30], "counts": [0, 600]})) == 600
    with pytest.raises(DataError, match="size 20x30 differs"):
        rle.check_size(r, 21, 30)
    with pytest.raises(DataError, match="height and width"):
        rle.to_compressed([[0, 0, 1, 1, 2, 2]])


def test_overlap_pixels():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.uint8)
    a[:5] = 1
    b[3:8] = 1
    assert rle.overlap_pixels([rle.encode(a), rle.encode(b)]) == 20


def test_one_pass_label_map_encoder_equals_per_mask_encoding():
    rng = np.random.default_rng(3)
    cases = [
        rng.integers(0, 301, (40, 50)),
        rng.integers(0, 2, (1, 1)),
        np.ones((5, 5)),
        np.zeros((4, 6)),
        rng.integers(0, 4, (7, 3)),
    ]
    blocks = np.zeros((300, 400), np.uint16)
    for k in range(1, 40):
        y, x = rng.integers(0, 280), rng.integers(0, 380)
        blocks[y : y + rng.integers(5, 200), x : x + rng.integers(5, 200)] = k
    for lm in [*cases, blocks]:
        lm = lm.astype(np.uint16)
        expected = {int(k): rle.encode(lm == k) for k in np.unique(lm) if k != 0}
        assert rle.label_map_to_rles(lm) == expected
    got = rle.label_map_to_rles(np.zeros((3, 4), np.uint16), ids=[1])
    assert rle.area(got[1]) == 0 and rle.size(got[1]) == (3, 4)
