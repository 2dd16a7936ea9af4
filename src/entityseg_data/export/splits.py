"""Seeded train/val splits, optionally stratified by image source.

Per stratum (source, or one stratum for all), image ids are sorted, shuffled with
``numpy.random.default_rng(seed)`` and the first ``round(n * val_fraction)`` go to val. The same
ids, seed and fraction always give the same split; adding images to one source does not move the
images of another source.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from entityseg_data.errors import ConfigError
from entityseg_data.io.coco import CocoDataset, CocoImage


def assign_splits(
    images: Iterable[CocoImage | Mapping[str, Any]],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    stratify_by_source: bool = True,
    existing: Mapping[int, str] | None = None,
) -> dict[int, str]:
    """``{image_id: "train" | "val"}``.

    Args:
        images: image records (their ``source`` stratifies), or dicts with ``id`` and
            ``img_source`` or ``source``.
        val_fraction: share of val images per stratum, in [0, 1].
        seed: shuffling seed (combined with a CRC of the stratum name).
        stratify_by_source: one split per source so every source has the same val share.
        existing: splits already decided (kept as they are; the rest is split).
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1], got {val_fraction}")
    existing = dict(existing or {})
    strata: dict[str, list[int]] = defaultdict(list)
    for img in images:
        if isinstance(img, CocoImage):
            iid, source = img.id, img.source
        else:
            iid, source = int(img["id"]), img.get("img_source") or img.get("source")
        if existing.get(iid):
            continue
        key = str(source or "") if stratify_by_source else ""
        strata[key].append(iid)
    out = {k: v for k, v in existing.items() if v}
    for key in sorted(strata):
        ids = np.array(sorted(strata[key]), dtype=np.int64)
        rng = np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])
        ids = ids[rng.permutation(ids.size)]
        n_val = round(ids.size * val_fraction)
        for i, iid in enumerate(ids.tolist()):
            out[iid] = "val" if i < n_val else "train"
    return out


def split_coco(coco: CocoDataset, splits: Mapping[int, str]) -> dict[str, CocoDataset]:
    """``{split_name: subset}``: the images of each split and their annotations
    (:meth:`~entityseg_data.io.coco.CocoDataset.subset`: records shared, not copied)."""
    names = sorted(set(splits.values()))
    return {n: coco.subset({i for i, s in splits.items() if s == n}) for n in names}
