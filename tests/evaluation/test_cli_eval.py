"""The eval and consistency commands end to end (click runner, real files)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from eval_synth import make_dataset

from entityseg_data.cli.main import cli
from entityseg_data.evaluation import evaluate_files


@pytest.fixture()
def data(tmp_path):
    gt, res = make_dataset(51, n_images=8, overlapping=True, many=True)
    g, r = tmp_path / "gt.json", tmp_path / "res.json"
    g.write_text(json.dumps(gt))
    r.write_text(json.dumps(res))
    return g, r


def test_eval_command_writes_metrics(tmp_path, data):
    g, r = data
    out = tmp_path / "m.json"
    res = CliRunner().invoke(
        cli,
        [
            "eval",
            "--gt",
            str(g),
            "--pred",
            str(r),
            "--boundary",
            "--max-dets",
            "1",
            "10",
            "100",
            "1000",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    ref = evaluate_files(str(g), str(r), boundary=True, max_dets=(1, 10, 100, 1000))
    assert m["segm"] == pytest.approx(ref["segm"])
    assert m["boundary"] == pytest.approx(ref["boundary"])
    assert {"AR1000", "AR50@100", "APl"} <= set(m["segm"])
    assert m["info"]["max_dets"] == [1, 10, 100, 1000]
    assert "AR50@100" in res.output and "overlapping predictions" in res.output


def test_eval_command_bad_input(tmp_path, data):
    g, _ = data
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1}')
    from entityseg_data.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["eval", "--gt", str(g), "--pred", str(bad)])
    assert e.value.code == 1


def test_consistency_command(tmp_path, data):
    g, _ = data
    res = CliRunner().invoke(
        cli,
        [
            *("consistency", str(g), str(g), "--format", "json", "--plain-names"),
            *("--per-image", str(tmp_path / "p.csv")),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output.split("wrote")[0])
    a, b = rep["annotators"]
    assert rep["mask_map"][a][b] == pytest.approx(1.0)
    assert (tmp_path / "p.csv").read_text().startswith("image,gt,pred,ap")
    md = CliRunner().invoke(cli, ["consistency", str(g), str(g), "--plain-names"])
    assert md.exit_code == 0 and "Mask mAP" in md.output
