"""Reliability probe rows about RLEs (issue 15, ../shared/findings/reliability_probe.md §5):
corrupt COCO / SAM RLEs and images with 256 or more masks, through the commands a user runs.

The inputs mirror the probe's ``E/`` folder: ``gt.json`` (2 images 20x30, 4 RLE masks) and one
variant per fault in annotation 1 of image 1: ``'0::'`` (the probe's "truncated" RLE: its counts
cover 20 of 600 pixels), a string cut inside a count, characters outside the COCO alphabet, an
RLE of size 40x60; ``gt_300.json`` / ``pred_300.json`` with 300 masks per image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pycocotools import mask as mu

from entityseg_data.cli.main import cli

H, W = 20, 30


def _enc(m: np.ndarray) -> dict:
    r = mu.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [H, W], "counts": r["counts"].decode()}


def _many(n: int, *, score: bool = False) -> list[dict]:
    """n disjoint 1-px masks on each of the two images."""
    out, k = [], 1
    for iid in (1, 2):
        for j in range(n):
            m = np.zeros((H, W), bool)
            m.flat[j % (H * W)] = True
            a = {"id": k, "image_id": iid, "category_id": 1, "segmentation": _enc(m)}
            if score:
                a = {"image_id": iid, "category_id": 1, "segmentation": _enc(m)}
                a["score"] = 1.0 - j / 1000
            else:
                a.update({"area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0})
            out.append(a)
            k += 1
    return out


@pytest.fixture()
def probe(tmp_path) -> Path:
    """The probe's E/ folder."""
    e = tmp_path / "E"
    (e / "imgs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, anns, aid = [], [], 1
    for iid in (1, 2):
        px = (rng.random((H, W, 3)) * 255).astype(np.uint8)
        Image.fromarray(px).save(e / "imgs" / f"im{iid}.png")
        images.append({"id": iid, "file_name": f"im{iid}.png", "height": H, "width": W})
        for k in range(2):
            m = np.zeros((H, W), bool)
            m[k * 10 : (k + 1) * 10, 2 + iid : 20 + iid] = True
            anns.append(
                {
                    "id": aid,
                    "image_id": iid,
                    "category_id": 1,
                    "segmentation": _enc(m),
                    "area": int(m.sum()),
                    "bbox": [0, 0, 1, 1],
                    "iscrowd": 0,
                }
            )
            aid += 1
    cats = [{"id": 1, "name": "thing", "supercategory": "x"}]
    gt = {"images": images, "annotations": anns, "categories": cats}
    (e / "gt.json").write_text(json.dumps(gt))
    good = anns[0]["segmentation"]["counts"]
    for name, counts, size in (
        ("gt_truncrle.json", "0::", None),
        ("gt_cut.json", good[:-1] + "`", None),  # ends inside a count
        ("gt_garbage.json", "!!garbage~~", None),
        ("gt_rlesize.json", None, [40, 60]),
    ):
        g = json.loads(json.dumps(gt))
        if counts is not None:
            g["annotations"][0]["segmentation"]["counts"] = counts
        if size is not None:
            g["annotations"][0]["segmentation"]["size"] = size
        (e / name).write_text(json.dumps(g))
    (e / "gt_300.json").write_text(
        json.dumps({"images": images, "annotations": _many(300), "categories": cats})
    )
    (e / "pred_300.json").write_text(json.dumps(_many(300, score=True)))
    # SAM automatic-mask-generator output of one image: two masks of 150 px
    sam = []
    for j in range(2):
        m = np.zeros((H, W), bool)
        m[j * 10 : j * 10 + 10, 0:15] = True
        sam.append(
            {
                "segmentation": _enc(m),
                "area": int(m.sum()),
                "bbox": [0, j * 10, 15, 10],
                "predicted_iou": 0.9 - j * 0.1,
                "stability_score": 0.9,
                "point_coords": [[1, 1]],
                "crop_box": [0, 0, W, H],
            }
        )
    for name, counts in (
        ("sam_trunc", "0::"),
        ("sam_cut", sam[0]["segmentation"]["counts"][:-1] + "`"),
    ):
        bad = json.loads(json.dumps(sam))
        bad[0]["segmentation"]["counts"] = counts
        (e / f"{name}.json").write_text(json.dumps(bad))
    (e / "sam_ok.json").write_text(json.dumps(sam))
    return e


def _run(args: list[str], cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args)
    finally:
        os.chdir(old)


# ----------------------------------------------------------------------------- 5.8 / 5.9
def test_probe_5_8_eval_with_300_predictions_per_image(probe):
    """probe 5.8: 300 predictions on one image with --max-dets 1 10 100 1000 (uint8 overflow
    in pycocotools area() at 256 RLEs)."""
    res = _run(
        [
            "eval",
            "--gt",
            "gt.json",
            "--pred",
            "pred_300.json",
            "--max-dets",
            "1",
            "10",
            "100",
            "1000",
        ],
        probe,
    )
    assert res.exit_code == 0, res.output
    assert "600 predictions" in res.output


def test_probe_5_9_validate_stats_consistency_eval_with_300_gt_masks(probe, tmp_path):
    """probe 5.9: 300 GT masks on one image through data validate, stats, consistency, eval."""
    res = _run(["data", "validate", "gt_300.json"], probe)
    assert res.exit_code == 0, res.output
    assert "600 annotations" in res.output and "no problems" in res.output
    res = _run(["stats", "gt_300.json", "--out", str(tmp_path / "ST"), "--no-plots"], probe)
    assert res.exit_code == 0, res.output
    res = _run(["consistency", "gt_300.json", "gt_300.json", "--plain-names"], probe)
    assert res.exit_code == 0, res.output
    res = _run(["eval", "--gt", "gt_300.json", "--pred", "pred_300.json"], probe)
    assert res.exit_code == 0, res.output


# ----------------------------------------------------------------------------- 5.18
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("gt_truncrle.json", "RLE counts cover 20 pixels, image has 600"),
        ("gt_cut.json", "truncated"),
        ("gt_garbage.json", "outside the COCO alphabet"),
    ],
)
def test_probe_5_18_export_convert_instances_on_corrupt_rle_is_a_clear_error(
    probe, tmp_path, name, problem
):
    """probe 5.18: `export convert instances` on a truncated / garbage RLE names the record and
    the problem (it spun forever in pycocotools merge, ignoring Ctrl-C). The subprocess timeout
    is only a safety net against the hang."""
    ws = tmp_path / "W"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    py = [sys.executable, "-m", "entityseg_data"]
    subprocess.run([*py, "init", str(ws)], check=True, capture_output=True, env=env, timeout=600)
    p = subprocess.run(
        [*py, "-w", str(ws), "export", "convert", "instances", name, "imgs"],
        cwd=probe,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out
    assert f"{name}: annotations[0] (id 1): " in out and problem in out, out


# ----------------------------------------------------------------------------- 5.19 / 5.20
def _ingest(probe: Path, ws: Path, name: str):
    assert _run(["init", str(ws)], probe).exit_code == 0
    res = _run(["-w", str(ws), "ingest", f"coco:{name}:imgs", "--no-nsfw"], probe)
    assert res.exit_code == 0, res.output
    payloads = {}
    for f in sorted((ws / "predictions").rglob("*.json")):
        payloads[f.name] = json.loads(f.read_text())
    return res.output, payloads


def test_probe_5_19_ingest_coco_with_a_truncated_rle_is_deterministic_and_warns(probe, tmp_path):
    """probe 5.19: `ingest coco:` with a truncated RLE wrote pre-annotations decoded from
    uninitialised memory (different on every run) without a word. Now: the same result on every
    run, the annotation left out with a warning naming the file and record, the image kept."""
    runs = [_ingest(probe, tmp_path / f"W{i}", "gt_cut.json") for i in range(3)]
    for output, payloads in runs:
        assert "gt_cut.json: annotations[0] (id 1): RLE counts string is truncated" in output
        assert "accepted" in output
        assert len(payloads) == 2  # both images kept, with pre-annotations
    assert runs[0][1] == runs[1][1] == runs[2][1]
    by_image = {p["image_id"]: p for p in runs[0][1].values()}
    assert sorted(len(p["entities"]) for p in by_image.values()) == [1, 2]


def test_probe_5_20_ingest_coco_rle_size_mismatch_drops_the_annotation_not_the_image(
    probe, tmp_path
):
    """probe 5.20: an RLE size mismatch made the whole image a permanent internal_error; now
    only that annotation is dropped, with a warning."""
    output, payloads = _ingest(probe, tmp_path / "W", "gt_rlesize.json")
    assert "gt_rlesize.json: annotations[0] (id 1): RLE size 40x60 differs" in output
    assert "internal_error" not in output
    assert len(payloads) == 2
    assert sorted(len(p["entities"]) for p in payloads.values()) == [1, 2]


# ----------------------------------------------------------------------------- 5.22
@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("sam_trunc.json", "RLE counts cover 20 pixels, image has 600"),
        ("sam_cut.json", "truncated"),
    ],
)
def test_probe_5_22_predict_from_sam_refuses_a_truncated_rle(probe, tmp_path, name, problem):
    """probe 5.22: `predict --from-sam` turned a 150 px SAM mask truncated to '0::' into a
    397 px entity; now the file is refused, naming it and the problem."""
    out = tmp_path / "SAMO"
    res = _run(["predict", "--from-sam", name, "-o", str(out)], probe)
    assert res.exit_code == 1, res.output
    assert f"{name}: SAM record [0]: " in res.output and problem in res.output, res.output
    assert not list(out.glob("*.json")) if out.exists() else True
    ok = _run(["predict", "--from-sam", "sam_ok.json", "-o", str(tmp_path / "OK")], probe)
    assert ok.exit_code == 0, ok.output
