"""Statistics settings."""

from __future__ import annotations

from dataclasses import dataclass

from entityseg_data.config_fields import Checked, bounded


@dataclass(frozen=True)
class StatsConfig(Checked):
    """``max_side`` bounds the resolution at which shape measures are computed (0 = full)."""

    max_side: int = bounded(0, ge=0)
    workers: int = bounded(0, ge=0)
