"""Randomised exactness against pycocotools (segm) and faster-coco-eval (boundary)."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from eval_synth import make_dataset

from entityseg_data.evaluation import evaluate_files
from entityseg_data.evaluation.matching import Params, coco_stats

TOL = 1e-6


def _collapse(gt):
    gt = copy.deepcopy(gt)
    for a in gt["annotations"]:
        a["category_id"] = 1
    gt["categories"] = [{"id": 1, "name": "entity"}]
    return gt


def _pycoco(gt, res, max_dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = _collapse(gt)
        cg.createIndex()
        cd = cg.loadRes(copy.deepcopy(res))
        ev = COCOeval(cg, cd, "segm")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _fce(gt, res, iou_type):
    from faster_coco_eval import COCO, COCOeval_faster

    cg = COCO(_collapse(gt))
    cd = cg.loadRes(copy.deepcopy(res))
    ev = COCOeval_faster(cg, cd, iouType=iou_type, print_function=lambda *a: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


CASES = [(1, True, False), (2, False, False), (3, True, True), (4, False, True), (5, True, False)]


@pytest.mark.parametrize("seed,overlapping,many", CASES)
def test_segm_equals_pycocotools(seed, overlapping, many):
    gt, res = make_dataset(seed, n_images=14, overlapping=overlapping, many=many)
    max_dets = (1, 10, 100)
    ref = _pycoco(gt, res, max_dets)
    got = evaluate_files(gt, res, max_dets=max_dets)
    from entityseg_data.evaluation.evaluator import load_gt, load_predictions
    from entityseg_data.evaluation.image_eval import evaluate_pair
    from entityseg_data.evaluation.matching import accumulate

    params = Params(max_dets=max_dets)
    g = load_gt(gt)
    p = load_predictions(res, g)
    acc = accumulate([evaluate_pair(g.images[i], p[i], params).segm for i in g.image_ids], params)
    np.testing.assert_allclose(acc.precision, ref.eval["precision"][:, :, 0], atol=TOL, rtol=0)
    np.testing.assert_allclose(acc.recall, ref.eval["recall"][:, 0], atol=TOL, rtol=0)
    np.testing.assert_allclose(coco_stats(acc, params), ref.stats, atol=TOL, rtol=0)
    s = got["segm"]
    np.testing.assert_allclose(
        [s["AP"], s["AP50"], s["AP75"], s["APs"], s["APm"], s["APl"], s["AR1"], s["AR10"]],
        ref.stats[:8],
        atol=TOL,
        rtol=0,
    )
    np.testing.assert_allclose(s["AR50@100"], ref.eval["recall"][0, 0, 0, 2], atol=TOL, rtol=0)


def test_more_than_100_detections_at_1000():
    gt, res = make_dataset(7, n_images=12, overlapping=True, many=True)
    assert max(sum(1 for r in res if r["image_id"] == i["id"]) for i in gt["images"]) > 100
    max_dets = (1, 10, 100, 1000)
    ref = _pycoco(gt, res, max_dets)
    got = evaluate_files(gt, res, max_dets=max_dets)
    s = got["segm"]
    np.testing.assert_allclose(s["AR1000"], np.mean(ref.eval["recall"][:, 0, 0, 3]), atol=TOL)
    np.testing.assert_allclose(s["AR50@1000"], ref.eval["recall"][0, 0, 0, 3], atol=TOL)
    np.testing.assert_allclose(s["AP"], ref.stats[0], atol=TOL)
    # with 100 max detections, the extra ones are cut (AR100 differs from AR1000)
    assert s["AR1000"] >= s["AR100"]


@pytest.mark.parametrize("seed,overlapping", [(11, True), (12, False), (13, True)])
def test_boundary_equals_faster_coco_eval(seed, overlapping):
    gt, res = make_dataset(seed, n_images=12, overlapping=overlapping, many=seed == 13)
    ref = _fce(gt, res, "boundary")
    got = evaluate_files(gt, res, boundary=True)
    b = got["boundary"]
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    np.testing.assert_allclose([b[k] for k in keys], ref.stats[:12], atol=TOL, rtol=0)
    # the boundary numbers really differ from the mask numbers on these data
    assert any(abs(b[k] - got["segm"][k]) > 1e-3 for k in keys)
    ref_segm = _fce(gt, res, "segm")
    np.testing.assert_allclose(
        [got["segm"][k] for k in keys], ref_segm.stats[:12], atol=TOL, rtol=0
    )


@pytest.mark.parametrize("method", ["mask", "labelmap"])
def test_boundary_both_band_paths_equal_faster_coco_eval(monkeypatch, method):
    """Force each band method (label map only where the masks are disjoint)."""
    from entityseg_data.evaluation import boundary as bmod

    orig = bmod.bands

    def forced(rles, h, w, d, *, disjoint=None, method_=method, **kw):
        m = method_ if (method_ == "mask" or disjoint) else "mask"
        return orig(rles, h, w, d, disjoint=disjoint, method=m)

    monkeypatch.setattr(bmod, "bands", forced)
    gt, res = make_dataset(17, n_images=10, overlapping=False)
    ref = _fce(gt, res, "boundary")
    got = evaluate_files(gt, res, boundary=True)["boundary"]
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    np.testing.assert_allclose([got[k] for k in keys], ref.stats[:12], atol=TOL, rtol=0)


def test_boundary_wide_band_larger_images():
    """480x640 images: d = 16, masks larger than the band, big label maps (tiled transpose)."""
    from entityseg_data.masks import rle as rle_utils

    rng = np.random.default_rng(3)
    h, w = 480, 640
    images, anns, res = [], [], []
    for iid in (1, 2, 3):
        images.append({"id": iid, "height": h, "width": w})
        lm = np.zeros((h, w), np.int32)
        for k in range(1, 9):
            y0, x0 = int(rng.integers(0, h - 40)), int(rng.integers(0, w - 40))
            lm[y0 : y0 + int(rng.integers(20, 300)), x0 : x0 + int(rng.integers(20, 400))] = k
        plm = np.roll(lm, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(0, 1))
        for k in range(1, 9):
            g = lm == k
            if g.any():
                r = rle_utils.encode(g)
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": iid,
                        "segmentation": r,
                        "area": rle_utils.area(r),
                        "iscrowd": 0,
                        "category_id": 1,
                    }
                )
            p = plm == k
            if p.any():
                res.append(
                    {
                        "image_id": iid,
                        "segmentation": rle_utils.encode(p),
                        "score": float(rng.random()),
                        "category_id": 1,
                    }
                )
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "e"}]}
    ref = _fce(gt, res, "boundary")
    got = evaluate_files(gt, res, boundary=True)["boundary"]
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    np.testing.assert_allclose([got[k] for k in keys], ref.stats[:12], atol=TOL, rtol=0)
    assert 0 < got["AP"] < 1
