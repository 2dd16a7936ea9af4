"""Fixtures of the io tests: a folder other accounts can enter (pytest's tmp_path is 0700)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
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


@pytest.fixture()
def as_other_user() -> Callable[..., subprocess.CompletedProcess] | None:
    """Run a command as uid/gid 65534 without groups (``setpriv``), or None when this process
    cannot (not root, no setpriv): the tests then check the permission bits only. Root ignores
    permission bits, so reading as root would prove nothing."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *args],
            capture_output=True,
            timeout=120,
        )

    return run
