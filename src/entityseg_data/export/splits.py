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


def assign_splits(
    images: Iterable[Mapping[str, Any]],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    stratify_by_source: bool = True,
    existing: Mapping[int, str] | None = None,
) -> dict[int, str]:
    """``{image_id: "train" | "val"}``.

    Args:
        images: dicts with ``id`` and (for stratification) ``img_source`` or ``source``.
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
        iid = int(img["id"])
        if existing.get(iid):
            continue
        key = str(img.get("img_source") or img.get("source") or "") if stratify_by_source else ""
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


def split_coco(coco: Mapping[str, Any], splits: Mapping[int, str]) -> dict[str, dict[str, Any]]:
    """``{split_name: coco_subset}`` (images and their annotations; other keys copied)."""
    names = sorted(set(splits.values()))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        ids = {i for i, s in splits.items() if s == name}
        sub = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
        sub["images"] = [im for im in coco["images"] if int(im["id"]) in ids]
        sub["annotations"] = [a for a in coco["annotations"] if int(a["image_id"]) in ids]
        out[name] = sub
    return out
