"""Input validation: one clear DataError naming the record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entityseg_data.errors import DataError
from entityseg_data.evaluation import evaluate_files
from entityseg_data.evaluation.coco_io import load_gt, load_predictions
from entityseg_data.masks import rle as rle_utils


def _gt():
    m = np.zeros((20, 30), np.uint8)
    m[2:10, 3:20] = 1
    r = rle_utils.encode(m)
    return {
        "images": [{"id": 5, "height": 20, "width": 30, "file_name": "a.jpg"}],
        "annotations": [{"id": 1, "image_id": 5, "segmentation": r, "area": 136, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "x"}],
    }, r


def test_malformed_json_names_file(tmp_path):
    p = tmp_path / "gt.json"
    p.write_text('{"images": [')
    with pytest.raises(DataError, match=r"gt\.json: malformed JSON"):
        load_gt(p)


def test_unknown_image_id_in_predictions(tmp_path):
    gt, r = _gt()
    preds = [
        {"image_id": 5, "segmentation": r, "score": 0.9},
        {"image_id": 77, "segmentation": r, "score": 0.5},
    ]
    p = tmp_path / "res.json"
    p.write_text(json.dumps(preds))
    with pytest.raises(
        DataError, match=r"res\.json: prediction \[1\] \(image_id 77\): unknown image id 77"
    ):
        evaluate_files(gt, str(p))


def test_unknown_image_id_in_gt():
    gt, r = _gt()
    gt["annotations"].append({"id": 9, "image_id": 6, "segmentation": r})
    with pytest.raises(DataError, match=r"annotations\[1\] \(id 9\): unknown image id 6"):
        load_gt(gt)


def test_rle_size_mismatch():
    gt, _ = _gt()
    other = rle_utils.encode(np.ones((21, 30), np.uint8))
    g = load_gt(gt)
    with pytest.raises(
        DataError,
        match=r"prediction \[0\] \(image_id 5\): RLE size 21x30 differs from the image size 20x30",
    ):
        load_predictions([{"image_id": 5, "segmentation": other, "score": 1.0}], g)
    gt["annotations"][0]["segmentation"] = other
    with pytest.raises(DataError, match=r"annotations\[0\] \(id 1\): RLE size 21x30"):
        load_gt(gt)


def test_nan_score():
    gt, r = _gt()
    g = load_gt(gt)
    with pytest.raises(DataError, match=r"prediction \[0\] \(image_id 5\): score is nan"):
        load_predictions([{"image_id": 5, "segmentation": r, "score": float("nan")}], g)


def test_corrupt_counts_and_missing_fields():
    gt, r = _gt()
    g = load_gt(gt)
    bad = {"size": [20, 30], "counts": r["counts"][:-2]}
    with pytest.raises(DataError, match=r"prediction \[0\]"):
        load_predictions([{"image_id": 5, "segmentation": bad, "score": 1.0}], g)
    with pytest.raises(
        DataError, match=r"prediction \[0\].*needs 'image_id', 'segmentation' and 'score'"
    ):
        load_predictions([{"image_id": 5, "segmentation": r}], g)
    with pytest.raises(DataError, match="not a COCO file"):
        load_gt({"annotations": []})


def test_polygon_ground_truth():
    poly = [[2.0, 2.0, 20.0, 2.0, 20.0, 15.0, 2.0, 15.0]]
    gt = {
        "images": [{"id": 1, "height": 20, "width": 30}],
        "annotations": [{"id": 1, "image_id": 1, "segmentation": poly, "iscrowd": 0}],
    }
    g = load_gt(gt)
    r = g.images[1].rles[0]
    m = evaluate_files(gt, [{"image_id": 1, "segmentation": r, "score": 0.3}], boundary=True)
    assert m["segm"]["AP"] == pytest.approx(1.0) and m["boundary"]["AP"] == pytest.approx(1.0)
    assert g.images[1].areas[0] == rle_utils.area(r)  # no 'area' in the file: the mask area
