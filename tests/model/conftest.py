"""Fixtures of the model tests: oracle models and their exact input views."""

from __future__ import annotations

import pytest
import torch
from oracle_support import ORACLES


@pytest.fixture(scope="session")
def oracle_model(oracle_dir):
    """oracle_model(sub) -> (model in eval mode, cfg, report), cached per oracle folder."""
    from entityseg_data.model.loading import load_checkpoint

    cache: dict[str, tuple] = {}

    def get(sub: str):
        if sub not in cache:
            cache[sub] = load_checkpoint(oracle_dir / sub / "weights.npz", preset=ORACLES[sub])
        return cache[sub]

    return get


@pytest.fixture(autouse=True)
def _threads():
    # one thread: on a shared, oversubscribed machine OpenMP spinning makes 2 threads far slower
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
