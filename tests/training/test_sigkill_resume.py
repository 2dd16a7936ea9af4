"""A real SIGKILL of `entityseg-data train` mid-run, then --resume: the loss sequence equals an
uninterrupted run's (slow: three CLI processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def _cmd(stripes, out, tiny_overrides, *extra):
    sets = tiny_overrides(stripes, out, max_iter=6, checkpoint_period=2)
    args = [sys.executable, "-m", "entityseg_data", "train", "--no-progress"]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


def _losses(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [(r["iter"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def test_sigkill_then_resume_matches_uninterrupted(stripes, tmp_path, tiny_overrides):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(
        _cmd(stripes, tmp_path / "ref", tiny_overrides), env=env, capture_output=True, text=True
    )
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(stripes, out, tiny_overrides),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while time.time() < deadline:
        if (out / "metrics.jsonl").exists() and len(_losses(out)) >= 3:
            break
        if proc.poll() is not None:
            pytest.fail("training finished before it could be killed")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoints" / "last").exists()
    assert not (out / "model").exists()  # it really died before the end
    res = subprocess.run(
        _cmd(stripes, out, tiny_overrides, "--resume"), env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert any(f"(from {k})" in res.stdout for k in (2, 4)), res.stdout
    assert _losses(out) == _losses(tmp_path / "ref")
