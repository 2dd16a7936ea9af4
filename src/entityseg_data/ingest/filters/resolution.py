"""Minimum-resolution filter (the paper's high-resolution focus): upright short side."""

from __future__ import annotations

from entityseg_data.ingest.filters.base import Verdict

NAME = "resolution"


def check_resolution(width: int, height: int, min_side: int) -> Verdict:
    """Reject when ``min(width, height) < min_side`` (pixels; ``min_side <= 0`` passes all)."""
    short = min(width, height)
    if min_side > 0 and short < min_side:
        return Verdict(NAME, False, f"short side {short} < min_side {min_side}", float(short))
    return Verdict(NAME, True, f"short side {short} >= min_side {max(min_side, 0)}", float(short))
