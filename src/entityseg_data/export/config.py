"""Export settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportConfig:
    """``lr_short_side``/``lr_max_side`` give the official lr copy (800 / 1333)."""

    val_fraction: float = 0.1
    stratify_by_source: bool = True
    lr_short_side: int = 800
    lr_max_side: int = 1333
