"""Training checkpoints (exact resume), the final converted-folder export, and weight init.

A training checkpoint ``<out>/checkpoints/step_{it:07d}.pt`` holds the model, optimizer, scheduler
and GradScaler states, the iteration, the number of consumed stream positions, the RNG states
(python, numpy, torch CPU, CUDA) and both configs as plain data. It is written atomically
(temporary file + rename) and loaded with ``torch.load(weights_only=True)``; ``last`` (a text
file naming the newest checkpoint) is updated last, so a crash mid-write leaves the previous
checkpoint usable.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from entityseg_data.errors import CheckpointError
from entityseg_data.io import atomic_open, atomic_write_text
from entityseg_data.model.config import ModelConfig

log = logging.getLogger(__name__)

LAST = "last"


def rng_state() -> dict[str, Any]:
    """Global RNG states as weights_only-loadable data (tensors, ints, tuples)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(
    out_dir: str | Path, iteration: int, payload: dict[str, Any], *, keep: int = 2
) -> Path:
    """Write ``payload`` (+ RNG states) as ``checkpoints/step_{iteration}.pt`` atomically, point
    ``checkpoints/last`` at it and delete all but the newest ``keep`` checkpoints."""
    folder = Path(out_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{iteration:07d}.pt"
    data = dict(payload)
    data["rng"] = rng_state()
    data["iteration"] = iteration
    with atomic_open(path, "wb") as fh:
        torch.save(data, fh)
    atomic_write_text(folder / LAST, path.name + "\n")
    old = sorted(folder.glob("step_*.pt"))
    for stale in old[: max(0, len(old) - max(1, keep))]:
        stale.unlink(missing_ok=True)
    log.info("saved %s", path)
    return path


def find_last_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint named by ``checkpoints/last``, or None."""
    folder = Path(out_dir) / "checkpoints"
    last = folder / LAST
    if not last.is_file():
        return None
    path = folder / last.read_text().strip()
    return path if path.is_file() else None


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_training_checkpoint` (``weights_only=True``)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # corrupt / truncated / not a checkpoint
        raise CheckpointError(f"{path}: cannot load training checkpoint ({exc})") from None


def export_model(
    model: nn.Module, model_cfg: ModelConfig, out_dir: str | Path, report: dict[str, Any]
) -> Path:
    """Write the converted-folder format (``model.safetensors`` + ``config.json``) that
    ``load_checkpoint``, ``predict`` and the ML backend read."""
    from entityseg_data.model.convert import write_converted

    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    return write_converted(out_dir, state, model_cfg, report)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def init_weights(model: nn.Module, path: str | Path, model_cfg: ModelConfig) -> dict[str, Any]:
    """Load an official checkpoint file or a converted folder into ``model`` for fine-tuning.

    The checkpoint must match the architecture, with one documented exception (REFERENCE 4.5):
    a Mask2Former checkpoint initialises a CropFormer of the same size (everything but the
    association module ``make_3d``, which keeps its fresh initialisation). Returns a report with
    the missing keys.
    """
    import dataclasses

    from entityseg_data.model.convert import convert_state_dict, read_converted

    path = Path(path)
    try:
        if path.is_dir():
            state, cfg, _ = read_converted(path)
            if cfg != model_cfg and not _same_but_association(cfg, model_cfg):
                raise CheckpointError(f"{path}: its config.json differs from the training model")
        else:
            try:
                state, _ = convert_state_dict(path, model_cfg)
            except CheckpointError:
                if not model_cfg.batch_level:
                    raise
                state, _ = convert_state_dict(
                    path, dataclasses.replace(model_cfg, batch_level=False)
                )
    except CheckpointError:
        raise
    result = unwrap(model).load_state_dict(state, strict=False)
    bad_missing = [k for k in result.missing_keys if ".make_3d." not in k]
    if bad_missing or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not match the model (missing {bad_missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]})"
        )
    if result.missing_keys:
        log.warning(
            "%s: %d association (make_3d) weights not in the checkpoint: freshly initialised",
            path,
            len(result.missing_keys),
        )
    return {"init": str(path), "missing": list(result.missing_keys)}


def _same_but_association(a: ModelConfig, b: ModelConfig) -> bool:
    import dataclasses

    return dataclasses.replace(a, batch_level=b.batch_level) == b
