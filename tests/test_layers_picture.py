"""docs/img/layers.svg (docs/design.md's picture of the layers) matches the import graph."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layers_picture_is_up_to_date():
    spec = importlib.util.spec_from_file_location("docs_layers", ROOT / "docs" / "layers.py")
    assert spec is not None and spec.loader is not None
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = layers.main(["--check"])
    assert code == 0, err.getvalue() + " (regenerate: python docs/layers.py)"
    svg = (ROOT / "docs" / "img" / "layers.svg").read_text()
    for part in ("cli", "api", "annotation", "model", "masks", "catalog", "dataset"):
        assert f">{part}</text>" in svg
