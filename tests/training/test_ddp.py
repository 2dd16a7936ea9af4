"""Two gloo processes give the same gradients as one process on the combined batch."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
from training_helpers import ddp_config, ddp_worker, grads_of

from entityseg_data.model.training.trainer import Trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(stripes, tmp_path):
    mp.spawn(
        ddp_worker,
        args=(2, _free_port(), str(stripes), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ddp = torch.load(tmp_path / "ddp_grads.pt", weights_only=True)
    ids0 = torch.load(tmp_path / "ids_0.pt", weights_only=True)
    ids1 = torch.load(tmp_path / "ids_1.pt", weights_only=True)

    torch.set_num_threads(1)
    single = Trainer(config=ddp_config(stripes, tmp_path / "single"))
    batch = next(iter(single._loader()))
    # the single process sees the union of the two ranks' images (stream positions interleave)
    assert sorted(batch.image_ids) == sorted(ids0 + ids1)
    assert batch.image_ids[0::2] == ids0 and batch.image_ids[1::2] == ids1
    single.forward_backward([batch])
    ref = grads_of(single)
    assert set(ddp) == set(ref) and len(ref) > 100
    num = sum(float((ddp[k] - ref[k]).pow(2).sum()) for k in ref) ** 0.5
    den = sum(float(ref[k].pow(2).sum()) for k in ref) ** 0.5
    assert den > 0
    assert num / den < 1e-4, f"relative gradient difference {num / den:.2e}"
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-3, atol=1e-6)
