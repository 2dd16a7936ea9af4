"""Model names through a local fake Hugging Face hub: download, convert once, cache, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from fake_hub import FakeHub

from entityseg_data.errors import ConfigError
from entityseg_data.model.inference.hub import (
    HUB_FOLDER,
    OFFICIAL_FILES,
    REPO_ID,
    canonical_name,
    guess_preset,
    hub_filename,
)

TINY = {"tiny_swin": ("Tiny_swin", "tiny_swin_000000.npz")}

SNIPPET = r"""
import json, logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from entityseg_data.errors import OfflineError
from entityseg_data.model.inference.hub import resolve_model
files = json.loads(sys.argv[2])
t = time.time()
try:
    path, preset = resolve_model(sys.argv[1], files=files or None)
    print(json.dumps({"path": str(path), "preset": preset, "seconds": time.time() - t}))
except OfflineError as exc:
    print(json.dumps({"offline": str(exc), "seconds": time.time() - t}))
"""


def run_resolve(name, tmp_path, endpoint, files=None, offline=False):
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "ENTITYSEG_MODEL_CACHE": str(tmp_path / "models"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET, name, json.dumps(files or {})],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_names_and_files():
    assert hub_filename("cropformer_hornet_3x") == (
        f"{HUB_FOLDER}/CropFormer_hornet_3x/CropFormer_hornet_3x_03823a.pth"
    )
    assert canonical_name("CropFormer_hornet_3x") == "cropformer_hornet_3x"
    assert canonical_name("hornet_3x", "mask2former") == "mask2former_hornet_3x"
    assert canonical_name("hornet_3x") == "cropformer_hornet_3x"
    assert canonical_name("Mask2Former_swin_large_w7_3x") == "mask2former_swin_large_3x"
    assert guess_preset("/x/CropFormer_swin_large_w7_3x_6843ef.pth") == "cropformer_swin_large_3x"
    assert canonical_name("nope") is None
    with pytest.raises(ConfigError):
        canonical_name("cropformer_hornet_3x", "mask2former")
    assert len(OFFICIAL_FILES) == 6


@pytest.mark.slow
def test_download_convert_cache_and_offline_reuse(tmp_path, oracle_dir):
    weights = oracle_dir / "tiny" / "weights.npz"
    files = {f"datasets/{REPO_ID}/{HUB_FOLDER}/Tiny_swin/tiny_swin_000000.npz": weights}
    with FakeHub(files) as hub:
        got, log = run_resolve("tiny_swin", tmp_path, hub.url, files=TINY)
        assert any(m == "GET" for m, _ in hub.requests)
    path = got["path"]
    assert path.endswith("models/tiny_swin") and got["preset"] == "tiny_swin"
    assert os.path.isfile(os.path.join(path, "model.safetensors"))
    assert "CC BY-NC 4.0" in log  # licence shown on first use
    # the hub's own cache holds the official file
    assert any(p.name == "tiny_swin_000000.npz" for p in (tmp_path / "hf").rglob("*"))
    # second use: offline, from the converted cache, no notice again
    again, log2 = run_resolve("tiny_swin", tmp_path, "http://127.0.0.1:9", files=TINY, offline=True)
    assert again["path"] == path and "CC BY-NC" not in log2
    # and the converted folder loads and predicts
    from entityseg_data.model.inference.predictor import EntitySegmenter

    seg = EntitySegmenter.from_pretrained(path, min_size=64, max_size=96)
    import numpy as np

    res = seg(np.full((40, 50, 3), 120, np.uint8))
    assert res.label_map.shape == (40, 50)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_offline_unreachable_and_gated_give_one_clear_error_fast(tmp_path, monkeypatch):
    """In-process: huggingface_hub's offline switch (read at its import) is set per case. "Fast"
    without a clock (the machine may be busy): no retry backoff is slept (huggingface_hub's
    retries sleep 1, 2, 4, ... s through ``time.sleep``: ~47 s for an unreachable hub) and the
    gated hub is asked once, not in a retry loop."""
    import huggingface_hub.constants as hf_constants

    from entityseg_data.errors import OfflineError
    from entityseg_data.model.inference.hub import download_official

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)

    def attempt(name, endpoint, offline):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", offline)
        slept.clear()
        with pytest.raises(OfflineError) as err:
            download_official(name)
        return str(err.value), sum(slept)

    # offline mode, nothing cached
    msg, backoff = attempt("cropformer_hornet_3x", "http://127.0.0.1:9", True)
    assert "HF_HUB_OFFLINE" in msg and "--weights CropFormer_hornet_3x_03823a.pth" in msg
    assert backoff == 0
    # unreachable endpoint: one connection probe, not HTTP retries with backoff
    msg, backoff = attempt("cropformer_hornet_3x", f"http://127.0.0.1:{_closed_port()}", False)
    assert "not reachable" in msg and backoff == 0
    # gated repo without access
    with FakeHub({}, gated=True) as hub:
        msg, backoff = attempt("mask2former_hornet_3x", hub.url, False)
        assert 1 <= len(hub.requests) <= 2, hub.requests
    assert "gated" in msg and "Mask2Former_hornet_3x_576d0b.pth" in msg and backoff == 0
