"""Shape measures on shapes with known values, and the RLE run-length decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.measure import perimeter_crofton

from entityseg_data.masks import rle as rle_utils
from entityseg_data.stats.measures import (
    convex_hull_areas,
    crofton_perimeters,
    label_map_t,
    mask_measures,
    rle_counts,
    rle_measures,
)
from entityseg_data.synthetic import make_scene


def disk(r: float, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    return (yy - c) ** 2 + (xx - c) ** 2 <= r * r


@pytest.mark.parametrize("r", [50, 200, 600])
def test_disk_is_simple_and_convex(r):
    m = mask_measures(disk(r, 2 * r + 11))
    assert abs(m["simplicity"] - 1) < 0.01
    # the hull of the pixel squares is about a disk of radius r + 0.5: ratio ~ 1 - 1/r
    assert 1 - 1.5 / r < m["convexity"] <= 1.0
    assert abs(m["perimeter"] - 2 * math.pi * r) / (2 * math.pi * r) < 0.01


def test_rectangle_closed_forms():
    a, b = 5, 10  # rows, cols
    mask = np.zeros((9, 14), np.uint8)
    mask[2 : 2 + a, 3 : 3 + b] = 1
    m = mask_measures(mask)
    # crossings: 2 per row, 2 per column, 2 per diagonal line (a + b - 1 of them, each way)
    expected_p = math.pi / 8 * (2 * a + 2 * b + 4 * (a + b - 1) / math.sqrt(2))
    assert m["area"] == 50
    assert m["convex_area"] == pytest.approx(50.0)  # hull of pixel squares = the rectangle
    assert m["convexity"] == pytest.approx(1.0)
    assert m["perimeter"] == pytest.approx(expected_p)
    assert m["simplicity"] == pytest.approx(math.sqrt(4 * math.pi * 50) / expected_p)


def test_l_shape_hull_and_single_pixel_line():
    lm = np.zeros((10, 20), np.uint16)
    lm[5:10, :] = 1
    lm[0:5, 10:20] = 1
    # hull corners (10,0) (20,0) (20,10) (0,10) (0,5): full 200 minus a 10x5/2 triangle
    assert convex_hull_areas(lm, 1)[1] == pytest.approx(175.0)
    line = np.zeros((3, 30), np.uint8)
    line[1, 2:27] = 1
    m = mask_measures(line)
    assert m["convex_area"] == pytest.approx(25.0) and m["convexity"] == pytest.approx(1.0)
    assert m["simplicity"] < 0.4


def test_ring_convexity():
    outer, inner = disk(100, 211), disk(60, 211)
    ring = outer & ~inner
    m = mask_measures(ring)
    assert m["convexity"] == pytest.approx(1 - (60 / 100) ** 2, abs=0.02)


def test_perimeters_match_skimage_for_every_label():
    _, lm, info = make_scene(5, 300, 400)
    n = len(info["entities"])
    per = crofton_perimeters(lm, n)
    for i in range(1, n + 1):
        assert per[i] == pytest.approx(perimeter_crofton(lm == i, directions=4), rel=1e-9)


def test_rle_counts_reconstructs_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 5), (64, 48)]:
        for density in (0.0, 0.3, 1.0):
            mask = (rng.random(shape) < density).astype(np.uint8)
            rle = rle_utils.encode(mask)
            counts = rle_counts(rle)
            flat = np.repeat(np.arange(counts.size) % 2, counts).astype(np.uint8)
            assert flat.size == mask.size
            assert np.array_equal(flat.reshape(shape[1], shape[0]).T, mask)
    # long runs (multi-char numbers, negative deltas) from a 12 MP-like mask
    big = np.zeros((3000, 400), np.uint8)
    big[:, 100:300] = 1
    big[1000:1100, :] = 0
    c = rle_counts(rle_utils.encode(big))
    assert c.sum() == big.size and c[0] == 100 * 3000


def test_label_map_from_runs_and_overlap_fallback():
    _, lm, _ = make_scene(11, 240, 320)
    rles = list(rle_utils.label_map_to_rles(lm).values())
    lm_t, over = label_map_t(rles, 240, 320)
    assert np.array_equal(lm_t.T, lm) and not over.any()
    a = np.zeros((50, 60), np.uint8)
    a[5:30, 5:30] = 1
    b = np.zeros((50, 60), np.uint8)
    b[20:45, 20:50] = 1
    c = np.zeros((50, 60), np.uint8)
    c[40:48, 52:58] = 1
    res = rle_measures([rle_utils.encode(x) for x in (a, b, c)], 50, 60)
    assert list(res["overlapped"]) == [True, True, False]
    assert list(res["area"]) == [625, 750, 48]
    assert res["covered"] == int(((a | b | c) > 0).sum())
    assert res["convexity"][0] == pytest.approx(1.0) and res["convexity"][1] == pytest.approx(1.0)


def test_max_side_approximates_full_resolution():
    _, lm, _ = make_scene(2, 1200, 1600)
    rles = list(rle_utils.label_map_to_rles(lm).values())
    full = rle_measures(rles, 1200, 1600)
    small = rle_measures(rles, 1200, 1600, max_side=800)
    assert np.array_equal(full["area"], small["area"])
    big = full["area"] > 20000
    assert np.allclose(full["convexity"][big], small["convexity"][big], atol=0.03)
