"""data validate: every issue kind is found, counted and named; the CLI exit status."""

from __future__ import annotations

import json

import cli_support
import numpy as np
from PIL import Image

from entityseg_data.masks import rle as rle_utils
from entityseg_data.stats.validate import validate_coco
from entityseg_data.synthetic import write_dataset


def _ann(i, image_id, mask, **extra):
    r = rle_utils.encode(mask)
    return {
        "id": i,
        "image_id": image_id,
        "segmentation": r,
        "area": int(mask.sum()),
        "bbox": rle_utils.bbox(r),
        "category_id": 1,
        "iscrowd": 0,
        **extra,
    }


def broken_coco(tmp_path):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.new("RGB", (8, 6)).save(img_dir / "ok.png")
    Image.new("RGB", (9, 6)).save(img_dir / "wrong_size.png")
    (img_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    a = np.zeros((6, 8), np.uint8)
    a[0:4, 0:4] = 1
    b = np.zeros((6, 8), np.uint8)
    b[2:6, 2:6] = 1
    return img_dir, {
        "images": [
            {"id": 1, "file_name": "ok.png", "height": 6, "width": 8},
            {"id": 1, "file_name": "dup.png", "height": 6, "width": 8},
            {"id": 2, "file_name": "missing.png", "height": 6, "width": 8},
            {"id": 3, "file_name": "broken.jpg", "height": 6, "width": 8},
            {"id": 4, "file_name": "wrong_size.png", "height": 6, "width": 8},
        ],
        "annotations": [
            _ann(1, 1, a),
            _ann(2, 1, b),  # overlaps annotation 1 by 4 pixels
            _ann(2, 2, a),  # duplicate id
            _ann(3, 2, np.zeros((6, 8), np.uint8)),  # empty
            _ann(4, 3, np.ones((5, 8), np.uint8)),  # RLE size differs
            {
                "id": 5,
                "image_id": 4,
                "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]],
                "area": 16,
                "bbox": [0, 0, 4, 4],
                "category_id": 1,
                "iscrowd": 0,
            },  # polygon
            _ann(6, 99, a),  # unknown image
            {**_ann(7, 4, b), "area": 3},  # wrong area
            {
                "id": 8,
                "image_id": 4,
                "segmentation": {"size": [6, 8], "counts": "!!"},
                "category_id": 1,
            },  # malformed
            _ann(9, 4, a, category_id=7),  # unknown category
        ],
        "categories": [{"id": 1, "name": "entity"}],
    }


def test_every_issue_is_reported(tmp_path):
    img_dir, coco = broken_coco(tmp_path)
    rep = validate_coco(coco, images_dir=img_dir)
    counts = rep.to_json()["counts"]
    assert counts == {
        "malformed_image": 0,
        "malformed_category": 0,
        "duplicate_image_id": 1,
        "duplicate_annotation_id": 1,
        "unknown_image": 1,
        "unknown_category": 1,
        "malformed_annotation": 1,
        "polygon": 1,
        "uncompressed_rle": 0,
        "rle_size_mismatch": 1,
        "empty_mask": 1,
        "area_mismatch": 1,
        "overlap": 2,  # image 1 (ann 1 + 2) and image 4 (ann 7 + 9 + polygon 5)
        "missing_image": 1,
        "unreadable_image": 1,
        "image_size_mismatch": 1,
    }
    first = rep.offenders["overlap"][0]
    assert first["image_id"] == 1 and first["pixels"] == 4 and first["annotation_ids"] == [1, 2]
    assert rep.offenders["missing_image"][0]["path"].endswith("missing.png")
    assert not rep.ok
    assert validate_coco(coco, expect_rle=False).counts["polygon"] == 0


def test_probe_5_10_string_height_is_reported(tmp_path):
    """Probe 5.10: gt_strsize.json ("height": "20") passed as 'no problems found'."""
    img_dir, coco = broken_coco(tmp_path)
    good = {
        "images": [{"id": 1, "file_name": "ok.png", "height": "6", "width": 8}],
        "annotations": [coco["annotations"][0]],
        "categories": coco["categories"],
    }
    path = tmp_path / "gt_strsize.json"
    path.write_text(json.dumps(good))
    rep = validate_coco(path, images_dir=img_dir)
    assert not rep.ok and rep.counts["malformed_image"] == 1
    assert "'height' must be an integer, got '6'" in rep.offenders["malformed_image"][0]["error"]
    assert rep.counts["unknown_image"] == 1  # its annotation has no usable image any more
    out = cli_support.run_cli("data", "validate", str(path))
    assert out.returncode == 1 and "malformed_image: 1" in out.stdout


def test_probe_5_7_deep_json_is_one_error(tmp_path):
    from entityseg_data.errors import DataError

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    import pytest

    with pytest.raises(DataError, match="deep.json: malformed JSON"):
        validate_coco(deep)


def test_clean_synthetic_set_passes_and_cli_status(tmp_path):
    path = write_dataset(tmp_path / "syn", 2, sizes=[(120, 160)])
    rep = validate_coco(path, images_dir=tmp_path / "syn" / "images")
    assert rep.ok and rep.n_annotations > 10
    ok = cli_support.run_cli(
        "data", "validate", str(path), "--images", str(tmp_path / "syn" / "images")
    )
    assert ok.returncode == 0 and "no problems found" in ok.stdout
    img_dir, coco = broken_coco(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(coco))
    out = cli_support.run_cli(
        "data",
        "validate",
        str(bad),
        "--images",
        str(img_dir),
        "--report",
        str(tmp_path / "rep.json"),
    )
    assert out.returncode == 1
    assert "overlap: 2" in out.stdout and "missing_image: 1" in out.stdout
    assert json.loads((tmp_path / "rep.json").read_text())["counts"]["empty_mask"] == 1
