"""Fixtures of the io tests: a folder other accounts can enter (pytest's tmp_path is 0700)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture()
def shared_dir() -> Iterator[Path]:
    """A fresh 0755 folder under the system temp folder, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="entityseg-io-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def umask_022() -> Iterator[None]:
    """Run the test with umask 022 (restored afterwards)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)
