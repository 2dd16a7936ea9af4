"""QA findings and the overlap fix on crafted annotations; Label Studio JSON conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entityseg_data.annotation.labelstudio.format import (
    brush_result,
    ls_export_to_annotations,
    name_results,
    parse_results,
    polygon_mask,
)
from entityseg_data.annotation.overlap import resolve
from entityseg_data.annotation.qa import check_annotation
from entityseg_data.annotation.workflow import Stage2Merge
from entityseg_data.errors import ConfigError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity, ImageAnnotation


def ann_of(masks: dict[str, np.ndarray], names: dict[str, str] | None = None, stage: int = 1):
    h, w = next(iter(masks.values())).shape
    ents = tuple(
        Entity(id=k, rle=rle_utils.encode(m), name=(names or {}).get(k)) for k, m in masks.items()
    )
    return ImageAnnotation(image_id=1, height=h, width=w, stage=stage, annotator="a", entities=ents)


def block(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def checks(result):
    return sorted((f.check, f.severity) for f in result.findings)


def test_clean_partition_passes():
    h, w = 20, 30
    res = check_annotation(
        ann_of({"a": block(h, w, 0, 10, 0, 30), "b": block(h, w, 10, 20, 0, 30)}), image_size=(h, w)
    )
    assert res.passed and res.findings == () and res.coverage == 1.0 and res.overlap_pixels == 0


def test_overlap_rejected_or_resolved_by_rule():
    h, w = 20, 30
    big = block(h, w, 0, 20, 0, 30)
    small = block(h, w, 5, 9, 5, 12)  # 28 px inside the big one
    ann = ann_of({"big": big, "small": small})
    rej = check_annotation(ann, image_size=(h, w), policy="reject")
    assert not rej.passed and ("overlap", "error") in checks(rej) and rej.overlap_pixels == 28
    assert rej.findings[0].pairs == (("big", "small"),)
    fixed = check_annotation(ann, image_size=(h, w), policy="smaller_wins")
    assert fixed.passed and ("overlap", "warning") in checks(fixed)
    got = {e.id: rle_utils.decode(e.segmentation) for e in fixed.annotation.entities}
    assert np.array_equal(got["small"], small) and np.array_equal(got["big"], big & (1 - small))
    later = check_annotation(
        ann_of({"small": small, "big": big}), image_size=(h, w), policy="later_wins"
    )
    ids = [e.id for e in later.annotation.entities]
    assert ids == ["big"]  # the small one is painted over and dropped
    assert ("empty", "warning") in checks(later)


def test_resolve_ties_go_to_the_earlier_region():
    h, w = 4, 4
    a, b = block(h, w, 0, 2, 0, 4), block(h, w, 1, 3, 0, 4)  # equal areas, row 1 shared
    ents = [
        Entity(id="a", rle=rle_utils.encode(a)),
        Entity(id="b", rle=rle_utils.encode(b)),
    ]
    res = resolve(ents, h, w, "smaller_wins")
    out = {e.id: rle_utils.decode(e.segmentation) for e in res.entities}
    assert [m.to_json() for m in res.moves] == [
        {"from": "b", "to": "a", "pixels": 4, "rule": "smaller_wins"}
    ]
    assert out["a"][1].all() and not out["b"][1].any()


def test_empty_tiny_uncovered_size_and_unnamed():
    h, w = 20, 30
    ann = ann_of(
        {
            "a": block(h, w, 0, 5, 0, 5),
            "e": np.zeros((h, w), np.uint8),
            "t": block(h, w, 10, 12, 10, 12),
        }
    )
    merge = Stage2Merge(annotation=ann, seed_ids=("a",), unnamed=("a",))
    res = check_annotation(
        ann, image_size=(h, w), min_mask_area=10, max_uncovered_fraction=0.1, stage2=merge
    )
    assert checks(res) == [
        ("empty", "warning"),
        ("tiny", "warning"),
        ("uncovered", "warning"),
        ("unnamed", "error"),
    ]
    assert [e.id for e in res.annotation.entities] == ["a", "t"]
    assert abs(res.coverage - 29 / 600) < 1e-9
    bad = check_annotation(ann, image_size=(h + 1, w))
    assert ("size_mismatch", "error") in checks(bad) and not bad.passed
    none = check_annotation(ann_of({"e": np.zeros((h, w), np.uint8)}), image_size=(h, w))
    assert ("no_entities", "error") in checks(none)


def test_parse_results_joins_names_and_reports_size_mismatch():
    h, w = 12, 16
    m = block(h, w, 2, 6, 3, 9)
    results = [
        brush_result(m, region_id="r1", height=h, width=w),
        *name_results("r1", "Dogs", None),
        *name_results("r1", None, "animal_other"),
        brush_result(block(h + 1, w, 0, 2, 0, 2), region_id="r2", height=h + 1, width=w),
        *name_results("r3", None, "blurred"),
    ]
    regions, findings = parse_results(results, h, w)
    by = {r.id: r for r in regions}
    assert by["r1"].name == "Dogs" and by["r1"].flag == "animal_other"
    assert np.array_equal(by["r1"].mask(h, w), m)
    assert [f["check"] for f in findings] == ["size_mismatch"] and findings[0]["region"] == "r2"
    assert by["r3"].runs == [] and by["r3"].flag == "blurred"


def test_polygon_rasterisation_pixel_centres():
    # a rectangle from x=1.2..4.2, y=0.2..2.2 px covers the centres of columns 1-3, rows 0-1
    h, w = 4, 6
    pts = [
        [1.2 / w * 100, 0.2 / h * 100],
        [4.2 / w * 100, 0.2 / h * 100],
        [4.2 / w * 100, 2.2 / h * 100],
        [1.2 / w * 100, 2.2 / h * 100],
    ]
    expected = np.zeros((h, w), np.uint8)
    expected[0:2, 1:4] = 1
    assert np.array_equal(polygon_mask(pts, h, w), expected)


def test_ls_export_to_annotations_from_file(tmp_path):
    h, w = 10, 10
    m1, m2 = block(h, w, 0, 5, 0, 10), block(h, w, 5, 10, 0, 10)
    task = {
        "id": 5,
        "data": {"image": "/x.png", "image_id": 42, "height": h, "width": w},
        "annotations": [
            {
                "id": 1,
                "completed_by": {"id": 3, "email": "carol@x.org"},
                "updated_at": "2026-01-01",
                "result": [brush_result(m1, region_id="x", height=h, width=w)],
            },
            {
                "id": 2,
                "completed_by": {"id": 3, "email": "carol@x.org"},
                "updated_at": "2026-01-02",
                "result": [
                    brush_result(m2, region_id="y", height=h, width=w),
                    *name_results("y", "tree", None),
                ],
            },
            {"id": 3, "completed_by": 4, "was_cancelled": True, "result": []},
        ],
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task]))
    out = ls_export_to_annotations(path, stage=2)
    assert list(out) == ["carol"]
    (a,) = out["carol"]
    assert (a.image_id, a.height, a.width, a.stage) == (42, h, w, 2)
    assert [(e.id, e.name) for e in a.entities] == [("y", "tree")]  # the newest annotation
    assert np.array_equal(rle_utils.decode(a.entities[0].segmentation), m2)


def test_unknown_policy_is_refused():
    with pytest.raises(ConfigError, match="overlap_policy"):
        check_annotation(ann_of({"a": block(2, 2, 0, 1, 0, 1)}), policy="merge")


def test_label_map_fast_paths_match_the_dense_ones():
    from entityseg_data.masks import runs as R
    from entityseg_data.masks.brush import (
        brush_pixel_runs,
        brush_rles_of_rles,
        encode_brush,
        rles_of_brush_runs,
    )

    rng = np.random.default_rng(5)
    h, w = 37, 53
    lm = rng.integers(0, 6, (h, w))
    lm[:, :10] = 3  # long runs
    rles = [rle_utils.encode((lm == i).astype(np.uint8)) for i in range(1, 6)]
    for r, i in zip(rles, range(1, 6)):
        m = (lm == i).astype(np.uint8).ravel(order="F")
        assert rle_utils.counts(r).sum() == h * w
        c = rle_utils.counts(r)
        assert np.array_equal(np.repeat(np.arange(c.size) % 2, c), m)
    brushes = brush_rles_of_rles(rles, h, w)
    assert brushes == [encode_brush(rle_utils.decode(r)) for r in rles]
    runs = [R.Runs(s, s + n) for s, n in (brush_pixel_runs(b, h, w) for b in brushes)]
    assert rles_of_brush_runs(runs, h, w) == rles
    # overlapping regions: each converted as drawn
    full = np.ones((h, w), np.uint8)
    over = [rles[0], rle_utils.encode(full)]
    assert brush_rles_of_rles(over, h, w) == [brushes[0], encode_brush(full)]
    s, n = brush_pixel_runs(encode_brush(full), h, w)
    assert rles_of_brush_runs([runs[0], R.Runs(s, s + n)], h, w) == over


def test_one_region_with_brush_and_polygon_is_the_union():
    h, w = 10, 10
    a = block(h, w, 0, 3, 0, 3)
    pts = [[55.0, 55.0], [95.0, 55.0], [95.0, 95.0], [55.0, 95.0]]
    results = [
        brush_result(a, region_id="r", height=h, width=w),
        {
            "id": "r",
            "type": "polygonlabels",
            "from_name": "poly",
            "to_name": "image",
            "original_width": w,
            "original_height": h,
            "value": {"points": pts, "polygonlabels": ["entity"]},
        },
    ]
    regions, findings = parse_results(results, h, w)
    assert not findings and regions[0].kinds == ["brush", "polygon"]
    assert np.array_equal(regions[0].mask(h, w), a | polygon_mask(pts, h, w))


@pytest.mark.slow
def test_12mp_label_map_paths_are_bit_exact_against_the_sdk():
    from sdk_brush_support import sdk_brush

    sdk = sdk_brush()
    from entityseg_data.masks import runs as R
    from entityseg_data.masks.brush import brush_pixel_runs, brush_rles_of_rles, rles_of_brush_runs

    h, w = 3000, 4000
    rng = np.random.default_rng(0)
    small = rng.integers(1, 9, (h // 50, w // 50))
    lm = np.repeat(np.repeat(small, 50, 0), 50, 1).astype(np.uint16)
    lm[1000:1003, :] = 9  # thin full-width stripe: runs longer than 2^16 values
    rles = [rle_utils.encode((lm == i).astype(np.uint8)) for i in range(1, 10)]
    brushes = brush_rles_of_rles(rles, h, w)
    for i in (1, 9):  # the SDK is slow: two of the nine
        assert brushes[i - 1] == sdk.mask2rle((lm == i).astype(np.uint8) * 255)
    runs = [R.Runs(s, s + n) for s, n in (brush_pixel_runs(b, h, w) for b in brushes)]
    assert rles_of_brush_runs(runs, h, w) == rles
