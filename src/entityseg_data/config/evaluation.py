"""Evaluation settings."""

from __future__ import annotations

from dataclasses import dataclass

from entityseg_data.config_fields import Checked, bounded


@dataclass(frozen=True)
class EvaluationConfig(Checked):
    """``dilation_ratio`` sets the boundary band width as a fraction of the image diagonal."""

    boundary: bool = True
    dilation_ratio: float = bounded(0.02, gt=0, le=1)
    max_dets: tuple[int, ...] = bounded((1, 10, 100), ge=1, nonempty=True)
    workers: int = bounded(0, ge=0)
