"""docs/img/layers.svg (docs/design.md's picture of the layers) matches the import graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layers_picture_is_up_to_date():
    res = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "layers.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr + " (regenerate: python docs/layers.py)"
    svg = (ROOT / "docs" / "img" / "layers.svg").read_text()
    for part in ("cli", "api", "annotation", "model", "masks", "catalog", "dataset"):
        assert f">{part}</text>" in svg
