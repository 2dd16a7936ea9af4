"""Helpers shared by the inference tests (oracle loading)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
