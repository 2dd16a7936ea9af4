"""PQ / SQ / RQ (``eval --task panoptic``) against torchmetrics' PanopticQuality and against a
line-by-line port of panopticapi's ``pq_compute`` (crowd, void), on random and real COCO panoptic
data (issue 16)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from realdata_support import read_panoptic_ids, realdata

from entityseg_data.errors import DataError
from entityseg_data.evaluation.panoptic_eval import (
    PanopticCategory,
    PanopticEvaluator,
    Segment,
    evaluate_panoptic_files,
)

THINGS = (1, 2, 3)
STUFF = (7, 8, 9)
UNUSED = 11  # a thing category no one annotates


def panopticapi_reference(gt_json: dict, pred_json: dict, gt_dir: Path, pred_dir: Path):
    """panopticapi.evaluation.pq_compute (cocodataset/panopticapi, BSD-2), ported for the tests:
    per-image np.unique of gt * 2^24 + pred, GT areas from the JSON, the same match / FN / FP
    rules and pq_average. Returns {"All"|"Things"|"Stuff": (pq, sq, rq, n), "per_class"}."""
    offset, void = 256**3, 0
    cats = {c["id"]: c for c in gt_json["categories"]}
    stat = defaultdict(lambda: [0.0, 0, 0, 0])  # iou, tp, fp, fn
    preds = {a["image_id"]: a for a in pred_json["annotations"]}
    for ga in gt_json["annotations"]:
        pa = preds[ga["image_id"]]
        pan_gt = read_panoptic_ids(gt_dir / ga["file_name"]).astype(np.uint64)
        pan_pred = read_panoptic_ids(pred_dir / pa["file_name"]).astype(np.uint64)
        gt_segms = {s["id"]: dict(s) for s in ga["segments_info"]}
        pred_segms = {s["id"]: dict(s) for s in pa["segments_info"]}
        labels, cnt = np.unique(pan_pred, return_counts=True)
        for label, c in zip(labels, cnt):
            if int(label) in pred_segms:
                pred_segms[int(label)]["area"] = int(c)
        gt_pred = {}
        labels, cnt = np.unique(pan_gt * offset + pan_pred, return_counts=True)
        for label, c in zip(labels, cnt):
            gt_pred[(int(label) // offset, int(label) % offset)] = int(c)
        gt_matched, pred_matched = set(), set()
        for (g, p), inter in gt_pred.items():
            if g not in gt_segms or p not in pred_segms:
                continue
            if gt_segms[g]["iscrowd"] == 1:
                continue
            if gt_segms[g]["category_id"] != pred_segms[p]["category_id"]:
                continue
            union = pred_segms[p]["area"] + gt_segms[g]["area"] - inter - gt_pred.get((void, p), 0)
            iou = inter / union
            if iou > 0.5:
                stat[gt_segms[g]["category_id"]][0] += iou
                stat[gt_segms[g]["category_id"]][1] += 1
                gt_matched.add(g)
                pred_matched.add(p)
        crowd = {}
        for g, info in gt_segms.items():
            if g in gt_matched:
                continue
            if info["iscrowd"] == 1:
                crowd[info["category_id"]] = g
                continue
            stat[info["category_id"]][3] += 1
        for p, info in pred_segms.items():
            if p in pred_matched:
                continue
            inter = gt_pred.get((void, p), 0)
            if info["category_id"] in crowd:
                inter += gt_pred.get((crowd[info["category_id"]], p), 0)
            if inter / info["area"] > 0.5:
                continue
            stat[info["category_id"]][2] += 1
    out = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        pq = sq = rq = 0.0
        n = 0
        per = {}
        for label, info in cats.items():
            if isthing is not None and (info["isthing"] == 1) != isthing:
                continue
            iou, tp, fp, fn = stat[label]
            if tp + fp + fn == 0:
                per[label] = (0.0, 0.0, 0.0)
                continue
            n += 1
            per[label] = (
                iou / (tp + 0.5 * fp + 0.5 * fn),
                iou / tp if tp else 0.0,
                tp / (tp + 0.5 * fp + 0.5 * fn),
            )
            pq, sq, rq = pq + per[label][0], sq + per[label][1], rq + per[label][2]
        out[name] = (pq / n, sq / n, rq / n, n)
        if name == "All":
            out["per_class"] = per
    return out


def _write_png(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = ids.astype(np.uint32)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def _categories():
    cats = [{"id": c, "name": f"thing{c}", "isthing": 1} for c in (*THINGS, UNUSED)]
    cats += [{"id": c, "name": f"stuff{c}", "isthing": 0} for c in STUFF]
    return cats


def random_panoptic(tmp: Path, seed: int, n_images: int = 6, *, crowd=True, pred_void=True):
    """(gt_json path, pred_json path) of random GT / predictions written in the COCO panoptic
    format: stuff bands (one segment per class), thing blobs, GT void, crowd things; predictions
    move, relabel, split and invent segments and may leave void."""
    rng = np.random.default_rng(seed)
    gt_anns, pred_anns, images = [], [], []
    for i in range(n_images):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        iid = 100 + i
        images.append({"id": iid, "file_name": f"{iid}.jpg", "height": h, "width": w})
        ids = np.zeros((h, w), np.int64)
        segs = []
        cuts = np.sort(rng.choice(np.arange(5, h - 5), size=2, replace=False))
        for band, (y0, y1) in enumerate(zip((0, *cuts), (*cuts, h))):
            cat = STUFF[band] if rng.random() < 0.8 else STUFF[0]
            existing = [s for s in segs if s["category_id"] == cat]
            sid = existing[0]["id"] if existing else int(rng.integers(1, 1 << 24))
            ids[y0:y1] = sid
            if not existing:
                segs.append({"id": sid, "category_id": cat, "iscrowd": 0})
        for _ in range(int(rng.integers(1, 7))):
            y0, x0 = int(rng.integers(0, h - 6)), int(rng.integers(0, w - 6))
            sid = int(rng.integers(1, 1 << 24))
            ids[y0 : y0 + int(rng.integers(4, 25)), x0 : x0 + int(rng.integers(4, 25))] = sid
            segs.append(
                {
                    "id": sid,
                    "category_id": int(rng.choice(THINGS)),
                    "iscrowd": int(crowd and rng.random() < 0.15),
                }
            )
        if rng.random() < 0.7:  # GT void
            y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
            ids[y0 : y0 + 8, x0 : x0 + int(rng.integers(3, 12))] = 0
        present = set(np.unique(ids).tolist())
        segs = [s for s in segs if s["id"] in present]
        for s in segs:
            s["area"] = int((ids == s["id"]).sum())
        # predictions
        pids = np.roll(ids, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        psegs = []
        for s in segs:
            cat = s["category_id"]
            if rng.random() < 0.15:  # wrong class
                cat = int(rng.choice(THINGS if cat in THINGS else STUFF))
            psegs.append({"id": s["id"], "category_id": cat})
        if segs and rng.random() < 0.6:  # split one segment in two
            victim = segs[int(rng.integers(0, len(segs)))]
            m = pids == victim["id"]
            cols = np.flatnonzero(m.any(0))
            if cols.size > 2:
                nid = int(rng.integers(1, 1 << 24))
                half = m & (np.arange(w)[None, :] >= cols[cols.size // 2])
                pids[half] = nid
                cat = next(p["category_id"] for p in psegs if p["id"] == victim["id"])
                psegs.append({"id": nid, "category_id": cat})
        for _ in range(int(rng.integers(0, 3))):  # invented segments
            y0, x0 = int(rng.integers(0, h - 5)), int(rng.integers(0, w - 5))
            nid = int(rng.integers(1, 1 << 24))
            pids[y0 : y0 + 5, x0 : x0 + 5] = nid
            psegs.append({"id": nid, "category_id": int(rng.choice((*THINGS, *STUFF)))})
        if pred_void and rng.random() < 0.5:
            pids[: int(rng.integers(1, 6))] = 0
        elif not pred_void:
            # cover GT void too: every predicted pixel belongs to a segment
            fill = int(rng.integers(1, 1 << 24))
            if (pids == 0).any():
                pids[pids == 0] = fill
                psegs.append({"id": fill, "category_id": STUFF[2]})
        if not pred_void:  # COCO convention (and torchmetrics'): one segment per stuff class
            first: dict[int, int] = {}
            for p in psegs:
                if p["category_id"] in STUFF:
                    keep = first.setdefault(p["category_id"], p["id"])
                    pids[pids == p["id"]] = keep
        ppresent = set(np.unique(pids).tolist())
        psegs = [p for p in psegs if p["id"] in ppresent]
        _write_png(tmp / "gt" / f"{iid}.png", ids)
        _write_png(tmp / "pred" / f"{iid}.png", pids)
        gt_anns.append({"image_id": iid, "file_name": f"{iid}.png", "segments_info": segs})
        pred_anns.append({"image_id": iid, "file_name": f"{iid}.png", "segments_info": psegs})
    gt = {"images": images, "annotations": gt_anns, "categories": _categories()}
    pred = {"images": images, "annotations": pred_anns, "categories": _categories()}
    (tmp / "gt.json").write_text(json.dumps(gt))
    (tmp / "pred.json").write_text(json.dumps(pred))
    return tmp / "gt.json", tmp / "pred.json"


def assert_equal_to_panopticapi(gt_path: Path, pred_path: Path, gt_dir=None, pred_dir=None):
    gt_dir = gt_dir or gt_path.with_suffix("")
    pred_dir = pred_dir or pred_path.with_suffix("")
    ours = evaluate_panoptic_files(gt_path, pred_path, gt_folder=gt_dir, pred_folder=pred_dir)
    ref = panopticapi_reference(
        json.loads(gt_path.read_text()), json.loads(pred_path.read_text()), gt_dir, pred_dir
    )
    for name in ("All", "Things", "Stuff"):
        pq, sq, rq, n = ref[name]
        assert ours[name]["n"] == n
        assert ours[name]["PQ"] == pytest.approx(pq, abs=1e-12)
        assert ours[name]["SQ"] == pytest.approx(sq, abs=1e-12)
        assert ours[name]["RQ"] == pytest.approx(rq, abs=1e-12)
    by_id = {v["id"]: v for v in ours["per_category"].values()}
    for cid, (pq, sq, rq) in ref["per_class"].items():
        assert (by_id[cid]["PQ"], by_id[cid]["SQ"], by_id[cid]["RQ"]) == pytest.approx(
            (pq, sq, rq), abs=1e-12
        )
    return ours


@pytest.mark.parametrize("seed", range(4))
def test_random_cases_equal_panopticapi(tmp_path, seed):
    ours = assert_equal_to_panopticapi(*random_panoptic(tmp_path, seed))
    assert ours["task"] == "panoptic" and ours["Things"]["n"] > 0 and ours["Stuff"]["n"] > 0
    assert not ours["per_category"][f"thing{UNUSED}"]["counted"]


def _torchmetrics_inputs(json_path: Path, folder: Path, things, void_cat=0):
    """(N, H, W, 2) [category, instance] per image for torchmetrics (one image at a time)."""
    data = json.loads(json_path.read_text())
    out = {}
    for a in data["annotations"]:
        ids = read_panoptic_ids(folder / a["file_name"])
        cat = np.full(ids.shape, void_cat, np.int64)
        inst = np.zeros(ids.shape, np.int64)
        for k, s in enumerate(a["segments_info"]):
            m = ids == s["id"]
            cat[m] = s["category_id"]
            inst[m] = k + 1 if s["category_id"] in things else 0
        out[a["image_id"]] = np.stack([cat, inst], -1)
    return out


@pytest.mark.slow  # importing torchmetrics.detection costs ~3 CPU s (the port-based checks stay)
@pytest.mark.parametrize("seed", range(3))
def test_random_cases_equal_torchmetrics(tmp_path, seed):
    """torchmetrics has no crowd, merges the segments of a stuff class and treats predicted void
    differently from panopticapi: the comparison uses GT without crowd and predictions that cover
    every pixel with one segment per stuff class."""
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.detection")
    gt_path, pred_path = random_panoptic(tmp_path, 50 + seed, crowd=False, pred_void=False)
    ours = evaluate_panoptic_files(gt_path, pred_path)
    things = {*THINGS, UNUSED}
    metric = tm.PanopticQuality(
        things=things, stuffs=set(STUFF), return_sq_and_rq=True, return_per_class=True
    )
    total = tm.PanopticQuality(things=things, stuffs=set(STUFF), return_sq_and_rq=True)
    gts = _torchmetrics_inputs(gt_path, gt_path.with_suffix(""), things)
    preds = _torchmetrics_inputs(pred_path, pred_path.with_suffix(""), things)
    for iid in gts:
        p, t = torch.from_numpy(preds[iid])[None], torch.from_numpy(gts[iid])[None]
        metric.update(p, t)
        total.update(p, t)
    per = metric.compute().numpy()  # rows: things sorted, then stuffs sorted
    order = sorted(things) + sorted(STUFF)
    by_id = {v["id"]: v for v in ours["per_category"].values()}
    for row, cid in zip(per, order):
        assert (by_id[cid]["PQ"], by_id[cid]["SQ"], by_id[cid]["RQ"]) == pytest.approx(
            tuple(row),
            abs=1e-6,  # torchmetrics sums IoUs in float32
        )
    pq, sq, rq = total.compute().numpy()
    assert (ours["All"]["PQ"], ours["All"]["SQ"], ours["All"]["RQ"]) == pytest.approx(
        (pq, sq, rq), abs=1e-6
    )


def _perturbed_real_predictions(src_json: Path, src_dir: Path, out: Path, seed: int):
    """Predictions from real GT: segments shifted, some dropped to void, some relabelled, one
    thing split, crowd flags dropped."""
    rng = np.random.default_rng(seed)
    data = json.loads(src_json.read_text())
    cats = [c["id"] for c in data["categories"]]
    anns = []
    for a in data["annotations"]:
        ids = read_panoptic_ids(src_dir / a["file_name"])
        ids = np.roll(ids, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
        segs = []
        for s in a["segments_info"]:
            if rng.random() < 0.1:
                ids[ids == s["id"]] = 0
                continue
            cat = s["category_id"] if rng.random() < 0.85 else int(rng.choice(cats))
            segs.append({"id": s["id"], "category_id": cat})
        present = set(np.unique(ids).tolist())
        segs = [s for s in segs if s["id"] in present]
        _write_png(out / a["file_name"], ids)
        anns.append({"image_id": a["image_id"], "file_name": a["file_name"], "segments_info": segs})
    path = out.with_suffix(".json")
    path.write_text(json.dumps({"annotations": anns, "categories": data["categories"]}))
    return path


def test_real_panopticapi_sample_equal_panopticapi(tmp_path):
    """panopticapi's own sample (2 COCO val2017 images, 3 crowd segments) against perturbed
    predictions, and the GT against itself (PQ = SQ = RQ = 1)."""
    folder = realdata("panopticapi_sample") / "sample_data"
    gt_json = folder / "panoptic_examples.json"
    gt_dir = folder / "panoptic_examples"
    same = assert_equal_to_panopticapi(gt_json, gt_json, gt_dir, gt_dir)
    assert same["All"]["PQ"] == 1.0 and same["All"]["RQ"] == 1.0
    for seed in range(3):
        pred = _perturbed_real_predictions(gt_json, gt_dir, tmp_path / f"pred{seed}", seed)
        ours = assert_equal_to_panopticapi(gt_json, pred, gt_dir, pred.with_suffix(""))
        assert 0.2 < ours["All"]["PQ"] < 1.0


@pytest.mark.slow
def test_real_coco_train100_equal_panopticapi(tmp_path):
    folder = realdata("coco_panoptic_train100")
    gt_json = folder / "panoptic_train2017.json"
    gt_dir = folder / "panoptic_train2017"
    data = json.loads(gt_json.read_text())
    data["annotations"] = data["annotations"][:30]
    kept = {a["image_id"] for a in data["annotations"]}  # a GT lists its annotations' images
    data["images"] = [im for im in data["images"] if im["id"] in kept]
    sub = tmp_path / "gt30.json"
    sub.write_text(json.dumps(data))
    pred = _perturbed_real_predictions(sub, gt_dir, tmp_path / "pred", 5)
    ours = assert_equal_to_panopticapi(sub, pred, gt_dir, pred.with_suffix(""))
    assert ours["Things"]["n"] > 10 and ours["Stuff"]["n"] > 10


def test_streaming_evaluator_and_bad_input(tmp_path):
    cats = [PanopticCategory(1, "a", True), PanopticCategory(2, "b", False)]
    ev = PanopticEvaluator(cats)
    gt = np.zeros((10, 10), np.int64)
    gt[:5] = 5
    gt[5:] = 6
    pred = gt.copy()
    ev.process(1, gt, [Segment(5, 1), Segment(6, 2)], pred, [Segment(5, 1), Segment(6, 2)])
    assert ev.evaluate()["All"]["PQ"] == 1.0
    # the same image again replaces the first, a wrong class makes an FP and an FN
    ev.process(1, gt, [Segment(5, 1), Segment(6, 2)], pred, [Segment(5, 2), Segment(6, 2)])
    m = ev.evaluate()
    assert m["info"]["num_images"] == 1
    assert m["per_category"]["a"]["FN"] == 1 and m["per_category"]["b"]["FP"] == 1
    with pytest.raises(DataError, match="segment id 6 is in the PNG, not in the JSON"):
        ev.process(2, gt, [Segment(5, 1), Segment(6, 2)], pred, [Segment(5, 1)])
    with pytest.raises(DataError, match="unknown category_id 9"):
        ev.process(2, gt, [Segment(5, 1), Segment(6, 2)], pred, [Segment(5, 9), Segment(6, 2)])
    with pytest.raises(DataError, match=r"segment\(s\) \[7\] are in the JSON, not in the PNG"):
        ev.process(
            2, gt, [Segment(5, 1), Segment(6, 2)], pred, [*(Segment(i, 1) for i in (5, 6, 7))]
        )
    gt_path, pred_path = random_panoptic(tmp_path, 3, n_images=2)
    data = json.loads(pred_path.read_text())
    data["annotations"] = data["annotations"][:1]
    pred_path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no prediction for the image with id 101"):
        evaluate_panoptic_files(gt_path, pred_path)


@pytest.mark.slow
def test_real_sample_equal_torchmetrics(tmp_path):
    """The real panopticapi sample (crowd segments made void, as torchmetrics has no crowd)
    against shifted, partly relabelled predictions covering every pixel."""
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.detection")
    folder = realdata("panopticapi_sample") / "sample_data"
    data = json.loads((folder / "panoptic_examples.json").read_text())
    cats = {c["id"]: c for c in data["categories"]}
    things = {c for c, v in cats.items() if v["isthing"] == 1}
    stuffs = set(cats) - things
    rng = np.random.default_rng(0)
    gt_anns, pred_anns = [], []
    for a in data["annotations"]:
        ids = read_panoptic_ids(folder / "panoptic_examples" / a["file_name"])
        segs = []
        for s in a["segments_info"]:
            if s["iscrowd"]:
                ids[ids == s["id"]] = 0
            else:
                segs.append(dict(s))
        pids = np.roll(ids, (3, -2), axis=(0, 1))
        psegs, stuff_id = [], {}
        for s in segs:
            cat = s["category_id"]
            if cat in things and rng.random() < 0.2:
                cat = int(rng.choice(sorted(things)))
            if cat in stuffs:
                if cat in stuff_id:
                    pids[pids == s["id"]] = stuff_id[cat]
                    continue
                stuff_id[cat] = s["id"]
            psegs.append({"id": s["id"], "category_id": cat})
        fill_cat = sorted(stuffs)[0]
        fill = stuff_id.get(fill_cat)
        if fill is None:
            fill = 1 + int(max(s["id"] for s in segs))
            psegs.append({"id": fill, "category_id": fill_cat})
        pids[pids == 0] = fill
        present = set(np.unique(pids).tolist())
        psegs = [p for p in psegs if p["id"] in present]
        for s in segs:
            s["area"] = int((ids == s["id"]).sum())
        _write_png(tmp_path / "gt" / a["file_name"], ids)
        _write_png(tmp_path / "pred" / a["file_name"], pids)
        gt_anns.append(
            {"image_id": a["image_id"], "file_name": a["file_name"], "segments_info": segs}
        )
        pred_anns.append(
            {"image_id": a["image_id"], "file_name": a["file_name"], "segments_info": psegs}
        )
    (tmp_path / "gt.json").write_text(
        json.dumps({"annotations": gt_anns, "categories": data["categories"]})
    )
    (tmp_path / "pred.json").write_text(
        json.dumps({"annotations": pred_anns, "categories": data["categories"]})
    )
    ours = assert_equal_to_panopticapi(tmp_path / "gt.json", tmp_path / "pred.json")
    metric = tm.PanopticQuality(
        things=things, stuffs=stuffs, return_sq_and_rq=True, return_per_class=True
    )
    gts = _torchmetrics_inputs(tmp_path / "gt.json", tmp_path / "gt", things)
    preds = _torchmetrics_inputs(tmp_path / "pred.json", tmp_path / "pred", things)
    for iid in gts:
        metric.update(torch.from_numpy(preds[iid])[None], torch.from_numpy(gts[iid])[None])
    per = metric.compute().numpy()
    by_id = {v["id"]: v for v in ours["per_category"].values()}
    for row, cid in zip(per, sorted(things) + sorted(stuffs)):
        got = (by_id[cid]["PQ"], by_id[cid]["SQ"], by_id[cid]["RQ"])
        assert got == pytest.approx(tuple(row), abs=1e-6), cid
    assert 0.2 < ours["All"]["PQ"] < 1.0


@pytest.mark.slow
def test_equal_to_the_panopticapi_package(tmp_path):
    """Against panopticapi's own ``pq_compute`` rather than the port above, where it is installed
    (not a dependency: its PyPI packaging ``panopticapi-lite`` pins numpy < 2, and the code runs on
    numpy 2: ``pip install --no-deps panopticapi-lite``): random sets, panopticapi's real sample
    perturbed, and the 100 real COCO train2017 panoptic images perturbed."""
    pq_eval = pytest.importorskip("panopticapi.evaluation")
    import contextlib
    import io

    def check(gt_path: Path, pred_path: Path, gt_dir: Path, pred_dir: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            ref = pq_eval.pq_compute(str(gt_path), str(pred_path), str(gt_dir), str(pred_dir))
        ours = evaluate_panoptic_files(gt_path, pred_path, gt_folder=gt_dir, pred_folder=pred_dir)
        for name in ("All", "Things", "Stuff"):
            assert ours[name]["n"] == ref[name]["n"]
            for key in ("PQ", "SQ", "RQ"):
                assert ours[name][key] == pytest.approx(ref[name][key.lower()], abs=1e-12)
        by_id = {v["id"]: v for v in ours["per_category"].values()}
        for cid, r in ref["per_class"].items():
            for key in ("PQ", "SQ", "RQ"):
                assert by_id[int(cid)][key] == pytest.approx(r[key.lower()], abs=1e-12)

    for seed in range(2):
        gt, pred = random_panoptic(tmp_path / f"r{seed}", seed)
        check(gt, pred, gt.with_suffix(""), pred.with_suffix(""))
    for name, json_name, png_dir in (
        ("panopticapi_sample/sample_data", "panoptic_examples.json", "panoptic_examples"),
        ("coco_panoptic_train100", "panoptic_train2017.json", "panoptic_train2017"),
    ):
        folder = realdata(name)
        pred = _perturbed_real_predictions(
            folder / json_name, folder / png_dir, tmp_path / name.split("/")[0], 1
        )
        check(folder / json_name, pred, folder / png_dir, pred.with_suffix(""))
