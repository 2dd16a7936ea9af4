"""``eval --task instance|panoptic|semantic`` on what ``export subsets`` writes from real COCO
panoptic annotations (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from realdata_support import panoptic_to_coco, realdata

from entityseg_data.cli.main import cli
from entityseg_data.evaluation.instance_eval import evaluate_instance_files
from entityseg_data.evaluation.panoptic_eval import evaluate_panoptic_files
from entityseg_data.masks import rle as rle_utils


@pytest.fixture(scope="module")
def subsets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("subsets")
    coco = panoptic_to_coco(
        realdata("coco_panoptic_train100"),
        "panoptic_train2017.json",
        "panoptic_train2017",
        first_images=5,
    )
    names = {c["id"]: c["name"] for c in coco["categories"]}
    coco["annotations"] = [dict(a, name=names[a["category_id"]]) for a in coco["annotations"]]
    (tmp / "coco.json").write_text(json.dumps(coco))
    res = CliRunner().invoke(
        cli,
        [
            *("export", "subsets", "--json", str(tmp / "coco.json"), "--out", str(tmp / "out")),
            *("--instance", "15", "--semantic", "15", "--panoptic", "15"),
        ],
    )
    assert res.exit_code == 0, res.output
    return tmp / "out"


def read_ids(rgb):
    a = rgb.astype(np.int64)
    return a[..., 0] + 256 * a[..., 1] + 65536 * a[..., 2]


def run(args):
    res = CliRunner().invoke(cli, ["eval", *args])
    assert res.exit_code == 0, res.output
    return res


def test_instance_task(subsets, tmp_path):
    gt = json.loads((subsets / "instance.json").read_text())
    rng = np.random.default_rng(0)
    perfect, noisy = [], []
    for a in gt["annotations"]:
        if a.get("iscrowd"):
            continue
        perfect.append(
            {**{k: a[k] for k in ("image_id", "category_id", "segmentation")}, "score": 1.0}
        )
        m = np.roll(rle_utils.decode(a["segmentation"]), int(rng.integers(-6, 7)), axis=1)
        if m.any():
            noisy.append(
                {
                    "image_id": a["image_id"],
                    "category_id": a["category_id"],
                    "segmentation": rle_utils.encode(m),
                    "score": float(rng.random()),
                }
            )
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    (tmp_path / "noisy.json").write_text(json.dumps(noisy))
    out = tmp_path / "m.json"
    res = run(
        [
            *("--task", "instance", "--gt", str(subsets / "instance.json")),
            *("--pred", str(tmp_path / "perfect.json"), "--out", str(out)),
        ]
    )
    assert "AP50" in res.output and "categories" in res.output
    m = json.loads(out.read_text())
    assert m["task"] == "instance" and m["segm"]["AP"] == pytest.approx(1.0)
    run(
        [
            *("--task", "instance", "--gt", str(subsets / "instance.json")),
            *("--pred", str(tmp_path / "noisy.json"), "--out", str(out)),
        ]
    )
    m = json.loads(out.read_text())
    assert m == evaluate_instance_files(subsets / "instance.json", tmp_path / "noisy.json")
    assert 0.05 < m["segm"]["AP"] < 1.0


def test_panoptic_task(subsets, tmp_path):
    out = tmp_path / "m.json"
    gt = subsets / "panoptic.json"
    res = run(["--task", "panoptic", "--gt", str(gt), "--pred", str(gt), "--out", str(out)])
    assert "Things" in res.output and "Stuff" in res.output
    m = json.loads(out.read_text())
    assert m["All"]["PQ"] == 1.0 and m["Things"]["n"] > 0 and m["Stuff"]["n"] > 0
    # predictions: the GT PNGs shifted, in another folder
    data = json.loads(gt.read_text())
    (tmp_path / "pred").mkdir()
    for a in data["annotations"]:
        rgb = np.asarray(Image.open(subsets / "panoptic" / a["file_name"]))
        shifted = np.roll(rgb, 5, axis=0)
        Image.fromarray(shifted).save(tmp_path / "pred" / a["file_name"])
        present = set(np.unique(read_ids(shifted)).tolist())
        a["segments_info"] = [s for s in a["segments_info"] if s["id"] in present]
    (tmp_path / "pred.json").write_text(json.dumps(data))
    run(
        [
            *("--task", "panoptic", "--gt", str(gt), "--pred", str(tmp_path / "pred.json")),
            *("--pred-folder", str(tmp_path / "pred"), "--out", str(out)),
        ]
    )
    m = json.loads(out.read_text())
    assert m == evaluate_panoptic_files(gt, tmp_path / "pred.json", pred_folder=tmp_path / "pred")
    assert 0.3 < m["All"]["PQ"] < 1.0


def test_semantic_task_and_usage_errors(subsets, tmp_path):
    out = tmp_path / "m.json"
    cats = subsets / "semantic_categories.json"
    res = run(
        [
            "--task",
            "semantic",
            "--gt",
            str(cats),
            "--pred",
            str(subsets / "semantic"),
            "--out",
            str(out),
        ]
    )
    assert "mIoU" in res.output
    m = json.loads(out.read_text())
    assert m["task"] == "semantic" and m["mIoU"] == 1.0 and m["pAcc"] == 1.0
    bad = CliRunner().invoke(
        cli,
        [
            "eval",
            "--task",
            "instance",
            "--gt",
            str(subsets / "instance.json"),
            "--pred",
            str(cats),
            "--boundary",
        ],
    )
    assert bad.exit_code != 0 and "--boundary only apply to --task entity" in bad.output
    bad = CliRunner().invoke(
        cli,
        ["eval", "--task", "semantic", "--gt", str(cats), "--pred", str(cats)],
    )
    assert bad.exit_code != 0 and "must be a folder" in bad.output
