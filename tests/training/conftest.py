"""Fixtures of the training tests: a tiny striped dataset and a tiny CPU training config."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import tiny_overrides as _tiny_overrides
from training_helpers import write_stripes


@pytest.fixture(scope="session")
def stripes(tmp_path_factory) -> Path:
    return write_stripes(tmp_path_factory.mktemp("stripes"))


@pytest.fixture()
def tiny_overrides():
    return _tiny_overrides
