"""A filter verdict: pass or reject, with a reason and a score (never a silent drop)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """One filter's decision on one image. ``score`` is the measured quantity (pixels, ratio,
    probability) the decision was made on."""

    filter: str
    passed: bool
    reason: str
    score: float | None = None

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "reject"
