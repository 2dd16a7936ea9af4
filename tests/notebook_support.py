"""Running a notebook in a test (``from notebook_support import run_notebook``): nbclient with a
real kernel, the workspace and output folder given through the environment the notebooks read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def run_notebook(
    path: Path, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[dict[str, Any]], str]:
    """Run ``path`` top to bottom on ``workspace`` (``ENTITYSEG_WORKSPACE``; outputs under
    ``tmp_path/out``: ``ENTITYSEG_NOTEBOOK_OUT``); fails on an error output. Returns the code
    cells' outputs and their text (stdout, Markdown and plain reprs joined)."""
    # imported here, not at the top: every pytest process imports this module while collecting,
    # and the notebook tier is opt-in (nbformat: ~0.2 CPU s per process)
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("ENTITYSEG_WORKSPACE", str(workspace))
    monkeypatch.setenv("ENTITYSEG_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    text = "".join(
        str(o.get("text", ""))
        + str(o.get("data", {}).get("text/markdown", ""))
        + str(o.get("data", {}).get("text/plain", ""))
        for o in outputs
    )
    return outputs, text
