"""Class-aware instance AP (``eval --task instance``) against pycocotools on random and real data
(issue 16): the full precision / recall arrays and the 12 summary numbers must be equal."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from realdata_support import panoptic_to_coco, realdata

from entityseg_data.errors import DataError
from entityseg_data.evaluation.instance_eval import (
    InstanceEvaluator,
    evaluate_instance_files,
    load_instance_gt,
    load_instance_predictions,
    stack_accumulated,
)
from entityseg_data.evaluation.matching import Params, accumulate
from entityseg_data.masks import rle as rle_utils


def pycocotools_eval(gt: dict, results: list, max_dets=(1, 10, 100)):
    """pycocotools' COCOeval(segm) of a GT dict and a results list (stdout silenced)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt))
        coco.createIndex()
        dt = coco.loadRes(json.loads(json.dumps(results))) if results else COCO()
        ev = COCOeval(coco, dt, iouType="segm")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _blob(rng, h, w):
    m = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 3)):
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[y0 : y0 + rng.integers(2, h // 2 + 3), x0 : x0 + rng.integers(2, w // 2 + 3)] = 1
    return m


def _perturb(rng, m):
    out = m.copy()
    h, w = m.shape
    dy, dx = rng.integers(-3, 4, size=2)
    out = np.roll(out, (dy, dx), axis=(0, 1))
    if rng.random() < 0.5:
        out &= (rng.random((h, w)) > 0.1).astype(np.uint8)
    if not out.any():
        out[rng.integers(0, h), rng.integers(0, w)] = 1
    return out


def random_case(seed: int, n_images: int = 10, n_cats: int = 5):
    """GT dict with ``n_cats`` categories (one never annotated), crowd GT, images without GT or
    detections; detections with wrong classes, tied scores, >20 per category in one image."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 3 * k + 2, "name": f"class{k}"} for k in range(n_cats)]
    images, anns, results = [], [], []
    aid = 1
    for i in range(n_images):
        h, w = int(rng.integers(30, 120)), int(rng.integers(30, 120))
        iid = 10 + 3 * i
        images.append({"id": iid, "height": h, "width": w, "file_name": f"{iid}.jpg"})
        n_gt = 0 if i % 4 == 1 else int(rng.integers(1, 8))
        for _ in range(n_gt):
            m = _blob(rng, h, w)
            cid = cats[int(rng.integers(0, n_cats - 1))]["id"]  # the last category: no GT
            r = rle_utils.encode(m)
            anns.append(
                {
                    "id": aid,
                    "image_id": iid,
                    "category_id": cid,
                    "segmentation": r,
                    "area": int(m.sum()) if rng.random() < 0.9 else int(m.sum()) + 7,
                    "bbox": rle_utils.bbox(r),
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
            aid += 1
            if i % 5 == 2:
                continue  # no detections here
            for _ in range(int(rng.integers(0, 3))):
                pm = _perturb(rng, m)
                right = rng.random() < 0.8
                pc = cid if right else cats[int(rng.integers(0, n_cats))]["id"]
                results.append(
                    {
                        "image_id": iid,
                        "category_id": pc,
                        "segmentation": rle_utils.encode(pm),
                        "score": float(rng.choice([0.3, 0.5, 0.5, 0.9]))
                        if rng.random() < 0.5
                        else float(rng.random()),
                    }
                )
        if i == 3:  # many detections of one category: the per-category maxDets cut
            for _ in range(25):
                results.append(
                    {
                        "image_id": iid,
                        "category_id": cats[0]["id"],
                        "segmentation": rle_utils.encode(_blob(rng, h, w)),
                        "score": float(rng.random()),
                    }
                )
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, results


def ours(gt, results, max_dets=(1, 10, 100)):
    gts = load_instance_gt(gt)
    preds = load_instance_predictions(results, gts)
    ev = InstanceEvaluator(gts.categories, max_dets=max_dets)
    for iid in reversed(list(gts.images)):  # any order
        ev.process(gts.images[iid], preds[iid])
    return ev


def assert_equal_to_pycocotools(gt, results, max_dets=(1, 10, 100)):
    ref = pycocotools_eval(gt, results, max_dets)
    ev = ours(gt, results, max_dets)
    metrics = ev.evaluate()
    params = Params(max_dets=max_dets)
    ids = sorted(ev._images)
    per_cat = [
        accumulate([ev._results[c][i] for i in ids if i in ev._results[c]], params)
        for c in sorted(ev.categories)
    ]
    precision, recall = stack_accumulated(per_cat)
    np.testing.assert_array_equal(precision, ref.eval["precision"])
    np.testing.assert_array_equal(recall, ref.eval["recall"])
    s = metrics["segm"]
    md = 100 if 100 in max_dets else max_dets[-1]
    mine = [s["AP"] if md == 100 else -1.0, s["AP50"], s["AP75"], s["APs"], s["APm"], s["APl"]]
    if md == max_dets[2]:
        mine += [s[f"AR{max_dets[0]}"], s[f"AR{max_dets[1]}"], s[f"AR{md}"]]
        mine += [s["ARs"], s["ARm"], s["ARl"]]
    np.testing.assert_allclose(mine, ref.stats[: len(mine)], rtol=0, atol=1e-12)
    return metrics


@pytest.mark.parametrize("seed", range(4))
def test_random_cases_equal_pycocotools(seed):
    gt, results = random_case(seed)
    max_dets = (1, 10, 100) if seed % 2 == 0 else (1, 5, 20)
    m = assert_equal_to_pycocotools(gt, results, max_dets)
    assert m["task"] == "instance" and m["info"]["class_agnostic"] is False
    # the never-annotated category is undefined, the others are defined
    last = gt["categories"][-1]["name"]
    assert m["per_category"][last]["AP"] == -1
    defined = [v["AP"] for v in m["per_category"].values() if v["AP"] > -1]
    assert m["segm"]["AP"] == pytest.approx(np.mean(defined), abs=1e-12)


def test_real_coco_instances_equal_pycocotools():
    """icevision's 6 real COCO train2017 images (polygons, one crowd RLE, an image without
    annotations), predictions = perturbed GT with some wrong classes."""
    folder = realdata("icevision_coco2017_6img")
    gt = json.loads((folder / "annotations.json").read_text())
    rng = np.random.default_rng(7)
    gts = load_instance_gt(gt)
    cat_ids = sorted(gts.categories)
    results = []
    for iid, g in gts.images.items():
        for r, c, crowd in zip(g.rles, g.category_ids, g.crowd):
            if crowd:
                continue
            m = rle_utils.decode(r)
            for _ in range(int(rng.integers(1, 3))):
                cid = int(c) if rng.random() < 0.8 else int(rng.choice(cat_ids))
                results.append(
                    {
                        "image_id": iid,
                        "category_id": cid,
                        "segmentation": rle_utils.encode(_perturb(rng, m)),
                        "score": float(rng.random()),
                    }
                )
    m = assert_equal_to_pycocotools(gt, results)
    assert 0.1 < m["segm"]["AP"] < 1.0


@pytest.mark.slow
def test_real_coco_panoptic_as_instances_equal_pycocotools():
    """The 100 real COCO panoptic images as instances (133 categories, thing and stuff, crowd),
    predictions: each segment shifted by a few pixels, some dropped, some relabelled."""
    coco = panoptic_to_coco(
        realdata("coco_panoptic_train100"), "panoptic_train2017.json", "panoptic_train2017"
    )
    coco["images"] = coco["images"][:40]
    keep = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    rng = np.random.default_rng(3)
    cat_ids = [c["id"] for c in coco["categories"]]
    results = []
    for a in coco["annotations"]:
        if a["iscrowd"] or rng.random() < 0.15:
            continue
        m = rle_utils.decode(a["segmentation"])
        results.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"]
                if rng.random() < 0.85
                else int(rng.choice(cat_ids)),
                "segmentation": rle_utils.encode(_perturb(rng, m)),
                "score": float(rng.random()),
            }
        )
    assert_equal_to_pycocotools(coco, results)


def test_files_and_bad_input(tmp_path):
    gt, results = random_case(11, n_images=4)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    a = evaluate_instance_files(tmp_path / "gt.json", tmp_path / "res.json")
    b = ours(gt, results).evaluate()
    assert a == b
    bad = [dict(results[0], category_id=999)]
    with pytest.raises(DataError, match="category id 999 is not a GT category"):
        evaluate_instance_files(gt, bad)
    bad = [dict(results[0], score=float("nan"))]
    with pytest.raises(DataError, match=r"prediction \[0\].*score"):
        evaluate_instance_files(gt, bad)
    bad = [{k: v for k, v in results[0].items() if k != "category_id"}]
    with pytest.raises(DataError, match="missing category_id"):
        evaluate_instance_files(gt, bad)
    nocats = dict(gt, categories=[])
    with pytest.raises(DataError, match="categories"):
        evaluate_instance_files(nocats, results)


def test_real_coco_entity_task_equals_class_agnostic_pycocotools():
    """The default (class-agnostic) task on the same real annotations: pycocotools with every
    category set to one, as the official entity evaluator does."""
    from entityseg_data.evaluation import evaluate_files

    gt = json.loads((realdata("icevision_coco2017_6img") / "annotations.json").read_text())
    rng = np.random.default_rng(1)
    results = []
    for a in gt["annotations"]:
        if a.get("iscrowd"):
            continue
        img = next(i for i in gt["images"] if i["id"] == a["image_id"])
        m = rle_utils.decode(
            rle_utils.to_compressed(a["segmentation"], img["height"], img["width"])
        )
        results.append(
            {
                "image_id": a["image_id"],
                "category_id": 1,
                "segmentation": rle_utils.encode(_perturb(rng, m)),
                "score": float(rng.random()),
            }
        )
    agnostic = dict(
        gt,
        categories=[{"id": 1, "name": "entity"}],
        annotations=[dict(a, category_id=1) for a in gt["annotations"]],
    )
    ref = pycocotools_eval(agnostic, results)
    s = evaluate_files(gt, results)["segm"]
    mine = [s[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")]
    mine += [s["ARs"], s["ARm"], s["ARl"]]
    np.testing.assert_allclose(mine, ref.stats, rtol=0, atol=1e-12)
