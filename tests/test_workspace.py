from __future__ import annotations

import pytest

from entityseg_data.errors import WorkspaceError
from entityseg_data.workspace import SUBDIRS, Workspace


def test_create_open_find(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    for sub in SUBDIRS:
        assert (ws.root / sub).is_dir()
    assert ws.config_path.exists() and ws.catalog_path.exists()
    assert Workspace.open(ws.root) == ws
    (ws.root / "images" / "deep").mkdir()
    assert Workspace.find(ws.root / "images" / "deep") == ws
    assert ws.config().name == "ws"
    with pytest.raises(WorkspaceError, match="already holds a workspace"):
        Workspace.create(ws.root)
    Workspace.create(ws.root, exist_ok=True)


def test_open_missing(tmp_path):
    with pytest.raises(WorkspaceError, match="not a workspace"):
        Workspace.open(tmp_path)
