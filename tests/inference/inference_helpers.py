"""Helpers shared by the inference tests (oracle loading)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported by file path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PAIRS = [
    ("tiny", "img_a_480x640"),
    ("tiny", "img_b_600x400"),
    ("tiny_hornet", "img_a_480x640"),
    ("tiny_hornet", "img_b_600x400"),
]


def load_pair(oracle_dir: Path, model: str, image: str, prefix: str = "outputs") -> dict:
    data = dict(np.load(oracle_dir / model / f"{prefix}_{image}.npz"))
    data["meta"] = json.loads((oracle_dir / model / f"{prefix}_{image}.json").read_text())
    return data


def unpack_masks(data: dict) -> np.ndarray:
    """(Q, H, W) bool final masks of an oracle capture."""
    h, w = (int(x) for x in data["original_hw"])
    q = data["final_scores"].shape[0]
    bits = np.unpackbits(data["final_masks_packbits"], count=q * h * w)
    return bits.reshape(q, h, w).astype(bool)
