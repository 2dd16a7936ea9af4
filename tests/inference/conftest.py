"""Fixtures of the inference tests: the oracle's four model/image pairs."""

from __future__ import annotations

import pytest
from inference_helpers import PAIRS, load_pair


@pytest.fixture(params=PAIRS, ids=[f"{m}-{i}" for m, i in PAIRS])
def oracle_pair(request, oracle_dir):
    model, image = request.param
    return load_pair(oracle_dir, model, image)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, parallel kernels on small tiles wait for
    descheduled workers (10-20x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
