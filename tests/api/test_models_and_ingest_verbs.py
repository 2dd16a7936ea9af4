"""The API the ``model`` and ``ingest`` commands stand on: presets, checkpoint conversion, and the
workspace's re-filter and failure report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import entityseg_data as esd
from entityseg_data.config import WorkspaceConfig, apply_overrides


def test_model_presets_describe_every_preset():
    from entityseg_data.model.presets import PRESETS, RELEASED

    infos = esd.model_presets()
    assert [p.name for p in infos] == list(PRESETS)
    for p in infos:
        cfg = PRESETS[p.name]
        assert (p.architecture, p.backbone, p.num_queries, p.hidden_dim) == (
            cfg.architecture,
            cfg.backbone.name,
            cfg.num_queries,
            cfg.hidden_dim,
        )
        assert p.decoder_layers == cfg.dec_layers - 1
        assert p.released == (p.name in RELEASED)
        assert p.parameters is None  # not counted unless asked
    assert esd.model_preset("tiny_swin") == PRESETS["tiny_swin"]
    with pytest.raises(esd.ConfigError, match="no_such"):
        esd.model_preset("no_such")


def test_convert_checkpoint_writes_a_loadable_folder(oracle_dir, tmp_path):
    src = oracle_dir / "tiny" / "weights.npz"
    rep = esd.convert_checkpoint(src, tmp_path / "conv", preset="tiny_swin")
    on_disk = json.loads((tmp_path / "conv" / "conversion_report.json").read_text())
    assert rep.report == on_disk and rep.out_dir == tmp_path / "conv"
    assert rep.num_tensors == on_disk["num_tensors"] > 0
    assert rep.num_parameters == on_disk["num_parameters"] > rep.num_tensors
    assert rep.architecture == on_disk["architecture"]
    assert sorted(rep.dropped) == ["criterion_2d.empty_weight", "criterion_3d.empty_weight"]
    with np.load(src) as z:  # every source tensor but the dropped ones is in the folder
        assert rep.num_tensors == len(z.files) - len(rep.dropped)


def test_convert_checkpoint_refuses_a_bad_choice_before_importing_torch(tmp_path):
    code = (
        "import sys, entityseg_data as e\n"
        "for kw in ({}, {'preset': 'tiny_swin', 'config': 'x.yaml'}, {'preset': 'nope'}):\n"
        "    try:\n"
        "        e.convert_checkpoint('missing.pth', 'out', **kw)\n"
        "    except e.ConfigError as exc:\n"
        "        print('ConfigError', str(exc).splitlines()[0][:40])\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and all(x.startswith("ConfigError") for x in lines[:3]), out
    assert "nope" in lines[2]
    assert lines[3] == "False"
    assert not (tmp_path / "out").exists()


def _image(path, h, w, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def test_refilter_and_ingest_failures(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    _image(photos / "small.png", 80, 100, 1)
    _image(photos / "large.png", 200, 240, 2)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    cfg = apply_overrides(
        WorkspaceConfig(),
        ["ingest.nsfw_enabled=false", "ingest.min_side=64", "ingest.workers=1"],
    )
    ws = esd.Workspace.create(tmp_path / "ws", cfg)
    report = ws.ingest([f"folder:{photos}"])
    assert isinstance(report, esd.IngestReport)
    assert report.totals().accepted == 2 and report.totals().failed == {"decode_error": 1}

    failures = ws.ingest_failures()
    assert list(failures) == ["decode_error"]
    entry = failures["decode_error"]
    assert entry["count"] == 1 and entry["retry"] == "permanent"
    assert entry["examples"][0]["source_id"].endswith("broken.png")

    # stricter: the 80 px image is rejected; the workspace's own config is unchanged
    rep = ws.refilter(overrides=["ingest.min_side=100"])
    assert dict(rep.status) == {"accepted": 1, "rejected": 1}
    assert dict(rep.changes) == {"accepted->rejected": 1}
    assert rep.rejected_by.get("resolution") == 1
    # a config object wins over the workspace's: back to both accepted
    rep = ws.refilter(config=ws.config(["ingest.min_side=50"]).ingest)
    assert dict(rep.status) == {"accepted": 2}
    assert sorted(r.height for r in ws.images()) == [80, 200]


def test_ingest_events_reach_the_progress_callback(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        _image(photos / f"{k}.png", 70 + k, 90, k)
    ws = esd.Workspace.create(tmp_path / "ws")
    events: list[esd.IngestEvent] = []
    ws.ingest(
        [f"folder:{photos}"],
        overrides=["ingest.nsfw_enabled=false", "ingest.min_side=64", "ingest.workers=1"],
        progress=events.append,
    )
    assert all(isinstance(e, esd.IngestEvent) for e in events)
    assert sorted(e.outcome for e in events if e.stage == "item") == ["accepted"] * 3
