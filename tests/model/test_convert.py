"""Checkpoint conversion: key accounting, formats, folders, and one clear error per bad input."""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle

import cli_support
import numpy as np
import pytest
import torch

from entityseg_data.errors import CheckpointError
from entityseg_data.model.convert import convert_file, convert_mapping, read_source
from entityseg_data.model.loading import load_checkpoint
from entityseg_data.model.presets import PRESETS, RELEASED


def _swin_relative_position_index(window: int) -> torch.Tensor:
    """Independent recomputation of the Swin (w*w, w*w) relative position index."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(
        2, -1
    )
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return torch.from_numpy(rel[0] * (2 * window - 1) + rel[1]).long()


@pytest.mark.parametrize(
    "name",
    # the HorNet-L presets (~2 CPU s each) in the slow tier
    [pytest.param(n, marks=pytest.mark.slow) if "hornet" in n else n for n in RELEASED],
)
def test_released_manifest_converts_exactly(oracle_dir, name):
    """A synthetic checkpoint with exactly the official keys and shapes (meta tensors: no memory)
    converts with nothing missing or unexpected, and the model has the official parameter count."""
    manifest = json.loads((oracle_dir / "manifests" / f"{name}.json").read_text())
    window = PRESETS[name].backbone.__dict__.get("window_size", 7)
    raw = {}
    for key, (shape, dtype) in manifest["state_dict"].items():
        if dtype == "int64":
            raw[key] = _swin_relative_position_index(window)
            assert list(raw[key].shape) == shape
        else:
            raw[key] = torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
    state, report = convert_mapping(raw, PRESETS[name], source=name)
    assert report["missing"] == [] and report["unexpected"] == []
    assert report["num_parameters"] == manifest["num_parameters"]
    assert set(report["dropped"]) == {k for k in raw if k.startswith("criterion")}
    assert report["consumed"] + len(report["dropped"]) == manifest["num_state_dict_entries"]
    assert len(state) == manifest["num_state_dict_entries"] - len(report["dropped"])


def _small_input(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(1, 2, 3, 64, 64)


@pytest.fixture(scope="module")
def tiny_state(oracle_dir):
    with np.load(oracle_dir / "tiny" / "weights.npz") as z:
        return {k: z[k] for k in z.files}


def test_cli_convert_then_load_folder(oracle_dir, tmp_path):
    from click.testing import CliRunner

    from entityseg_data.cli.main import cli

    src = oracle_dir / "tiny" / "weights.npz"
    out = tmp_path / "conv"
    res = CliRunner().invoke(
        cli, ["model", "convert", "--src", str(src), "--preset", "tiny_swin", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "conversion_report.json",
        "model.safetensors",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["conv"]  # no temporary folder left behind
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert report["missing"] == [] and report["unexpected"] == []
    assert sorted(report["dropped"]) == ["criterion_2d.empty_weight", "criterion_3d.empty_weight"]
    folder_model, cfg, rep2 = load_checkpoint(out)
    assert cfg == PRESETS["tiny_swin"] and rep2["source_sha256"] == report["source_sha256"]
    direct, _, _ = load_checkpoint(src, preset="tiny_swin")
    x = _small_input()
    with torch.no_grad():
        a, b = folder_model(x), direct(x)
    assert torch.equal(a.batch_level.final.pred_masks, b.batch_level.final.pred_masks)
    # asking for a different architecture than the folder's is an error
    with pytest.raises(CheckpointError, match="differs"):
        load_checkpoint(out, preset="tiny_hornet")


def test_pth_detectron2_container_module_prefix_and_static_query(tiny_state, tmp_path):
    sd = {f"module.{k}": torch.from_numpy(v) for k, v in tiny_state.items()}
    sd["module.sem_seg_head.predictor.static_query.weight"] = sd.pop(
        "module.sem_seg_head.predictor.query_feat.weight"
    )
    path = tmp_path / "model_final.pth"
    torch.save({"model": sd, "iteration": 5}, path)
    model, _, report = load_checkpoint(path, preset="tiny_swin")
    assert report["source_format"] == "pth"
    assert report["renamed"]["module.sem_seg_head.predictor.static_query.weight"] == (
        "sem_seg_head.predictor.query_feat.weight"
    )
    assert torch.equal(
        model.sem_seg_head.predictor.query_feat.weight,
        torch.from_numpy(tiny_state["sem_seg_head.predictor.query_feat.weight"]),
    )


def test_pkl_numpy_is_read_safely_and_other_objects_need_trust(tiny_state, tmp_path):
    path = tmp_path / "model.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": tiny_state, "__author__": "third_party"}, f)
    _, _, report = load_checkpoint(path, preset="tiny_swin")
    assert report["source_format"] == "pkl"
    bad = tmp_path / "objects.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"model": tiny_state, "args": argparse.Namespace(lr=0.1)}, f)
    with pytest.raises(CheckpointError, match="trust-pickle"):
        read_source(bad)
    raw, _ = read_source(bad, trust_pickle=True)
    assert set(raw) == set(tiny_state)


def test_unsafe_pth_needs_trust(tiny_state, tmp_path):
    path = tmp_path / "unsafe.pth"
    sd = {k: torch.from_numpy(v) for k, v in tiny_state.items()}
    torch.save({"model": sd, "cfg": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="trust-pickle") as err:
        load_checkpoint(path, preset="tiny_swin")
    assert str(path) in str(err.value)
    model, _, _ = load_checkpoint(path, preset="tiny_swin", trust_pickle=True)
    assert model.sem_seg_head.predictor.query_feat.weight.shape == (16, 64)


def test_truncated_and_non_checkpoint_files(tiny_state, tmp_path):
    full = tmp_path / "full.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in tiny_state.items()}}, full)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut, preset="tiny_swin")
    cut_npz = tmp_path / "cut.npz"
    np.savez(tmp_path / "w.npz", **tiny_state)
    cut_npz.write_bytes((tmp_path / "w.npz").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.npz"):
        load_checkpoint(cut_npz, preset="tiny_swin")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_checkpoint(text, preset="tiny_swin")
    other = tmp_path / "other.pth"
    torch.save({"epoch": 3, "names": ["a", "b"]}, other)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(other, preset="tiny_swin")
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pth", preset="tiny_swin")


def test_wrong_architecture_names_first_key(oracle_dir):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(oracle_dir / "tiny_hornet" / "weights.npz", preset="tiny_swin")
    msg = str(err.value)
    assert "backbone.patch_embed.proj.weight" in msg and "backbone.downsample_layers" in msg
    assert msg.count("\n") == 0


def test_config_that_does_not_match_the_weights(oracle_dir, tiny_state):
    import dataclasses

    cfg = dataclasses.replace(PRESETS["tiny_swin"], num_queries=8)
    with pytest.raises(CheckpointError) as err:
        convert_mapping(tiny_state, cfg, source="w.npz")
    assert "query_feat.weight has shape (16, 64) in the checkpoint but (8, 64)" in str(err.value)
    m2f = dataclasses.replace(PRESETS["tiny_swin"], batch_level=False)
    with pytest.raises(CheckpointError, match="make_3d.*cropformer"):
        convert_mapping(tiny_state, m2f, source="w.npz")


def test_convert_with_official_yaml(oracle_dir, tmp_path):
    report = convert_file(
        oracle_dir / "tiny_hornet" / "weights.npz",
        tmp_path / "out",
        config=oracle_dir / "tiny_hornet" / "cfg.yaml",
    )
    assert report["num_parameters"] == 2187466
    _, cfg, _ = load_checkpoint(tmp_path / "out")
    assert cfg == PRESETS["tiny_hornet"]


def test_cli_errors_are_one_line(oracle_dir, tmp_path):

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 100)
    proc = cli_support.run_cli(
        "model", "convert", "--src", str(bad), "--preset", "tiny_swin", "-o", str(tmp_path / "o")
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()
    proc = cli_support.run_cli(
        "model", "convert", "--src", str(bad), "--preset", "no_such", "-o", str(tmp_path / "o")
    )
    assert proc.returncode == 2 and "tiny_swin" in proc.stderr


@pytest.mark.slow
def test_cli_presets_lists_every_preset_with_parameter_counts():
    from click.testing import CliRunner

    from entityseg_data.cli.main import cli

    res = CliRunner().invoke(cli, ["model", "presets", "--params"])
    assert res.exit_code == 0, res.output
    for name in PRESETS:
        assert name in res.output
    assert "48,980,092" in res.output  # CropFormer Swin-T, REFERENCE 3.8
    assert "222,151,746" in res.output  # CropFormer HorNet-L
