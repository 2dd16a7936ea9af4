"""The API the ``predict`` command stands on: the run is planned and checked without a model
(no torch), then predicted and written; SAM outputs converted; model config overrides."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import entityseg_data as esd
from entityseg_data.api.predict import convert_sam_outputs, plan_predictions, predict_files
from entityseg_data.masks import rle


def _image(path, h=40, w=50, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_plan_lists_strides_and_shards_the_inputs(tmp_path):
    for k in range(6):
        _image(tmp_path / "in" / f"{k}.png", seed=k)
    plan = plan_predictions([str(tmp_path / "in")], output=str(tmp_path / "out"))
    assert len(plan) == 6 and plan.formats == ("png", "json") and plan.shard == (0, 1)
    assert plan.output_root == tmp_path / "out"
    assert plan.failures_path == str(tmp_path / "out" / "failures.jsonl")
    names = [j.item.path.name for j in plan.jobs]
    part = plan_predictions(
        [str(tmp_path / "in")], output=f"{tmp_path}/o/{{stem}}", stride=2, shard="1/2"
    )
    assert [j.item.path.name for j in part.jobs] == names[::2][1::2]
    assert part.output_root == tmp_path / "o"
    assert part.failures_path == str(tmp_path / "o" / "failures.1-of-2.jsonl")
    assert plan_predictions([str(tmp_path / "in")], output="x", shard=(2, 3)).shard == (2, 3)


def test_plan_refuses_what_would_lose_or_feed_back_results(tmp_path):
    _image(tmp_path / "src" / "a" / "x.png")
    _image(tmp_path / "src" / "b" / "x.png", seed=1)
    with pytest.raises(esd.ConfigError, match="would both be written"):
        plan_predictions([str(tmp_path / "src")], output=f"{tmp_path}/out/{{stem}}")
    plan_predictions([str(tmp_path / "src")], output=f"{tmp_path}/out/{{relpath}}")
    with pytest.raises(esd.ConfigError, match="inside the input folder"):
        plan_predictions([str(tmp_path / "src")], output=str(tmp_path / "src" / "masks"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(esd.ConfigError):
        plan_predictions([str(tmp_path / "src")], output="o", formats=("gif",))
    with pytest.raises(esd.ConfigError):
        plan_predictions([str(tmp_path / "src")], output="o", resize="big")
    with pytest.raises(esd.ConfigError):
        plan_predictions([], output="o")
    with pytest.raises(esd.DataError):
        plan_predictions([str(tmp_path / "nothing-here")], output="o")


def test_plan_of_a_workspace_carries_the_image_ids(tmp_path):
    photos = tmp_path / "photos"
    for k in range(3):
        _image(photos / f"{k}.png", h=70 + k, w=80, seed=k)
    ws = esd.Workspace.create(tmp_path / "ws")
    ws.ingest(
        [f"folder:{photos}"],
        overrides=["ingest.nsfw_enabled=false", "ingest.min_side=64", "ingest.workers=1"],
    )
    plan = plan_predictions(workspace=ws)
    assert plan.output is None and plan.output_root is None and plan.failures_path is None
    assert sorted(j.image_id for j in plan.jobs) == sorted(r.id for r in ws.images())
    assert all(ws.image_path(r).exists() for r in ws.images())
    with pytest.raises(esd.ConfigError, match="resize"):
        plan_predictions(workspace=ws, resize="32")


def test_planning_imports_no_torch(tmp_path):
    _image(tmp_path / "in" / "a.png")
    code = (
        "import sys\n"
        "from entityseg_data.api.predict import plan_predictions\n"
        f"p = plan_predictions([{str(tmp_path / 'in')!r}], output={str(tmp_path / 'o')!r})\n"
        "print(len(p), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False"], out.stderr


def test_predict_files_writes_outputs_and_summary(tmp_path, oracle_dir):
    for k in range(2):
        _image(tmp_path / "in" / f"{k}.png", h=48, w=64, seed=k)
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    plan = plan_predictions([str(tmp_path / "in")], output=str(tmp_path / "out"))
    seg = esd.load_segmenter(
        oracle_dir / "tiny" / "weights.npz",
        preset="tiny_swin",
        device=esd.prepare_device("cpu", threads=1),
        overrides=["views.min_size=64", "views.max_size=96", "inference.score_thresh=0.0"],
    )
    assert (seg.min_size, seg.config.views.max_size) == (64, 96)
    steps: list[int] = []
    summary = predict_files(seg, plan, progress=steps.append)
    assert (summary.done, summary.failed, sum(steps)) == (2, 1, 3)
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["done"] == 2 and on_disk["failed"] == 1
    assert (tmp_path / "out" / "failures.jsonl").read_text().count("bad.png") == 1
    for k in range(2):
        side = json.loads((tmp_path / "out" / f"{k}.json").read_text())
        assert (tmp_path / "out" / f"{k}.png").is_file() and "entities" in side
    again = predict_files(seg, plan, skip_existing=True)
    assert again.skipped == 2 and again.done == 0


def test_load_segmenter_refuses_architecture_overrides_before_loading(tmp_path):
    with pytest.raises(esd.ConfigError, match="num_queries"):
        esd.load_segmenter(tmp_path / "no-such-model", overrides=["num_queries=3"])


def _sam_file(path, h=30, w=40):
    big = np.zeros((h, w), np.uint8)
    big[5:25, 5:35] = 1
    small = np.zeros((h, w), np.uint8)
    small[15:30, 30:40] = 1  # partly under the big mask
    recs = [
        {"segmentation": rle.encode(m), "area": int(m.sum()), "predicted_iou": s}
        for m, s in ((big, 0.95), (small, 0.9))
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recs))
    return path


def test_convert_sam_outputs(tmp_path):
    good = _sam_file(tmp_path / "in" / "f1.json")
    broken = tmp_path / "in" / "broken.json"
    broken.write_text("{not json")
    out = f"{tmp_path}/out/{{stem}}"
    rep = convert_sam_outputs([good, broken], out, formats=("png", "json"))
    assert (rep.done, rep.skipped) == (1, 0) and len(rep.failed) == 1
    assert rep.failed[0].startswith(f"{broken}: ")
    side = json.loads((tmp_path / "out" / "f1.json").read_text())
    assert side["score_mode"] == "sam:predicted_iou"
    assert len(side["entities"]) == 2  # the smaller mask keeps what the bigger one left
    assert sorted(e["area"] for e in side["entities"]) == [100, 600]
    small = convert_sam_outputs([good], f"{tmp_path}/small/{{stem}}", min_area=300)
    assert small.done == 1
    assert len(json.loads((tmp_path / "small" / "f1.json").read_text())["entities"]) == 1
    assert convert_sam_outputs([good], out, skip_existing=True).skipped == 1
    with pytest.raises(esd.ConfigError, match="overwrite"):
        convert_sam_outputs([good], f"{tmp_path}/in/{{stem}}", formats=("json",))
    assert json.loads(good.read_text())[0]["predicted_iou"] == 0.95
    with pytest.raises(esd.ConfigError):
        convert_sam_outputs([good], out, formats=("overlay",))
