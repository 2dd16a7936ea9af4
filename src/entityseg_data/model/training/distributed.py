"""Process-group setup for torchrun / DDP (NCCL on CUDA, gloo on CPU)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size``; ``device`` to train on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str, local_rank: int = 0) -> str:
    """``cuda:<local_rank>`` when CUDA is requested/auto-available, else ``cpu``."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        from entityseg_data.errors import ConfigError

        raise ConfigError("device=cuda requested but CUDA is not available")
    return f"cuda:{local_rank}"


def init_distributed(requested_device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``); a single process when ``WORLD_SIZE`` is unset/1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend=backend)
        log.info("rank %d/%d joined the %s process group", rank, world, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def barrier(info: DistInfo) -> None:
    if info.distributed and torch.distributed.is_initialized():
        torch.distributed.barrier()


def broadcast_object(obj: T, info: DistInfo) -> T:
    """``obj`` of rank 0 on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
