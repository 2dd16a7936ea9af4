"""Statistics settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StatsConfig:
    """``max_side`` bounds the resolution at which shape measures are computed (0 = full)."""

    max_side: int = 0
    workers: int = 0
