"""Periodic evaluation during training: predict a validation set like ``predict`` does and score
it with the streaming :class:`entityseg_data.evaluation.Evaluator` (AP^e, boundary AP).

:func:`make_eval_fn` returns the ``eval_fn(model, iteration) -> metrics`` hook the trainer calls;
any callable with that signature can replace it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from entityseg_data.model.training.data import read_image

log = logging.getLogger(__name__)


def flatten_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"segm/AP": 0.61, "boundary/AP": ...}`` from the evaluator's nested metrics dict."""
    out: dict[str, float] = {}
    for section in ("segm", "boundary"):
        for k, v in (metrics.get(section) or {}).items():
            if isinstance(v, (int, float)):
                out[f"{section}/{k}"] = float(v)
    return out


def make_eval_fn(
    *,
    val_json: str,
    image_root: str,
    model_cfg: Any,
    device: str = "cpu",
    min_size: int = 800,
    max_size: int = 1333,
    max_images: int = 0,
    boundary: bool = True,
) -> Callable[[nn.Module, int], dict[str, float]]:
    """An eval hook over a COCO/EntitySeg JSON (crowd GT = ignore regions, like COCOeval)."""
    from entityseg_data.evaluation import Evaluator
    from entityseg_data.evaluation.coco_io import load_gt

    gt = load_gt(val_json)
    ids = gt.image_ids[:max_images] if max_images else gt.image_ids
    evaluator = Evaluator(boundary=boundary)

    def eval_fn(model: nn.Module, iteration: int) -> dict[str, float]:
        from entityseg_data.model.inference.predictor import EntitySegmenter

        seg = EntitySegmenter(
            model=model, config=model_cfg, device=device, min_size=min_size, max_size=max_size
        )
        evaluator.reset()
        for iid in ids:
            g = gt.images[iid]
            arr = read_image(os.path.join(image_root, gt.file_names[iid]), g.height, g.width)
            res = seg.predict_arrays([arr])[0]
            scores = {i + 1: float(s) for i, s in enumerate(np.asarray(res.scores))}
            evaluator.process(g, {"label_map": res.label_map, "scores": scores})
        metrics = flatten_metrics(evaluator.evaluate())
        log.info(
            "eval @ %d on %d images: AP^e %.3f%s",
            iteration,
            len(ids),
            metrics.get("segm/AP", float("nan")),
            f", boundary AP {metrics['boundary/AP']:.3f}" if "boundary/AP" in metrics else "",
        )
        return metrics

    return eval_fn
