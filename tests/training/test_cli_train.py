"""``entityseg-data train`` end to end (tiny config, 1 step, evaluation hook) and the trained
model in ``predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from entityseg_data.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_cli_then_predict(stripes, tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--config",
        str(ROOT / "configs" / "train" / "tiny_cpu.yaml"),
        "--out",
        str(out),
        "--no-progress",
    ]
    sets = {
        "data.train_json": stripes,
        "data.image_root": stripes.parent / "images",
        "data.val_json": stripes,
        "data.eval_max_images": 1,
        "data.eval_min_size": 64,
        "data.eval_max_size": 96,
        "data.eval_boundary": "false",
        "data.min_sizes": "[64]",
        "data.max_size": 96,
        "data.num_workers": 0,
        "loss.num_points": 128,
        "model_overrides": '["num_queries=8", "dec_layers=2"]',
        "max_iter": 1,
        "log_period": 1,
        "threads": 1,
        "tensorboard": "false",
    }
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "trained 1 iterations" in res.output and "eval @ 1" in res.output
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines if "loss" in r] == [1]
    assert any("eval/segm/AP" in r for r in lines)
    assert (out / "model" / "model.safetensors").is_file()

    # the trained folder is what `predict --weights` loads
    pred_out = tmp_path / "pred"
    img = stripes.parent / "images" / "001.png"
    res = CliRunner().invoke(
        cli,
        ["predict", str(img), "--weights", str(out / "model"), "-o", str(pred_out)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    pngs = list(pred_out.rglob("*.png"))
    assert pngs

    from entityseg_data.model.inference.predictor import EntitySegmenter

    seg = EntitySegmenter.from_pretrained(out / "model")
    r = seg(str(img))
    assert r.label_map.shape == (64, 80) and r.label_map.dtype == np.uint16


def test_train_cli_bad_key_is_usage_error(tmp_path):
    res = CliRunner().invoke(cli, ["train", "--set", "optim.lrr=1", "--out", str(tmp_path)])
    assert res.exit_code != 0
    assert "optim.lr" in str(res.exception)
