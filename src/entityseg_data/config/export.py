"""Export settings."""

from __future__ import annotations

from dataclasses import dataclass

from entityseg_data.config_fields import Checked, bounded


@dataclass(frozen=True)
class ExportConfig(Checked):
    """``lr_short_side``/``lr_max_side`` give the official lr copy (800 / 1333)."""

    val_fraction: float = bounded(0.1, ge=0, le=1)
    stratify_by_source: bool = True
    lr_short_side: int = bounded(800, ge=1)
    lr_max_side: int = bounded(1333, ge=1)
