"""notebooks/rounds_report.ipynb runs top to bottom on a workspace with two recorded rounds
(nbclient, a real kernel; notebook tier) and shows the report's tables and plots."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_support import run_notebook
from rounds_support import build_history

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "rounds_report.ipynb"
pytestmark = pytest.mark.notebook


def test_rounds_notebook_runs(tmp_path, monkeypatch):
    ws, *_ = build_history(tmp_path / "ws")
    outputs, text = run_notebook(NOTEBOOK, ws.root, tmp_path, monkeypatch)
    assert "round 2: stage 1, seeds v2, selection rand" in text
    assert "| round 1 | 1 |" in text and "SIMULATED" in text  # the tables
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert (tmp_path / "out" / "rounds.html").is_file()
