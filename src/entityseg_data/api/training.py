"""Training through the API: one call that the CLI's ``train`` and :meth:`Workspace.train
<entityseg_data.api.workspace.Workspace.train>` share.

>>> cfg = load_train_config("configs/train/tiny_cpu.yaml", ["max_iter=50", "out_dir=runs/t"])
>>> res = train(cfg)        # TrainResult: iteration, model_dir (rank 0), losses, eval_results
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import os

    from entityseg_data.model.training.config import TrainConfig
    from entityseg_data.model.training.trainer import TrainResult


def load_train_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> TrainConfig:
    """A training config: the YAML file (keys it lacks keep their defaults) + ``key=value``
    overrides (strings, or a mapping of dotted keys to values)."""
    from entityseg_data.model.training.config import load_train_config as _load

    return _load(path, overrides)


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train CropFormer / Mask2Former as ``config`` says (single process, or one rank under
    torchrun). Writes ``out_dir/metrics.jsonl``, ``out_dir/checkpoints/`` and at the end
    ``out_dir/model`` (a folder :func:`~entityseg_data.api.segmenters.load_segmenter` loads).
    ``resume`` continues from the last checkpoint of ``out_dir``; periodic evaluation runs when
    ``data.val_json`` is set. Under torchrun the process group is joined here and left at the
    end (unless the caller had joined it already)."""
    import torch

    from entityseg_data.model.training.distributed import init_distributed
    from entityseg_data.model.training.trainer import Trainer, build_model_config

    joined_before = torch.distributed.is_available() and torch.distributed.is_initialized()
    dist = init_distributed(config.device)
    eval_fn = None
    if config.data.val_json and dist.is_main:
        from entityseg_data.model.training.evaluate import make_eval_fn

        eval_fn = make_eval_fn(
            val_json=config.data.val_json,
            image_root=config.data.val_image_root or config.data.image_root,
            model_cfg=build_model_config(config),
            device=dist.device,
            min_size=config.data.eval_min_size,
            max_size=config.data.eval_max_size,
            max_images=config.data.eval_max_images,
            boundary=config.data.eval_boundary,
        )
    trainer = Trainer(config=config, dist=dist, eval_fn=eval_fn, resume=resume, progress=progress)
    try:
        return trainer.train()
    finally:
        if dist.distributed and not joined_before and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
