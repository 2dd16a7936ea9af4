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

Masks are compressed COCO RLEs; the work is done on their column-major runs with the core's
label-map algebra (:func:`entityseg_data.masks.runs.paint` with :class:`IntentRule` as its
overlap rule): no dense mask is decoded; one (H*W) label map is painted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from entityseg_data.errors import ConfigError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks import runs as R
from entityseg_data.masks.store import Entity
from entityseg_data.masks.types import EntityId

Policy = Literal["intent", "reject", "smaller_wins", "later_wins"]
POLICIES: tuple[str, ...] = ("intent", "reject", "smaller_wins", "later_wins")
RULES = ("painted_over_seed", "new_region", "later_edit", "seed_overlap")


@dataclass(frozen=True)
class Move:
    """``pixels`` claimed by region ``source`` that went to region ``target`` under ``rule``."""

    source: EntityId
    target: EntityId
    pixels: int
    rule: str

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "pixels": self.pixels, "rule": self.rule}


@dataclass(frozen=True)
class OverlapResult:
    """Disjoint entities (empty ones dropped, order kept), the dropped ids, and the moves."""

    entities: tuple[Entity, ...]
    dropped: tuple[EntityId, ...] = ()
    moves: tuple[Move, ...] = ()
    overlap_pixels: int = 0

    def moved_by_rule(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.moves:
            out[m.rule] = out.get(m.rule, 0) + m.pixels
        return out


@dataclass(frozen=True)
class IntentRule:
    """The ``intent`` rule as a :class:`entityseg_data.masks.runs.OverlapRule`: every region is
    split into what it kept from its seed (priority 0) and what was painted (priority 1); the
    label-map painter keeps the highest priority, ties going to the later region."""

    seeds: tuple[R.Runs | None, ...]
    npix: int

    def parts(self, regions: Sequence[R.Runs]) -> list[tuple[R.Runs, R.Runs]]:
        """(kept, painted) of every region."""
        out = []
        for r, seed in zip(regions, self.seeds):
            if seed is None:
                out.append((R.EMPTY, r))
            else:
                kept = R.intersection([r, seed])
                out.append((kept, R.difference(r, kept)))
        return out

    def pieces(self, regions: Sequence[R.Runs]) -> list[list[tuple[R.Runs, float]]]:
        return [[(k, 0.0), (p, 1.0)] for k, p in self.parts(regions)]


@dataclass(frozen=True)
class _Ordered:
    """``smaller_wins`` (ties: the earlier region) / ``later_wins`` as one-piece priorities."""

    smaller: bool

    def pieces(self, regions: Sequence[R.Runs]) -> list[list[tuple[R.Runs, float]]]:
        n = len(regions)
        if not self.smaller:
            return [[(r, 0.0)] for r in regions]
        # the smaller area wins; among equal areas the earlier region (priority ties go later)
        return [[(r, -float(r.area * (n + 1) + i))] for i, r in enumerate(regions)]


def resolve(
    entities: Sequence[Entity],
    height: int,
    width: int,
    policy: str = "intent",
    seeds: Mapping[EntityId, Mapping[str, Any]] | None = None,
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
    (same objects) when nothing overlaps. Works on column-major runs (masks.runs): no dense mask
    is decoded.
    """
    if policy not in POLICIES:
        raise ConfigError(f"annotation.overlap_policy must be one of {POLICIES}, got {policy!r}")
    entities = list(entities)
    npix = height * width
    regions = [rle_utils.runs(e.segmentation, where=f"region {e.id}") for e in entities]
    for e in entities:
        rle_utils.check_size(e.segmentation, height, width, where=f"region {e.id}")
    pairs = R.overlap_pairs(regions)
    overlap = R.overlap_pixels(regions) if pairs else 0
    if not pairs or policy == "reject":
        return OverlapResult(entities=tuple(entities), overlap_pixels=int(overlap))
    # only regions that share pixels with another take part (the others stay as they are)
    involved = sorted({i for pair in pairs for i in pair})
    part = [regions[i] for i in involved]
    rule: IntentRule | _Ordered
    if policy == "intent":
        seed_runs: list[R.Runs | None] = []
        for i in involved:
            seed = (seeds or {}).get(entities[i].id)
            if seed is None:
                seed_runs.append(None)
            elif seed.get("counts") == entities[i].segmentation.get("counts"):
                seed_runs.append(regions[i])  # unchanged from its seed: all kept
            else:
                rle_utils.check_size(seed, height, width, where=f"seed of {entities[i].id}")
                seed_runs.append(rle_utils.runs(seed, where=f"seed of {entities[i].id}"))
        rule = IntentRule(tuple(seed_runs), npix)
    else:
        rule = _Ordered(smaller=policy == "smaller_wins")
    flat = R.paint(part, npix, policy=rule)
    final = R.label_runs(flat, list(range(1, len(part) + 1)))
    moves = _moves(entities, involved, part, final, rule, policy, npix)
    kept_entities, dropped = [], []
    local = {i: k for k, i in enumerate(involved)}
    for i, e in enumerate(entities):
        if i not in local:
            kept_entities.append(e)
            continue
        runs_i = final[local[i] + 1]
        if runs_i.area == 0:
            dropped.append(e.id)
        elif runs_i.area == regions[i].area:
            kept_entities.append(e)  # lost nothing
        else:
            kept_entities.append(replace(e, rle=rle_utils.from_runs(runs_i, height, width)))
    return OverlapResult(
        entities=tuple(kept_entities),
        dropped=tuple(dropped),
        moves=tuple(moves),
        overlap_pixels=int(overlap),
    )


def _moves(
    entities: Sequence[Entity],
    involved: Sequence[int],
    part: Sequence[R.Runs],
    final: Mapping[int, R.Runs],
    rule: IntentRule | _Ordered,
    policy: str,
    npix: int,
) -> list[Move]:
    """Pixels each region lost to each other region, by clause of the rule."""
    moves: list[Move] = []
    parts = rule.parts(part) if isinstance(rule, IntentRule) else None
    for (a, b), _ in sorted(R.overlap_pairs(part).items()):
        for i, j in ((a, b), (b, a)):  # i lost to j
            lost = R.intersection([part[i], final[j + 1]])
            if lost.area == 0:
                continue
            src, dst = entities[involved[i]].id, entities[involved[j]].id
            if parts is None:
                moves.append(Move(src, dst, lost.area, policy))
                continue
            kept_i = parts[i][0]
            painted_j = parts[j][1]
            j_new = isinstance(rule, IntentRule) and rule.seeds[j] is None
            won_painted = R.intersection([lost, painted_j])
            over_kept = R.intersection([won_painted, kept_i]).area
            crossing = won_painted.area - over_kept
            for clause, px in (
                ("new_region" if j_new else "painted_over_seed", over_kept),
                ("later_edit", crossing),
                ("seed_overlap", lost.area - won_painted.area),
            ):
                if px:
                    moves.append(Move(src, dst, int(px), clause))
    return moves


__all__ = ["POLICIES", "RULES", "Move", "OverlapResult", "Policy", "resolve"]
