"""Evaluation settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationConfig:
    """``dilation_ratio`` sets the boundary band width as a fraction of the image diagonal."""

    boundary: bool = True
    dilation_ratio: float = 0.02
    max_dets: tuple[int, ...] = (1, 10, 100)
    workers: int = 0
