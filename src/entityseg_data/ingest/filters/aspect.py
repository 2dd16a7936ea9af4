"""Aspect-ratio filter: long side / short side."""

from __future__ import annotations

from entityseg_data.ingest.filters.base import Verdict

NAME = "aspect"


def check_aspect(width: int, height: int, max_aspect: float) -> Verdict:
    """Reject when ``max(w, h) / min(w, h) > max_aspect`` (``max_aspect <= 0`` passes all)."""
    ratio = max(width, height) / max(1, min(width, height))
    if max_aspect > 0 and ratio > max_aspect:
        return Verdict(NAME, False, f"aspect {ratio:.3f} > max_aspect {max_aspect}", ratio)
    return Verdict(NAME, True, f"aspect {ratio:.3f} within limit", ratio)
