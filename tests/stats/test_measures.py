"""Shape measures on shapes with known values (both definition sets), and the RLE decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.measure import perimeter_crofton

from entityseg_data.masks import rle as rle_utils
from entityseg_data.stats.measures import (
    SHAPE_DEFINITIONS,
    convex_hull_areas,
    crofton_perimeters,
    label_map_t,
    mask_measures,
    rle_measures,
)
from entityseg_data.synthetic import make_scene

SQ = "squares-crofton"


def disk(r: float, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    return (yy - c) ** 2 + (xx - c) ** 2 <= r * r


@pytest.mark.parametrize("r", [50, 200, 600])
def test_disk_is_simple_and_convex(r):
    m = mask_measures(disk(r, 2 * r + 11), SQ)
    assert abs(m["simplicity"] - 1) < 0.01
    # the hull of the pixel squares is about a disk of radius r + 0.5: ratio ~ 1 - 1/r
    assert 1 - 1.5 / r < m["convexity"] <= 1.0
    assert abs(m["perimeter"] - 2 * math.pi * r) / (2 * math.pi * r) < 0.01


def test_rectangle_closed_forms():
    a, b = 5, 10  # rows, cols
    mask = np.zeros((9, 14), np.uint8)
    mask[2 : 2 + a, 3 : 3 + b] = 1
    m = mask_measures(mask, SQ)
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
    m = mask_measures(line, SQ)
    assert m["convex_area"] == pytest.approx(25.0) and m["convexity"] == pytest.approx(1.0)
    assert m["simplicity"] < 0.4


def test_ring_convexity():
    outer, inner = disk(100, 211), disk(60, 211)
    ring = outer & ~inner
    m = mask_measures(ring, SQ)
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
            counts = rle_utils.counts(rle)
            flat = np.repeat(np.arange(counts.size) % 2, counts).astype(np.uint8)
            assert flat.size == mask.size
            assert np.array_equal(flat.reshape(shape[1], shape[0]).T, mask)
    # long runs (multi-char numbers, negative deltas) from a 12 MP-like mask
    big = np.zeros((3000, 400), np.uint8)
    big[:, 100:300] = 1
    big[1000:1100, :] = 0
    c = rle_utils.counts(rle_utils.encode(big))
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
    res = rle_measures([rle_utils.encode(x) for x in (a, b, c)], 50, 60, definition=SQ)
    assert list(res["overlapped"]) == [True, True, False]
    assert list(res["area"]) == [625, 750, 48]
    assert res["covered"] == int(((a | b | c) > 0).sum())
    assert res["convexity"][0] == pytest.approx(1.0) and res["convexity"][1] == pytest.approx(1.0)


def test_max_side_approximates_full_resolution():
    _, lm, _ = make_scene(2, 1200, 1600)
    rles = list(rle_utils.label_map_to_rles(lm).values())
    for definition in SHAPE_DEFINITIONS:
        full = rle_measures(rles, 1200, 1600, definition=definition)
        small = rle_measures(rles, 1200, 1600, max_side=800, definition=definition)
        assert np.array_equal(full["area"], small["area"])
        big = full["area"] > 20000
        assert np.allclose(full["convexity"][big], small["convexity"][big], atol=0.03)


# ------------------------------------------------------------------ "paper" (pixel-centre contours)
def opencv_reference(mask: np.ndarray) -> tuple[float, float]:
    """(hull area, contour length) of one whole binary mask, straight from OpenCV: the literal
    definition the label-map implementation must equal."""
    import cv2

    m = np.pad(mask.astype(np.uint8), 1)
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    length = sum(cv2.arcLength(c, True) for c in contours)
    pts = np.concatenate(contours)
    hull = cv2.contourArea(cv2.convexHull(pts)) if len(pts) >= 3 else 0.0
    return float(hull), float(length)


def test_paper_measures_equal_opencv_on_every_entity_of_a_scene():
    from entityseg_data.stats.measures import label_measures

    _, lm, info = make_scene(7, 300, 400)
    n = len(info["entities"])
    res = label_measures(lm, n, "paper")
    res_t = label_measures(np.ascontiguousarray(lm.T), n, "paper")
    for i in range(1, n + 1):
        m = lm == i
        hull, length = opencv_reference(m)
        area = int(m.sum())
        assert res["area"][i - 1] == area
        assert res["convex_area"][i - 1] == pytest.approx(hull, rel=1e-9, abs=1e-9)
        assert res["perimeter"][i - 1] == pytest.approx(length, rel=1e-5)
        cvx = min(1.0, area / hull) if hull > 0 else 1.0
        smp = min(1.0, math.sqrt(4 * math.pi * area) / length) if length > 0 else 1.0
        assert res["convexity"][i - 1] == pytest.approx(cvx, rel=1e-9)
        assert res["simplicity"][i - 1] == pytest.approx(smp, rel=1e-5)
        # the transposed map (what rle_measures builds) gives the same numbers
        for k in ("convex_area", "perimeter", "convexity", "simplicity"):
            assert res_t[k][i - 1] == pytest.approx(res[k][i - 1], rel=1e-5)


def test_paper_measures_closed_forms():
    # a x b rectangle: centres span (a-1) x (b-1); contour 2(a-1) + 2(b-1); convexity capped
    rect = np.zeros((9, 14), np.uint8)
    rect[2:7, 3:13] = 1
    m = mask_measures(rect)
    assert m["area"] == 50 and m["convex_area"] == pytest.approx(4 * 9)
    assert m["perimeter"] == pytest.approx(26.0)
    assert m["convexity"] == 1.0
    assert m["simplicity"] == pytest.approx(math.sqrt(4 * math.pi * 50) / 26)
    # a staircase-free concave shape: a U (two 3x10 legs joined by a 3x10 bar, 8 px gap)
    u = np.zeros((12, 30), np.uint8)
    u[0:10, 0:3] = 1
    u[0:10, 11:14] = 1
    u[7:10, 0:14] = 1
    hull, _ = opencv_reference(u)
    assert hull == pytest.approx(9 * 13)  # centres span 9 rows x 13 columns, a full rectangle
    assert mask_measures(u)["convexity"] == pytest.approx(int(u.sum()) / 117)
    # degenerate: one pixel (no hull, no length) and a one-pixel line (no hull area)
    one = np.zeros((3, 3), np.uint8)
    one[1, 1] = 1
    p = mask_measures(one)
    assert (p["convexity"], p["simplicity"], p["perimeter"]) == (1.0, 1.0, 0.0)
    line = np.zeros((3, 30), np.uint8)
    line[1, 2:27] = 1
    q = mask_measures(line)
    assert q["convex_area"] == 0.0 and q["convexity"] == 1.0
    assert q["perimeter"] == pytest.approx(48.0)  # traced there and back
    # holes count in the contour length: a ring's length is about both circles
    outer, inner = disk(100, 211), disk(60, 211)
    r = mask_measures(outer & ~inner)
    assert r["perimeter"] == pytest.approx(2 * math.pi * 160, rel=0.1)
    assert r["convexity"] == pytest.approx(1 - 0.36, abs=0.02)


@pytest.mark.parametrize("r", [20, 200])
def test_paper_disk(r):
    m = mask_measures(disk(r, 2 * r + 11))
    assert m["convexity"] == 1.0  # convex: capped
    # 8-connected chain through the boundary centres: a few % longer than the circle
    assert 0.9 < m["simplicity"] < 1.0


def test_unknown_definition_is_one_clear_error():
    from entityseg_data.errors import DataError

    with pytest.raises(DataError, match="squares-crofton"):
        mask_measures(disk(5, 15), "crofton")
