"""Statistics settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from entityseg_data.config_fields import Checked, bounded


@dataclass(frozen=True)
class StatsConfig(Checked):
    """``max_side`` bounds the resolution at which shape measures are computed (0 = full);
    ``workers`` processes (0/1 = in this process); ``shape_measures`` the definition set of
    convexity / simplicity: ``"paper"`` (pixel-centre contours, reproduces the paper's COCO row)
    or ``"squares-crofton"`` (pixel-square hull, Crofton perimeter); see docs/statistics.md."""

    max_side: int = bounded(0, ge=0)
    workers: int = bounded(0, ge=0)
    shape_measures: Literal["paper", "squares-crofton"] = "paper"
