"""A real SIGKILL of `entityseg-data train` mid-run, then --resume: the loss sequence equals an
uninterrupted run's (slow: three CLI processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from pause_child import PAUSE_CHILD, wait_for_marker

pytestmark = pytest.mark.slow
TRAINER = "entityseg_data.model.training.trainer"


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
    marker = tmp_path / "paused"
    # the child stops itself when it starts its second checkpoint (iteration 4; the one of
    # iteration 2 is written): the kill lands mid-run whatever the machine's load
    pause = [PAUSE_CHILD, f"{TRAINER}:save_training_checkpoint", "1", str(marker), "--"]
    log = tmp_path / "killed.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, *pause, *_cmd(stripes, out, tiny_overrides)[3:]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    wait_for_marker(marker, proc, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(_losses(out)) == 4  # iterations 1-4 ran, the 4th checkpoint never finished
    assert (out / "checkpoints" / "last").exists()
    assert not (out / "model").exists()  # it really died before the end
    res = subprocess.run(
        _cmd(stripes, out, tiny_overrides, "--resume"), env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "(from 2)" in res.stdout, res.stdout
    assert _losses(out) == _losses(tmp_path / "ref")
