"""Overlap rules: make the masks of one annotation disjoint, and say which pixels each rule moved.

Pre-annotations cover the whole image, so every correction an annotator makes (a brush stroke
that extends a region, a new region, a polygon drawn over several pre-annotated pieces) overlaps
a neighbour; Label Studio allows it. The rules:

``intent`` (the default) follows what the annotator did, relative to the *seed* each region
started from (the pre-annotation in stage 1, the approved stage-1 masks in stage 2). A pixel of a
region is *painted* when the region's seed did not have it (every pixel of a new, unseeded region
is painted) and *kept* when it did. Where several regions claim a pixel:

1. painted beats kept: the region the annotator painted into wins over a neighbour that only
   kept the pixel from its seed (rule ``painted_over_seed``; ``new_region`` when the winner is a
   region the annotator drew from scratch, e.g. a polygon over several pieces);
2. between painted claims the region later in the result list wins (``later_edit``: two edited
   regions crossing, the later edit is on top, as the editor draws it);
3. between kept claims (seeds that overlapped already) the later one wins (``seed_overlap``).

Erased pixels are simply gone from the region (they become uncovered, which QA reports). A
region left without pixels is dropped.

``smaller_wins`` gives a contested pixel to the smallest mask (ties: the earlier region);
``later_wins`` to the region later in the result list; ``reject`` resolves nothing (QA fails the
annotation). Every rule reports its :class:`Move` s: how many pixels went from which region to
which, and under which clause.

Masks are compressed COCO RLEs; the work is done on column-major flat label maps (COCO's pixel
order, so decoding and re-encoding need no transpose). Memory: two (H*W) uint16/uint32 maps plus
one decoded mask at a time (~60 MB at 12 MP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from entityseg_data.errors import ConfigError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity

Policy = Literal["intent", "reject", "smaller_wins", "later_wins"]
POLICIES: tuple[str, ...] = ("intent", "reject", "smaller_wins", "later_wins")
RULES = ("painted_over_seed", "new_region", "later_edit", "seed_overlap")


@dataclass(frozen=True)
class Move:
    """``pixels`` claimed by region ``source`` that went to region ``target`` under ``rule``."""

    source: str
    target: str
    pixels: int
    rule: str

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "pixels": self.pixels, "rule": self.rule}


@dataclass(frozen=True)
class OverlapResult:
    """Disjoint entities (empty ones dropped, order kept), the dropped ids, and the moves."""

    entities: tuple[Entity, ...]
    dropped: tuple[str, ...] = ()
    moves: tuple[Move, ...] = ()
    overlap_pixels: int = 0

    def moved_by_rule(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.moves:
            out[m.rule] = out.get(m.rule, 0) + m.pixels
        return out


def _flat_mask(rle: Mapping[str, Any], height: int, width: int, where: str) -> np.ndarray:
    """Column-major flat bool view of a mask (no copy beyond pycocotools' decode)."""
    seg = rle_utils.to_compressed(dict(rle), height, width)
    rle_utils.check_size(seg, height, width, where=where)
    counts = seg["counts"]
    raw = {
        "size": seg["size"],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    m = mask_utils.decode(raw)  # (H, W) Fortran order
    return m.T.reshape(-1).view(bool)


def _dtype(n: int) -> Any:
    return np.uint16 if n < 65535 else np.uint32


def _encode(final: np.ndarray, n: int, height: int, width: int) -> dict[int, dict[str, Any]]:
    lm = final.reshape(width, height).T  # (H, W) view in Fortran order
    return rle_utils.label_map_to_rles(lm, ids=range(1, n + 1))


def resolve(
    entities: Sequence[Entity],
    height: int,
    width: int,
    policy: str = "intent",
    seeds: Mapping[str, Mapping[str, Any]] | None = None,
) -> OverlapResult:
    """Apply ``policy`` (see the module docstring) to ``entities`` of an (height, width) image.

    Args:
        entities: the regions in result order (COCO RLEs of the image size).
        height, width: image size in pixels.
        policy: ``intent`` | ``smaller_wins`` | ``later_wins`` (``reject`` changes nothing).
        seeds: region id -> the RLE the region started from (``intent`` only; regions without a
            seed are new). None or empty: every region counts as new, so ``intent`` is
            ``later_wins``.

    Returns the disjoint entities, the dropped ids and the moves; entities are returned unchanged
    (same objects) when nothing overlaps.
    """
    if policy not in POLICIES:
        raise ConfigError(f"annotation.overlap_policy must be one of {POLICIES}, got {policy!r}")
    entities = list(entities)
    segs = [e.segmentation for e in entities]
    overlap = rle_utils.overlap_pixels(segs)
    if overlap == 0 or policy == "reject":
        return OverlapResult(entities=tuple(entities), overlap_pixels=int(overlap))
    # only regions that share pixels with another take part (the others stay as they are)
    ious = rle_utils.iou_matrix(segs, segs)
    np.fill_diagonal(ious, 0)
    involved = [i for i in range(len(entities)) if ious[i].max() > 0]
    part = [entities[i] for i in involved]
    n = len(part)
    dt = _dtype(n)
    if policy == "intent":
        final, moves = _intent(part, height, width, seeds or {}, dt)
    else:
        final, moves = _ordered(part, height, width, policy, dt)
    rles = _encode(final, n, height, width)
    new_seg = {i: rles[k + 1] for k, i in enumerate(involved)}
    kept, dropped = [], []
    for i, e in enumerate(entities):
        seg = new_seg.get(i)
        if seg is None:
            kept.append(e)
        elif rle_utils.area(seg) > 0:
            kept.append(replace(e, segmentation=seg))
        else:
            dropped.append(e.id)
    return OverlapResult(
        entities=tuple(kept),
        dropped=tuple(dropped),
        moves=tuple(moves),
        overlap_pixels=int(overlap),
    )


def _ordered(
    entities: Sequence[Entity], height: int, width: int, policy: str, dt: Any
) -> tuple[np.ndarray, list[Move]]:
    n = len(entities)
    order = list(range(n))
    if policy == "smaller_wins":
        areas = rle_utils.areas([e.segmentation for e in entities])
        # paint the largest first so the smallest is painted last and wins; ties: earlier wins
        order = sorted(range(n), key=lambda i: (-int(areas[i]), -i))
    final = np.zeros(height * width, dt)
    masks: dict[int, np.ndarray] = {}
    for i in order:
        idx = np.flatnonzero(_flat_mask(entities[i].segmentation, height, width, entities[i].id))
        masks[i] = idx
        final[idx] = i + 1
    moves: list[Move] = []
    for i in range(n):
        got = final[masks[i]]
        lost = got[got != i + 1].astype(np.int64)
        if lost.size:
            for j, c in zip(*np.unique(lost, return_counts=True)):
                moves.append(Move(entities[i].id, entities[int(j) - 1].id, int(c), policy))
    return final, moves


def _intent(
    entities: Sequence[Entity],
    height: int,
    width: int,
    seeds: Mapping[str, Mapping[str, Any]],
    dt: Any,
) -> tuple[np.ndarray, list[Move]]:
    n = len(entities)
    npix = height * width
    seeded = np.zeros(n + 1, bool)
    kept_layer = np.zeros(npix, dt)  # regions painted in order over the pixels they kept
    painted_layer = np.zeros(npix, dt)  # ... and over the pixels they painted
    claims: list[tuple[np.ndarray, np.ndarray]] = []
    for i, e in enumerate(entities):
        idx = np.flatnonzero(_flat_mask(e.segmentation, height, width, e.id))
        seed = seeds.get(e.id)
        if seed is not None:
            seeded[i + 1] = True
        own: np.ndarray
        if seed is not None and seed.get("counts") == e.segmentation.get("counts"):
            own = np.ones(idx.size, bool)  # unchanged from its seed: every pixel is kept
        elif seed is not None:
            own = _flat_mask(seed, height, width, f"seed of {e.id}")[idx]
        else:
            own = np.zeros(idx.size, bool)
        claims.append((idx, own))
        kept_layer[idx[own]] = i + 1
        painted_layer[idx[~own]] = i + 1
    final = np.where(painted_layer > 0, painted_layer, kept_layer)
    del kept_layer
    moves: list[Move] = []
    for i, (idx, own) in enumerate(claims):
        got = final[idx]
        lost = got != i + 1
        if not lost.any():
            continue
        winners = got[lost].astype(np.int64)
        i_painted = ~own[lost]
        w_painted = painted_layer[idx[lost]] > 0  # a painter wins wherever there is one
        rule = np.where(
            w_painted & ~i_painted,
            np.where(seeded[winners], 0, 1),  # painted_over_seed / new_region
            np.where(w_painted, 2, 3),  # later_edit / seed_overlap
        )
        key = winners * 4 + rule
        for k, c in zip(*np.unique(key, return_counts=True)):
            j, r = divmod(int(k), 4)
            moves.append(Move(entities[i].id, entities[j - 1].id, int(c), RULES[r]))
    return final, moves


__all__ = ["POLICIES", "RULES", "Move", "OverlapResult", "Policy", "resolve"]
