"""``predict`` and ``model convert`` refuse what would lose results or predict garbage, with one
clear message (issue 15, probe rows 6.4, 6.7, 6.8, 6.9, 7.4)."""

from __future__ import annotations

import cli_support
import numpy as np
import pytest
from PIL import Image

from entityseg_data.errors import CheckpointError, ConfigError, DataError
from entityseg_data.model.inference.batch import (
    MAX_RESIZE_SIDE,
    Job,
    check_outputs,
    resized_shape,
)
from entityseg_data.model.inference.inputs import expand_inputs

FAST = ["--set", "views.min_size=64", "--set", "views.max_size=96", "--threads", "1"]


def run_cli(*args, timeout=None):
    """The CLI in this process (tests/cli_support.py): no interpreter + torch start per call."""
    return cli_support.run_cli(*args)


def _image(path, h=40, w=50, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, oracle_dir):
    from entityseg_data.model.convert import convert_file

    out = tmp_path_factory.mktemp("model") / "tiny_swin"
    convert_file(oracle_dir / "tiny" / "weights.npz", out, preset="tiny_swin")
    return out


def _jobs(*inputs):
    return [Job(it) for it in expand_inputs([str(i) for i in inputs])]


# ------------------------------------------------------------------ output collisions (6.7)


def test_same_stem_in_two_folders_is_refused_before_the_model_loads(tmp_path):
    """probe 6.7: `-o 'out/{stem}'` with a/x.jpg and b/x.jpg would keep one result of two."""
    a = _image(tmp_path / "P2" / "a" / "x.jpg")
    b = _image(tmp_path / "P2" / "b" / "x.jpg", seed=1)
    out = tmp_path / "PO"
    proc = run_cli("predict", tmp_path / "P2", "-o", f"{out}/{{stem}}", "--weights", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert str(a) in proc.stderr and str(b) in proc.stderr and "{relpath}" in proc.stderr
    assert not out.exists()  # nothing written, no model loaded (--weights is not a model)
    # the template that tells them apart is accepted
    check_outputs(_jobs(tmp_path / "P2"), f"{out}/{{relpath}}", inputs=[tmp_path / "P2"])
    check_outputs(_jobs(tmp_path / "P2"), f"{out}/{{parent}}/{{stem}}")
    with pytest.raises(ConfigError, match="would both be written"):
        check_outputs(_jobs(tmp_path / "P2"), f"{out}/{{stem}}")


# ------------------------------------------------------------------ inputs vs outputs (6.8)


@pytest.mark.parametrize("sub", ["", "masks"])
def test_output_inside_the_input_folder_is_refused(tmp_path, sub):
    """probe 6.8: `predict P3 -o P3` (or a folder below it) would make the next run read its
    own label maps as images and replace the photos' outputs."""
    _image(tmp_path / "P3" / "p00.jpg")
    out = tmp_path / "P3" / sub if sub else tmp_path / "P3"
    proc = run_cli("predict", tmp_path / "P3", "-o", out, "--weights", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "inside the input folder" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "P3").rglob("*")) == ["p00.jpg"]


def test_outputs_read_back_by_a_pattern_or_equal_to_an_input_are_refused(tmp_path):
    """probe 6.8, other spellings: an output matching the input glob, or an output file that is
    itself an input; outputs beside the inputs that the pattern does not match are fine."""
    _image(tmp_path / "P" / "a.jpg")
    png = _image(tmp_path / "P" / "b.png")
    pattern = f"{tmp_path}/P/*"
    with pytest.raises(ConfigError, match="matches the input pattern"):
        check_outputs(_jobs(pattern), f"{tmp_path}/P/{{stem}}_entities", inputs=[pattern])
    with pytest.raises(ConfigError, match="is the input"):
        check_outputs(_jobs(png), f"{tmp_path}/P/{{stem}}", inputs=[png])
    jpgs = f"{tmp_path}/P/*.jpg"
    check_outputs(_jobs(jpgs), f"{tmp_path}/P/{{stem}}_entities", inputs=[jpgs])


# ------------------------------------------------------------------ resize bound (6.4)


def test_resize_over_the_largest_side_is_refused(tmp_path):
    """probe 6.4: `--resize 99999999` is one usage error, not an empty MemoryError."""
    _image(tmp_path / "in" / "one.png", 1, 1)
    for value in ("99999999", f"{MAX_RESIZE_SIDE + 1}x10"):
        proc = run_cli(
            "predict",
            tmp_path / "in",
            "-o",
            tmp_path / "o",
            "--resize",
            value,
            "--weights",
            tmp_path,
        )
        assert proc.returncode == 2, proc.stderr
        assert f"over the largest side of {MAX_RESIZE_SIDE} px" in proc.stderr


def test_short_side_resize_of_a_strip_fails_that_image_only(tmp_path, tiny_model):
    """probe 6.4, per image: a short side N on a 4x900 strip would give 1000x225000; that image
    fails with the reason, the others are predicted."""
    with pytest.raises(DataError, match="over the largest side"):
        resized_shape(4, 900, 1000)
    assert resized_shape(40, 50, 100) == (100, 125)
    _image(tmp_path / "in" / "ok.png", 40, 50)
    _image(tmp_path / "in" / "strip.png", 4, 900)
    out = tmp_path / "out"
    proc = run_cli(
        "predict", tmp_path / "in", "-o", out, "--weights", tiny_model, "--resize", "100", *FAST
    )
    assert proc.returncode == 1, proc.stderr
    assert "predicted 1 image(s), skipped 0, failed 1" in proc.stdout
    assert "strip.png" in proc.stderr and "over the largest side" in proc.stderr
    assert (out / "ok.png").exists() and not (out / "strip.png").exists()


# ------------------------------------------------------------------ broken checkpoints (6.9, 7.4)


def test_nan_weights_are_refused_by_convert_and_predict(tmp_path, oracle_dir, tiny_model):
    """probe 6.9: a checkpoint with NaN weights does not convert, and a converted folder holding
    NaN weights does not predict (it would find 0 entities, silently)."""
    with np.load(oracle_dir / "tiny" / "weights.npz") as z:
        weights = {k: z[k] for k in z.files}
    key = "sem_seg_head.predictor.query_feat.weight"
    weights[key] = weights[key].copy()
    weights[key][0, :3] = np.nan
    np.savez(tmp_path / "nan.npz", **weights)
    proc = run_cli(
        "model", "convert", "--src", tmp_path / "nan.npz", "--preset", "tiny_swin", "-o",
        tmp_path / "conv",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"NaN or infinite values, first {key} (3 of" in proc.stderr
    assert not (tmp_path / "conv").exists()
    # a converted folder damaged afterwards (or written by another tool)
    import torch
    from safetensors.torch import load_file, save_file

    from entityseg_data.model.loading import load_checkpoint

    bad = tmp_path / "bad_model"
    bad.mkdir()
    for f in tiny_model.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    state = load_file(str(bad / "model.safetensors"))
    state[key] = torch.full_like(state[key], float("inf"))
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(bad)
    _image(tmp_path / "in" / "a.png")
    proc = run_cli("predict", tmp_path / "in", "-o", tmp_path / "o", "--weights", bad, *FAST)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "NaN or infinite" in proc.stderr


@pytest.mark.parametrize(
    ("content", "name"),
    [(b"hello\n", "notacheckpoint.pth"), (b"\x80\x02garbage", "garbage.pth")],
)
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, content, name):
    """probe 7.4: a text file named .pth gave `error (KeyError): 101`; bytes that are no pickle
    were called "Python objects" needing --trust-pickle."""
    src = tmp_path / name
    src.write_bytes(content)
    proc = run_cli("model", "convert", "--src", src, "--preset", "tiny_swin", "-o", tmp_path / "o")
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {src}: not a readable torch checkpoint"), last
    assert "trust-pickle" not in last
