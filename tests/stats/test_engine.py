"""compute_stats / Table 2 / class counts / report on hand-computed examples."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from entityseg_data.config.stats import StatsConfig
from entityseg_data.masks import rle as rle_utils
from entityseg_data.stats.classes import class_counts, kind_totals
from entityseg_data.stats.engine import compute_stats
from entityseg_data.stats.report import write_report
from entityseg_data.stats.table import table2, to_markdown
from entityseg_data.synthetic import write_dataset


def crofton_rect(a: int, b: int) -> float:
    return math.pi / 8 * (2 * a + 2 * b + 4 * (a + b - 1) / math.sqrt(2))


def hand_coco() -> dict:
    """Image 1 (10x20): a 5x10 rectangle + the L-shape filling the rest. Image 2 (4x4): a 2x2
    square in the middle (valid area 1/4), plus a crowd annotation that must be ignored."""
    rect = np.zeros((10, 20), np.uint8)
    rect[0:5, 0:10] = 1
    ell = 1 - rect
    sq = np.zeros((4, 4), np.uint8)
    sq[1:3, 1:3] = 1
    crowd = np.ones((4, 4), np.uint8)

    def ann(i, img, m, name, cat, crowd_flag=0):
        r = rle_utils.encode(m)
        return {
            "id": i,
            "image_id": img,
            "segmentation": r,
            "area": int(m.sum()),
            "bbox": rle_utils.bbox(r),
            "category_id": cat,
            "iscrowd": crowd_flag,
            "name": name,
        }

    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 10, "width": 20, "img_source": "web"},
            {"id": 2, "file_name": "b.jpg", "height": 4, "width": 4, "img_source": "lab"},
        ],
        "annotations": [
            ann(1, 1, rect, "table", 1),
            ann(2, 1, ell, "wall", 2),
            ann(3, 2, sq, None, 1),
            ann(4, 2, crowd, "crowd", 1, crowd_flag=1),
        ],
        "categories": [
            {"id": 1, "name": "thingy", "isthing": 1},
            {"id": 2, "name": "stuffy", "isthing": 0},
        ],
    }


def test_table2_hand_computed():
    s = compute_stats(
        hand_coco(), name="hand", config=StatsConfig(shape_measures="squares-crofton")
    )
    row = table2([s])[0]
    assert row["shape_measures"] == "squares-crofton"
    assert row["image_res"] == pytest.approx((math.sqrt(200) + 4) / 2)
    assert row["images"] == 2 and row["entities"] == 3
    assert row["avg_height"] == 7 and row["avg_width"] == 12
    assert row["avg_resolution"] == "7x12"
    assert row["avg_megapixels"] == pytest.approx((200 + 16) / 2 / 1e6)
    assert row["entities_per_image_avg"] == 1.5 and row["entities_per_image_max"] == 2
    # convexities: rectangle 1, L-shape 150/175, square 1
    assert row["complexity"] == pytest.approx((1 + 150 / 175 + 1) / 3)
    simp_rect = math.sqrt(4 * math.pi * 50) / crofton_rect(5, 10)
    simp_sq = math.sqrt(4 * math.pi * 4) / crofton_rect(2, 2)
    simp_l = s.entities["simplicity"][1]
    assert s.entities["simplicity"][0] == pytest.approx(simp_rect)
    assert s.entities["simplicity"][2] == pytest.approx(simp_sq)
    assert row["simplicity"] == pytest.approx((simp_rect + simp_l + simp_sq) / 3)
    assert row["valid_area"] == pytest.approx((1.0 + 0.25) / 2)
    assert list(s.entities["area"]) == [50, 150, 4]
    md = to_markdown([row])
    assert "| hand | 2 | 3 | 9.1 | 7x12 | 1.5 / 2 |" in md and "62.5%" in md
    assert "Shape measures `squares-crofton`: convexity = area / area of the convex hull" in md


def test_table2_paper_definitions_hand_computed():
    """The default ("paper") measures on the same set: pixel-centre hull and contour length."""
    s = compute_stats(hand_coco(), name="hand")
    row = table2([s])[0]
    assert s.shape_measures == row["shape_measures"] == "paper"
    # rectangle 5x10: centre hull 4x9 = 36 < 50 -> 1; L-shape: centre hull 171 - 25 = 146 < 150
    # -> 1; 2x2 square: centre hull 1 < 4 -> 1
    assert list(s.entities["convex_area"]) == pytest.approx([36.0, 146.0, 1.0])
    assert row["complexity"] == 1.0
    # contour lengths: rectangle 2*4 + 2*9 = 26; square 4; L-shape: 19 + 9 + 19 + 4 + 5 * sqrt 2 ...
    assert s.entities["perimeter"][0] == pytest.approx(26.0)
    assert s.entities["perimeter"][2] == pytest.approx(4.0)
    simp = [
        math.sqrt(4 * math.pi * 50) / 26,
        min(1.0, math.sqrt(4 * math.pi * 150) / s.entities["perimeter"][1]),
        1.0,  # sqrt(16 pi) / 4 > 1: capped
    ]
    assert list(s.entities["simplicity"]) == pytest.approx(simp)
    assert row["simplicity"] == pytest.approx(sum(simp) / 3)
    md = to_markdown([row])
    assert "| paper |" in md and "Shape measures `paper`: convexity = min(1, area" in md
    with pytest.raises(Exception, match="shape_measures|squares-crofton"):
        compute_stats(hand_coco(), config=StatsConfig(shape_measures="nope"))  # type: ignore[arg-type]


def test_class_counts_thing_stuff():
    s = compute_stats(hand_coco(), name="hand")
    rows = class_counts(s)
    by = {r["name"]: r for r in rows}
    # unnamed entity falls back to its category name
    assert by["table"] == {
        "name": "table",
        "kind": "thing",
        "entities": 1,
        "images": 1,
        "pixels": 50,
    }
    assert by["wall"]["kind"] == "stuff" and by["thingy"]["pixels"] == 4
    assert kind_totals(rows) == {
        "thing_classes": 2,
        "thing_entities": 2,
        "stuff_classes": 1,
        "stuff_entities": 1,
        "unknown_classes": 0,
        "unknown_entities": 0,
    }
    # an is_thing callable (the vocabulary) wins over the category flag
    rows2 = class_counts(s, is_thing=lambda n: n == "wall")
    assert {r["name"]: r["kind"] for r in rows2}["wall"] == "thing"


def test_bad_images_are_skipped_and_reported():
    coco = hand_coco()
    coco["annotations"][2]["segmentation"] = rle_utils.encode(np.ones((5, 5), np.uint8))
    s = compute_stats(coco, name="bad")
    assert s.n_images == 1 and len(s.errors) == 1 and s.errors[0]["image_id"] == 2
    assert "differs" in s.errors[0]["error"]


def test_report_files_and_synthetic_ground_truth(tmp_path):
    path = write_dataset(tmp_path / "syn", 4, sizes=[(240, 320), (300, 200)], sources=["a", "b"])
    data = json.loads(path.read_text())
    s = compute_stats(path, name="syn")
    assert s.n_images == 4 and s.n_entities == len(data["annotations"])
    # synthetic scenes cover every pixel
    assert all(r["valid_area"] == 1.0 for r in s.images)
    assert np.array_equal(s.entities["area"], [a["area"] for a in data["annotations"]])
    other = compute_stats(path, name="first2", limit=2)
    paths = write_report([s, other], tmp_path / "out")
    for key in (
        "json",
        "table_csv",
        "table_md",
        "images_csv",
        "entities_csv",
        "classes_csv",
        "fig3",
        "shapes",
    ):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    assert paths["fig3"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(paths["table_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["dataset"] for r in rows] == ["syn", "first2"]
    assert int(rows[1]["images"]) == 2
    js = json.loads(paths["json"].read_text())
    assert js["datasets"][0]["class_kinds"]["stuff_entities"] > 0


@pytest.mark.slow
def test_workers_give_identical_results(tmp_path):
    path = write_dataset(tmp_path / "syn", 3, sizes=[(200, 260)])
    a = compute_stats(path, config=StatsConfig(workers=0))
    b = compute_stats(path, config=StatsConfig(workers=2))
    assert a.images == b.images
    for k in a.entities:
        assert np.array_equal(a.entities[k], b.entities[k], equal_nan=True)


@pytest.mark.slow
def test_vocabulary_classes_and_kinds():
    from entityseg_data.stats.classes import vocabulary_lookups

    found = vocabulary_lookups(["sky", "Dogs", "dog", "wall", "cars", "unknown"])
    assert found is not None
    is_thing, class_of = found
    assert class_of("Dogs") == "dog" and is_thing("dog") is True
    assert is_thing("sky") is False and is_thing("unknown") is None
    s = compute_stats(hand_coco(), name="hand")
    is_thing, class_of = vocabulary_lookups(s.names)  # built on the names measured
    rows = class_counts(s, is_thing=is_thing, class_of=class_of)
    kinds = {r["name"]: r["kind"] for r in rows}
    assert kinds["table"] == "thing" and kinds["wall"] == "stuff"
