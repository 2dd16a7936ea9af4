"""Shared fixtures. Each area keeps its own fixtures in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# the session-scoped `labelstudio` fixture and the Label Studio template helpers
pytest_plugins = ["labelstudio_support"]

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (CI: a copy of shared/ beside the clone)
SHARED = Path(os.environ.get("ENTITYSEG_SHARED", ROOT.parent / "shared"))
ORACLE = SHARED / "oracle"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def oracle_dir() -> Path:
    if not ORACLE.exists():
        pytest.skip(f"oracle fixtures not found at {ORACLE}")
    return ORACLE


@pytest.fixture()
def workspace(tmp_path):
    from entityseg_data.workspace import Workspace

    return Workspace.create(tmp_path / "ws")
