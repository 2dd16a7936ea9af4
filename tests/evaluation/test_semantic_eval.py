"""mIoU / fwIoU / mAcc / pAcc (``eval --task semantic``) against torchmetrics and a literal
confusion matrix, on random maps and on the semantic subset exported from real COCO panoptic
annotations (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from realdata_support import panoptic_to_coco, realdata

from entityseg_data.errors import DataError
from entityseg_data.evaluation.semantic_eval import (
    ConfusionMatrix,
    SemanticEvaluator,
    evaluate_semantic_files,
    semantic_metrics,
)


def literal_metrics(pairs, k, ignore):
    """The textbook definitions, pixel by pixel (FCN paper / mmsegmentation)."""
    n = np.zeros((k, k), np.int64)
    t = np.zeros(k, np.int64)
    for g, p in pairs:
        for gv, pv in zip(g.ravel().tolist(), p.ravel().tolist()):
            if gv == ignore:
                continue
            t[gv] += 1
            if 0 <= pv < k:
                n[gv, pv] += 1
    tp = np.diag(n).astype(float)
    union = t + n.sum(0) - tp
    iou = [tp[i] / union[i] for i in range(k) if union[i] > 0]
    acc = [tp[i] / t[i] for i in range(k) if t[i] > 0]
    fw = sum(t[i] * tp[i] / union[i] for i in range(k) if t[i] > 0) / t.sum()
    return {"mIoU": np.mean(iou), "fwIoU": fw, "mAcc": np.mean(acc), "pAcc": tp.sum() / t.sum()}


def random_pairs(seed, k=6, n=5, ignore=255, none_pred=True):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        h, w = int(rng.integers(10, 40)), int(rng.integers(10, 40))
        g = rng.integers(0, k - 1, size=(h, w))  # class k-1 never in the GT
        g[rng.random((h, w)) < 0.1] = ignore
        p = np.where(rng.random((h, w)) < 0.6, g, rng.integers(0, k, size=(h, w)))
        p = np.where(p == ignore, 0, p)
        if none_pred:
            p[rng.random((h, w)) < 0.05] = ignore  # "no class" predicted
        pairs.append((g.astype(np.uint8), p.astype(np.uint8)))
    return pairs


@pytest.mark.parametrize("seed", range(3))
def test_random_maps_equal_the_literal_definition(seed):
    k = 6
    pairs = random_pairs(seed, k)
    ev = SemanticEvaluator([f"c{i}" for i in range(k)])
    for i, (g, p) in enumerate(pairs):
        ev.process(i, g, p)
    m = ev.evaluate()
    ref = literal_metrics(pairs, k, 255)
    for key in ("mIoU", "fwIoU", "mAcc", "pAcc"):
        assert m[key] == pytest.approx(ref[key], abs=1e-12), key
    assert m["per_class"][f"c{k - 1}"]["gt_pixels"] == 0
    assert m["per_class"][f"c{k - 1}"]["IoU"] == 0.0  # predicted only: IoU 0, counted
    assert m["per_class"][f"c{k - 1}"]["Acc"] is None


def torchmetrics_case(seed, k=5):
    """Random maps with predictions inside 0..K-1 and every class in the GT (what torchmetrics'
    multiclass metrics accept)."""
    rng = np.random.default_rng(100 + seed)
    pairs = []
    for _ in range(4):
        g = rng.integers(0, k, size=(30, 25))
        g[rng.random(g.shape) < 0.1] = 255
        p = np.where(rng.random(g.shape) < 0.7, g, rng.integers(0, k, size=g.shape))
        p = np.where(p == 255, 1, p)
        pairs.append((g, p))
    ev = SemanticEvaluator([str(i) for i in range(k)])
    for i, (g, p) in enumerate(pairs):
        ev.process(i, g, p)
    return pairs, ev.evaluate()


@pytest.mark.parametrize("seed", range(3))
def test_torchmetrics_cases_equal_the_literal_definition(seed):
    """The torchmetrics comparison's inputs (below, slow tier: importing torchmetrics costs ~3 CPU
    s) against the textbook definitions, in the unit tier."""
    pairs, ours = torchmetrics_case(seed)
    ref = literal_metrics(pairs, 5, 255)
    for key in ("mIoU", "fwIoU", "mAcc", "pAcc"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_random_maps_equal_torchmetrics(seed):
    """torchmetrics' multiclass Jaccard (macro = mIoU, weighted = fwIoU) and accuracy (micro =
    pAcc, macro = mAcc), with predictions inside 0..K-1 and every class in the GT."""
    torch = pytest.importorskip("torch")
    tmc = pytest.importorskip("torchmetrics.classification")
    k = 5
    pairs, ours = torchmetrics_case(seed, k)
    metrics = {
        "mIoU": tmc.MulticlassJaccardIndex(k, average="macro", ignore_index=255),
        "fwIoU": tmc.MulticlassJaccardIndex(k, average="weighted", ignore_index=255),
        "pAcc": tmc.MulticlassAccuracy(k, average="micro", ignore_index=255),
        "mAcc": tmc.MulticlassAccuracy(k, average="macro", ignore_index=255),
    }
    for g, p in pairs:
        for metric in metrics.values():
            metric.update(torch.from_numpy(p), torch.from_numpy(g))
    for key, metric in metrics.items():
        assert ours[key] == pytest.approx(float(metric.compute()), abs=1e-6), key


@pytest.mark.slow
def test_exported_real_subset_and_files(tmp_path):
    """``export subsets`` semantic output of real COCO panoptic annotations: the GT against
    itself is perfect; against label maps with classes swapped the file path equals the
    literal definition."""
    from entityseg_data.export.subsets import semantic_subset

    coco = panoptic_to_coco(
        realdata("coco_panoptic_train100"), "panoptic_train2017.json", "panoptic_train2017"
    )
    names = {c["id"]: c["name"] for c in coco["categories"]}
    coco["images"] = coco["images"][:12]
    keep = {im["id"] for im in coco["images"]}
    coco["annotations"] = [
        dict(a, name=names[a["category_id"]]) for a in coco["annotations"] if a["image_id"] in keep
    ]
    meta = semantic_subset(coco, 20, tmp_path / "gt")
    k = len(meta["classes"])
    perfect = evaluate_semantic_files(
        tmp_path / "gt" / "semantic_categories.json", tmp_path / "gt" / "semantic"
    )
    assert perfect["mIoU"] == 1.0 and perfect["pAcc"] == 1.0 and perfect["info"]["num_images"] == 12
    rng = np.random.default_rng(0)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pairs = []
    for rel in meta["files"].values():
        g = np.asarray(Image.open(tmp_path / "gt" / rel))
        p = g.copy()
        swap = rng.random(g.shape) < 0.2
        p[swap] = rng.integers(0, k, size=int(swap.sum()))
        p = np.roll(p, 3, axis=1)
        Image.fromarray(p).save(pred_dir / f"{rel.split('/')[-1]}")
        pairs.append((g, p))
    m = evaluate_semantic_files(tmp_path / "gt" / "semantic_categories.json", pred_dir)
    ref = literal_metrics(pairs, k, meta["ignore_value"])
    for key in ("mIoU", "fwIoU", "mAcc", "pAcc"):
        assert m[key] == pytest.approx(ref[key], abs=1e-12), key
    assert m["task"] == "semantic" and 0.3 < m["mIoU"] < 1.0
    # the same real pairs against torchmetrics (its predictions must lie in 0..K-1: the rolled-in
    # ignore pixels become class 0)
    torch = pytest.importorskip("torch")
    tmc = pytest.importorskip("torchmetrics.classification")
    ignore = meta["ignore_value"]
    tms = {
        "mIoU": tmc.MulticlassJaccardIndex(k, average="macro", ignore_index=ignore),
        "fwIoU": tmc.MulticlassJaccardIndex(k, average="weighted", ignore_index=ignore),
        "pAcc": tmc.MulticlassAccuracy(k, average="micro", ignore_index=ignore),
        "mAcc": tmc.MulticlassAccuracy(k, average="macro", ignore_index=ignore),
    }
    ev = SemanticEvaluator([c["name"] for c in meta["classes"]], ignore_value=ignore)
    for i, (g, p) in enumerate(pairs):
        p = np.where(p == ignore, 0, p)
        ev.process(i, g, p)
        for metric in tms.values():
            metric.update(
                torch.from_numpy(p.astype(np.int64)), torch.from_numpy(g.astype(np.int64))
            )
    ours = ev.evaluate()
    assert all(v["gt_pixels"] > 0 for v in ours["per_class"].values())  # every class in the GT
    for key, metric in tms.items():
        assert ours[key] == pytest.approx(float(metric.compute()), abs=1e-6), key
    # bad input: a missing prediction, a GT value that is no class
    first = next(iter(meta["files"].values())).split("/")[-1]
    (pred_dir / first).unlink()
    with pytest.raises(DataError, match="no prediction for image"):
        evaluate_semantic_files(tmp_path / "gt" / "semantic_categories.json", pred_dir)
    cm = ConfusionMatrix(3, 255)
    with pytest.raises(DataError, match="ground-truth value 7 is neither a class"):
        cm.update(np.array([[7]]), np.array([[0]]))
    with pytest.raises(DataError, match="is a class index"):
        ConfusionMatrix(3, 2)


def test_reprocessing_an_image_replaces_it():
    ev = SemanticEvaluator(["a", "b"])
    g = np.array([[0, 1]])
    ev.process(1, g, np.array([[1, 0]]))
    ev.process(1, g, g)
    m = ev.evaluate()
    assert m["mIoU"] == 1.0 and m["info"]["pixels"] == 2
    assert semantic_metrics(np.zeros((2, 3), np.int64))["mIoU"] == -1.0
    json.dumps(m)  # serialisable
