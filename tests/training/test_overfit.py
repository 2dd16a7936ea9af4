"""A tiny CropFormer overfits a handful of synthetic high-resolution images on CPU (slow)."""

from __future__ import annotations

import pytest
import torch

from entityseg_data.model.training.config import load_train_config
from entityseg_data.model.training.evaluate import make_eval_fn
from entityseg_data.model.training.trainer import Trainer, build_model_config

pytestmark = pytest.mark.slow


def test_tiny_model_overfits_synthetic_scenes(tmp_path):
    from entityseg_data.synthetic import write_dataset

    torch.set_num_threads(1)
    js = write_dataset(
        tmp_path / "data",
        4,
        sizes=((600, 800),),
        image_format="png",
        scene_kwargs=dict(n_bands=1, n_things=2, n_thin=0, n_small=0),
    )
    root = tmp_path / "data" / "images"
    cfg = load_train_config(
        None,
        [
            f"data.train_json={js}",
            f"data.image_root={root}",
            "data.min_sizes=[96]",
            "data.max_size=160",
            "data.num_workers=0",
            "threads=1",
            "loss.num_points=256",
            'model_overrides=["num_queries=8", "dec_layers=3"]',
            "max_iter=150",
            "ims_per_batch=2",
            "amp=fp32",
            "optim.lr=0.0005",
            "checkpoint_period=100",
            "log_period=10",
            "tensorboard=false",
            f"out_dir={tmp_path / 'run'}",
        ],
    )
    eval_fn = make_eval_fn(
        val_json=str(js),
        image_root=str(root),
        model_cfg=build_model_config(cfg),
        min_size=96,
        max_size=160,
    )
    result = Trainer(config=cfg, eval_fn=eval_fn).train()
    metrics = result.eval_results[150]
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert metrics["segm/AP"] > 0.8, metrics
