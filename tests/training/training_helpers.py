"""Helpers of the training tests (importable by spawned worker processes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from entityseg_data.masks import rle as rle_utils

COLORS = [(220, 40, 40), (40, 200, 60), (50, 60, 230), (240, 220, 30)]


def write_stripes(root: Path, n: int = 4, h: int = 64, w: int = 80) -> Path:
    """n images of 3 full-height vertical stripes (+ a small square on image 1), each entity valid
    in every corner crop; one extra crowd annotation and one unannotated image (both ignored in
    training). Returns the JSON path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    aid = 1
    for i in range(1, n + 2):
        img = np.zeros((h, w, 3), dtype=np.uint8)
        labels = np.zeros((h, w), dtype=np.int32)
        cuts = [0, w // 3 + (i % 3), 2 * w // 3 - (i % 2), w]
        for k in range(3):
            labels[:, cuts[k] : cuts[k + 1]] = k + 1
            img[:, cuts[k] : cuts[k + 1]] = COLORS[(k + i) % len(COLORS)]
        name = f"{i:03d}.png"
        Image.fromarray(img).save(root / "images" / name)
        images.append({"id": i, "file_name": name, "height": h, "width": w})
        if i == n + 1:
            continue  # an image without annotations
        for k in range(3):
            m = labels == k + 1
            r = rle_utils.encode(m)
            anns.append(
                {
                    "id": aid,
                    "image_id": i,
                    "segmentation": r,
                    "bbox": rle_utils.bbox(r),
                    "area": int(m.sum()),
                    "category_id": 1,
                    "iscrowd": 0,
                }
            )
            aid += 1
        crowd = np.zeros((h, w), dtype=bool)
        crowd[:4, :4] = True
        r = rle_utils.encode(crowd)
        anns.append(
            {
                "id": aid,
                "image_id": i,
                "segmentation": r,
                "bbox": rle_utils.bbox(r),
                "area": 16,
                "category_id": 1,
                "iscrowd": 1,
            }
        )
        aid += 1
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "entity"}]}
    path = root / "train.json"
    path.write_text(json.dumps(data))
    return path


def tiny_overrides(json_path: Path, out_dir: Path, **extra) -> list[str]:
    base = {
        "data.train_json": str(json_path),
        "data.image_root": str(json_path.parent / "images"),
        "data.min_sizes": "[64]",
        "data.max_size": "96",
        "data.num_workers": "0",
        "loss.num_points": "128",
        "model_overrides": '["num_queries=8", "dec_layers=2"]',
        "ims_per_batch": "2",
        "amp": "fp32",
        "log_period": "1",
        "tensorboard": "false",
        "threads": "1",
        "out_dir": str(out_dir),
    }
    base.update({k.replace("__", "."): str(v) for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def grads_of(trainer) -> dict:
    """{name: grad clone} of every parameter with a gradient."""
    return {
        n: p.grad.detach().clone()
        for n, p in trainer.model.named_parameters()
        if p.grad is not None
    }


def ddp_worker(rank: int, world: int, port: int, json_path: str, out_dir: str) -> None:
    """One gloo rank: forward/backward its share of the first batch, rank 0 saves the gradients
    (already all-reduced by DDP)."""
    import os

    import torch

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from entityseg_data.model.training.distributed import init_distributed
    from entityseg_data.model.training.trainer import Trainer

    dist = init_distributed("cpu")
    try:
        trainer = Trainer(config=ddp_config(json_path, out_dir), dist=dist)
        batch = next(iter(trainer._loader()))
        trainer.forward_backward([batch])
        if rank == 0:
            torch.save(grads_of(trainer), Path(out_dir) / "ddp_grads.pt")
            torch.save(batch.image_ids, Path(out_dir) / f"ids_{rank}.pt")
        else:
            torch.save(batch.image_ids, Path(out_dir) / f"ids_{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def ddp_config(json_path, out_dir):
    from entityseg_data.model.training.config import load_train_config

    return load_train_config(
        None,
        tiny_overrides(
            Path(json_path),
            Path(out_dir),
            ims_per_batch=4,
            model_overrides=('["num_queries=8", "dec_layers=2", "backbone.drop_path_rate=0.0"]'),
        ),
    )
