"""Streaming Evaluator, label-map inputs, overlap check and fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_synth import make_dataset
from PIL import Image

from entityseg_data.errors import DataError
from entityseg_data.evaluation import Evaluator, evaluate_files
from entityseg_data.evaluation.image_eval import PredImage
from entityseg_data.evaluation.overlaps import fix_overlaps, overlap_pixels
from entityseg_data.masks import rle as rle_utils


def _per_image(gt, res):
    by = {}
    for r in res:
        by.setdefault(r["image_id"], []).append(r)
    anns = {}
    for a in gt["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    return by, anns


def test_streaming_equals_files_any_order():
    gt, res = make_dataset(21, n_images=10, overlapping=True)
    ref = evaluate_files(gt, res, boundary=True)
    by, anns = _per_image(gt, res)
    ev = Evaluator(boundary=True)
    for img in reversed(gt["images"]):  # order must not matter (sorted by id at the end)
        g = dict(img, annotations=anns.get(img["id"], []))
        ev.process(g, by.get(img["id"], []))
    got = ev.evaluate()
    assert got["segm"] == ref["segm"] and got["boundary"] == ref["boundary"]
    # reset forgets images but reuses cached GT bands: same numbers again
    ev.reset()
    assert ev.num_images == 0
    for img in gt["images"]:
        ev.process(dict(img, annotations=anns.get(img["id"], [])), by.get(img["id"], []))
    assert ev.evaluate()["boundary"] == ref["boundary"]


def test_dense_masks_and_label_maps_equal_rles():
    h, w = 40, 60
    lm = np.zeros((h, w), np.int32)
    lm[0:20, 0:30] = 1
    lm[20:40, 10:60] = 2
    lm[5:15, 40:55] = 3
    pred_lm = np.roll(lm, 2, axis=1)
    scores = np.array([0.0, 0.9, 0.6, 0.8])  # indexed by label
    gt = {"image_id": 1, "label_map": lm}
    masks = np.stack([(pred_lm == k) for k in (1, 2, 3)])
    a = Evaluator(boundary=True)
    a.process(gt, {"label_map": pred_lm, "scores": scores})
    b = Evaluator(boundary=True)
    b.process(gt, {"masks": masks, "scores": scores[1:]})
    c = Evaluator(boundary=True)
    c.process(
        gt,
        [
            {"segmentation": rle_utils.encode(m), "score": float(s)}
            for m, s in zip(masks, scores[1:])
        ],
    )
    ma, mb, mc = a.evaluate(), b.evaluate(), c.evaluate()
    with pytest.raises(DataError, match="masks must be binary"):
        c.process(gt, {"masks": masks.astype(np.float32), "scores": scores[1:]})
    assert ma["segm"] == mb["segm"] == mc["segm"]
    assert ma["boundary"] == mb["boundary"] == mc["boundary"]
    assert 0 < ma["segm"]["AP"] <= 1


def test_label_map_png_folder(tmp_path):
    h, w = 30, 40
    gt_lm = np.zeros((h, w), np.uint16)
    gt_lm[:15] = 1
    gt_lm[15:, :20] = 2
    gt_lm[15:, 20:] = 300  # needs 16 bits
    rles = {k: rle_utils.encode(gt_lm == k) for k in (1, 2, 300)}
    gt = {
        "images": [{"id": 3, "height": h, "width": w, "file_name": "dir/photo_3.jpg"}],
        "annotations": [
            {"id": i + 1, "image_id": 3, "segmentation": r, "area": rle_utils.area(r), "iscrowd": 0}
            for i, r in enumerate(rles.values())
        ],
    }
    folder = tmp_path / "pred"
    folder.mkdir()
    Image.fromarray(gt_lm).save(folder / "photo_3.png")
    (folder / "scores.json").write_text(json.dumps({"photo_3": {"1": 0.9, "2": 0.8}}))
    m = evaluate_files(gt, str(folder), boundary=True)
    assert m["segm"]["AP"] == pytest.approx(1.0) and m["boundary"]["AP"] == pytest.approx(1.0)
    assert m["info"]["num_predictions"] == 3 and m["info"]["images_with_overlaps"] == 0
    Image.fromarray(gt_lm[:, :-1]).save(folder / "3.png")  # by image id, wrong size
    (folder / "photo_3.png").unlink()
    with pytest.raises(DataError, match=r"3\.png: label map size 30x39 differs"):
        evaluate_files(gt, str(folder))
    Image.fromarray(gt_lm).save(folder / "photo_99.png")
    with pytest.raises(DataError, match="photo_99.png: matches no ground-truth image"):
        evaluate_files(gt, str(folder))


def test_fix_overlaps_by_score():
    h, w = 10, 10
    a = np.zeros((h, w), np.uint8)
    a[0:6, 0:6] = 1
    b = np.zeros((h, w), np.uint8)
    b[3:10, 3:10] = 1
    c = np.zeros((h, w), np.uint8)
    c[4:6, 4:6] = 1  # inside the overlap: loses everything to b -> dropped
    p = PredImage(
        rles=tuple(rle_utils.encode(m) for m in (a, b, c)), scores=np.array([0.5, 0.9, 0.1])
    )
    assert overlap_pixels(p) == 9 + 4 + 4 - 4 + 0  # a&b 9 px, c covered 3 times on 4 px
    f = fix_overlaps(p, h, w)
    assert overlap_pixels(f) == 0
    assert list(f.scores) == [0.5, 0.9]
    fa, fb = (rle_utils.decode(r) for r in f.rles)
    assert np.array_equal(fb, b)  # higher score keeps all its pixels
    assert np.array_equal(fa, a & (1 - b))


def test_overlap_report_and_fix_in_metrics():
    gt, res = make_dataset(31, n_images=6, overlapping=True)
    m = evaluate_files(gt, res)
    assert m["info"]["images_with_overlaps"] > 0 and not m["info"]["fixed_overlaps"]
    f = evaluate_files(gt, res, fix_overlaps=True)
    assert f["info"]["images_with_overlaps"] == 0 and f["info"]["fixed_overlaps"]


def test_workers_give_identical_numbers():
    gt, res = make_dataset(41, n_images=6, overlapping=False)
    a = evaluate_files(gt, res, boundary=True)
    b = evaluate_files(gt, res, boundary=True, workers=2)
    assert a == b
