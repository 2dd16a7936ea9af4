"""Tiled annotation of large images: tile geometry, cropping and exact stitching.

A large image (more than ``TilingConfig.min_pixels``) is annotated as several Label Studio tasks,
one per *tile*. The image is cut into a grid of non-overlapping **cores** (every pixel belongs to
exactly one core); each tile's **crop** is its core grown by ``margin`` pixels on every side
(clipped to the image), so neighbouring crops overlap by ``2 * margin`` pixels across a seam. A
tile task shows the crop at full resolution (never downscaled) with only the seeded regions that
intersect it, cropped, with their ids kept.

Stitching (:func:`stitch`) puts the annotator's per-tile masks back into image coordinates:

* **Which tile decides a pixel.** A pixel is normally taken from the tile whose core holds it.
  Where another tile covering the pixel (through its margin) *changed* it relative to the seed
  it was given (painted into a region, erased, drew a new region) and the core tile did not,
  the changing tile decides: an edit made near a seam is kept whichever side it was made on.
  Where both changed it, the core tile wins. An unedited image stitches back to its seed bit for
  bit, and a tile's edits inside its core come back bit for bit.
* **Ids.** Seeded regions keep their ids in every tile, so a region seen in several tiles is one
  entity. Regions drawn in a tile (ids not in the seed) are **merged through the overlap
  margin**: two regions of neighbouring tiles, at least one of them new, whose *drawn* pixels in
  the crops' common area coincide (at least ``merge_fraction`` of the smaller one's drawn pixels
  there) are one entity. A new region's drawn pixels are all its pixels; a seeded region's are
  those painted beyond its seed (seeds cover the whole image, so what a seeded region merely
  kept says nothing about what was drawn across a seam). A group of new regions joined this way
  takes the id of the seeded region it joins with the most pixels, else the id of its first
  region (lowest tile index, then result order). Two different seeded regions are never merged.

The stitched masks may still overlap (like a whole-image annotation); the workflow's overlap rule
and QA then run on the full-size result with the full-size seed, so they work across tiles.

Stage 2 names each entity once: :func:`owner_tiles` gives every entity the tile whose core holds
most of its pixels; that tile asks for its name.

Boxes are ``(x0, y0, x1, y1)`` in image pixels, half-open. Masks are (H, W) arrays; RLEs are
COCO compressed RLEs (:mod:`entityseg_data.masks.rle`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from entityseg_data.errors import ConfigError, DataError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity
from entityseg_data.masks.types import EntityId

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class TilingConfig:
    """When and how images are tiled.

    Attributes:
        min_pixels: images with more pixels than this are tiled (0 = tile every image; a
            negative value turns tiling off).
        tile_size: target side of a tile's core in pixels (the grid divides the image evenly,
            so cores are at most this size).
        margin: pixels added on each side of a core to make its crop (the overlap between
            neighbouring tiles is twice this).
        merge_fraction: two regions drawn across a seam are merged when their common pixels in
            the crops' shared area reach this fraction of the smaller one's pixels there.
    """

    min_pixels: int = 4_000_000
    tile_size: int = 1500
    margin: int = 64
    merge_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.tile_size < 64:
            raise ConfigError(f"tiling tile_size must be >= 64 pixels, got {self.tile_size}")
        if self.margin < 0:
            raise ConfigError(f"tiling margin must be >= 0 pixels, got {self.margin}")
        if not 0.0 < self.merge_fraction <= 1.0:
            raise ConfigError(f"tiling merge_fraction must be in (0, 1], got {self.merge_fraction}")

    @classmethod
    def from_config(cls, config: Any) -> TilingConfig:
        """The tiling settings of an ``annotation`` config section (``tile_*`` fields)."""
        return cls(
            min_pixels=int(config.tile_min_pixels),
            tile_size=int(config.tile_size),
            margin=int(config.tile_margin),
            merge_fraction=float(config.tile_merge_fraction),
        )

    def enabled_for(self, height: int, width: int) -> bool:
        """Whether an image of this size is annotated in tiles."""
        return self.min_pixels >= 0 and height * width > self.min_pixels


def _box(values: Sequence[Any]) -> Box:
    x0, y0, x1, y1 = (int(v) for v in values)
    return (x0, y0, x1, y1)


@dataclass(frozen=True)
class Tile:
    """One tile: its position in the grid, its core (the pixels it decides) and its crop (the
    pixels it shows), both in image pixels."""

    index: int
    row: int
    col: int
    core: Box
    crop: Box

    @property
    def height(self) -> int:
        return self.crop[3] - self.crop[1]

    @property
    def width(self) -> int:
        return self.crop[2] - self.crop[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "row": self.row,
            "col": self.col,
            "core": list(self.core),
            "crop": list(self.crop),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tile:
        try:
            core = _box(data["core"])
            crop = _box(data["crop"])
            return cls(int(data["index"]), int(data["row"]), int(data["col"]), core, crop)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed tile description {dict(data)!r}: {exc}") from None


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one image (row-major order; ``tiles[i].index == i``)."""

    height: int
    width: int
    tiles: tuple[Tile, ...]

    def __len__(self) -> int:
        return len(self.tiles)

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "tiles": [t.to_json() for t in self.tiles],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TilePlan:
        try:
            tiles = tuple(Tile.from_json(t) for t in data["tiles"])
            plan = cls(int(data["height"]), int(data["width"]), tiles)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed tile plan: {exc}") from None
        plan.check()
        return plan

    def check(self) -> None:
        """Raise DataError unless the cores partition the image and each crop holds its core."""
        cover = np.zeros((self.height, self.width), np.uint8)
        for i, t in enumerate(self.tiles):
            if t.index != i:
                raise DataError(f"tile plan: tile {i} has index {t.index}")
            x0, y0, x1, y1 = t.core
            cx0, cy0, cx1, cy1 = t.crop
            if not (0 <= cx0 <= x0 < x1 <= cx1 <= self.width):
                raise DataError(f"tile plan: tile {i} core {t.core} / crop {t.crop} out of order")
            if not (0 <= cy0 <= y0 < y1 <= cy1 <= self.height):
                raise DataError(f"tile plan: tile {i} core {t.core} / crop {t.crop} out of order")
            cover[y0:y1, x0:x1] += 1
        if not (cover == 1).all():
            raise DataError("tile plan: the tile cores do not cover the image exactly once")

    def core_owner(self) -> np.ndarray:
        """(H, W) int32 map: the index of the tile whose core holds each pixel."""
        out = np.empty((self.height, self.width), np.int32)
        for t in self.tiles:
            x0, y0, x1, y1 = t.core
            out[y0:y1, x0:x1] = t.index
        return out


def _cuts(n: int, parts: int) -> list[int]:
    return [round(k * n / parts) for k in range(parts + 1)]


def plan_tiles(height: int, width: int, *, tile_size: int, margin: int) -> TilePlan:
    """An even grid of cores at most ``tile_size`` on a side, each grown by ``margin``.

    >>> [t.crop for t in plan_tiles(100, 200, tile_size=100, margin=8).tiles]
    [(0, 0, 108, 100), (92, 0, 200, 100)]
    """
    if height <= 0 or width <= 0:
        raise DataError(f"cannot tile an image of size {height}x{width}")
    if tile_size <= 0 or margin < 0:
        raise ConfigError(f"tile_size must be > 0 and margin >= 0, got {tile_size}, {margin}")
    ny, nx = max(1, math.ceil(height / tile_size)), max(1, math.ceil(width / tile_size))
    ys, xs = _cuts(height, ny), _cuts(width, nx)
    tiles: list[Tile] = []
    for r in range(ny):
        for c in range(nx):
            core = (xs[c], ys[r], xs[c + 1], ys[r + 1])
            crop = (
                max(0, core[0] - margin),
                max(0, core[1] - margin),
                min(width, core[2] + margin),
                min(height, core[3] + margin),
            )
            tiles.append(Tile(len(tiles), r, c, core, crop))
    return TilePlan(height, width, tuple(tiles))


def plan_for(height: int, width: int, cfg: TilingConfig) -> TilePlan | None:
    """The tile plan of an image under ``cfg``, or None when it is annotated whole."""
    if not cfg.enabled_for(height, width):
        return None
    return plan_tiles(height, width, tile_size=cfg.tile_size, margin=cfg.margin)


# ---- patches: a mask cut to its bounding box, placed in image coordinates ----------------------


@dataclass(frozen=True)
class _Patch:
    """A boolean mask stored over its bounding box ``(x0, y0)`` + ``mask.shape``."""

    x0: int
    y0: int
    mask: np.ndarray

    @property
    def box(self) -> Box:
        h, w = self.mask.shape
        return (self.x0, self.y0, self.x0 + w, self.y0 + h)

    @classmethod
    def from_array(cls, arr: np.ndarray, x0: int = 0, y0: int = 0) -> _Patch | None:
        """The patch of a boolean array placed at (x0, y0), or None when it is empty."""
        rows = np.flatnonzero(arr.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(arr.any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(x0 + c0, y0 + r0, np.ascontiguousarray(arr[r0:r1, c0:c1]))

    def view(self, box: Box) -> np.ndarray:
        """The patch's pixels over ``box`` (zeros outside the patch), shape of the box."""
        x0, y0, x1, y1 = box
        out = np.zeros((y1 - y0, x1 - x0), bool)
        ix = _intersect(box, self.box)
        if ix is None:
            return out
        a0, b0, a1, b1 = ix
        out[b0 - y0 : b1 - y0, a0 - x0 : a1 - x0] = self.mask[
            b0 - self.y0 : b1 - self.y0, a0 - self.x0 : a1 - self.x0
        ]
        return out


def _intersect(a: Box, b: Box) -> Box | None:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    if x0 >= x1 or y0 >= y1:
        return None
    return (x0, y0, x1, y1)


def _union_box(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _bbox_box(rle: Mapping[str, Any]) -> Box | None:
    x, y, w, h = rle_utils.bbox(dict(rle))
    if w <= 0 or h <= 0:
        return None
    return (int(x), int(y), int(x + w), int(y + h))


# ---- cropping --------------------------------------------------------------------------------


def crop_entities(entities: Sequence[Entity], plan: TilePlan) -> list[list[Entity]]:
    """For every tile, the entities that intersect its crop, cropped to it (tile-size RLEs; ids,
    names and scores kept; order kept). Each full-size mask is decoded once."""
    out: list[list[Entity]] = [[] for _ in plan.tiles]
    for e in entities:
        rle_utils.check_size(e.segmentation, plan.height, plan.width, where=f"entity {e.id}")
        bbox = _bbox_box(e.segmentation)
        if bbox is None:
            continue
        hits = [t for t in plan.tiles if _intersect(bbox, t.crop) is not None]
        if not hits:
            continue
        full = rle_utils.decode(e.segmentation).astype(bool)
        for t in hits:
            x0, y0, x1, y1 = t.crop
            part = full[y0:y1, x0:x1]
            if part.any():
                out[t.index].append(replace(e, rle=rle_utils.encode(part)))
    return out


def owner_tiles(entities: Sequence[Entity], plan: TilePlan) -> dict[EntityId, int]:
    """Entity id -> the tile whose core holds most of its pixels (ties: the lower index); the
    tile where stage 2 asks for the entity's name. Entities without pixels are left out."""
    owner = plan.core_owner()
    out: dict[EntityId, int] = {}
    for e in entities:
        bbox = _bbox_box(e.segmentation)
        if bbox is None:
            continue
        x0, y0, x1, y1 = bbox
        m = rle_utils.decode(e.segmentation)[y0:y1, x0:x1].astype(bool)
        counts = np.bincount(owner[y0:y1, x0:x1][m], minlength=len(plan.tiles))
        out[e.id] = int(np.argmax(counts))
    return out


def crop_image(src: Any, tile: Tile) -> Any:
    """The tile's crop of a PIL image, at full resolution."""
    return src.crop(tile.crop)


# ---- stitching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeamMerge:
    """Region ``merged`` of tile ``tile`` became part of entity ``into`` (``pixels`` = common
    pixels in the overlap margin that joined them)."""

    tile: int
    merged: EntityId
    into: EntityId
    pixels: int


@dataclass(frozen=True)
class StitchResult:
    """The full-size entities (in order: seeded ids in seed order, then new entities in tile
    order), the seam merges, and where each entity came from."""

    entities: tuple[Entity, ...]
    merges: tuple[SeamMerge, ...] = ()
    tiles_of: dict[EntityId, tuple[int, ...]] = field(default_factory=dict)
    # pixels decided by a tile other than the core's tile (edits made in a margin)
    margin_edits: int = 0

    def ids_by_tile(self) -> dict[tuple[int, EntityId], EntityId]:
        """(tile, region id in that tile) -> entity id, for every region that was merged."""
        return {(m.tile, m.merged): m.into for m in self.merges}


class _Parts:
    """Per-tile regions as patches in image coordinates, in result order."""

    def __init__(self, plan: TilePlan, parts: Mapping[int, Sequence[Entity]]) -> None:
        missing = [t.index for t in plan.tiles if t.index not in parts]
        if missing:
            raise DataError(f"stitch: tiles {missing} have no annotation")
        self.plan = plan
        self.regions: list[list[tuple[EntityId, _Patch | None, Entity]]] = []
        for t in plan.tiles:
            rows = []
            seen: set[EntityId] = set()
            for e in parts[t.index]:
                if e.id in seen:
                    raise DataError(f"stitch: tile {t.index} has region {e.id} twice")
                seen.add(e.id)
                rle_utils.check_size(
                    e.segmentation, t.height, t.width, where=f"tile {t.index} region {e.id}"
                )
                m = rle_utils.decode(e.segmentation).astype(bool)
                rows.append((e.id, _Patch.from_array(m, t.crop[0], t.crop[1]), e))
            self.regions.append(rows)


def _seed_patches(seed: Sequence[Entity], plan: TilePlan) -> dict[EntityId, _Patch]:
    out: dict[EntityId, _Patch] = {}
    for e in seed:
        rle_utils.check_size(e.segmentation, plan.height, plan.width, where=f"seed {e.id}")
        bbox = _bbox_box(e.segmentation)
        if bbox is None:
            continue
        x0, y0, x1, y1 = bbox
        m = rle_utils.decode(e.segmentation)[y0:y1, x0:x1].astype(bool)
        out[e.id] = _Patch(x0, y0, np.ascontiguousarray(m))
    return out


def _changed(
    tile: Tile,
    regions: Sequence[tuple[EntityId, _Patch | None, Entity]],
    seeds: Mapping[EntityId, _Patch],
) -> np.ndarray:
    """(crop h, w) bool: pixels where the tile's regions differ from the seed cropped to it."""
    crop = tile.crop
    changed = np.zeros((tile.height, tile.width), bool)
    have = {rid: p for rid, p, _ in regions}
    ids = list(have) + [s for s in seeds if s not in have]
    for rid in ids:
        a = have.get(rid)
        b = seeds.get(rid)
        box = None
        for p in (a, b):
            if p is None:
                continue
            ix = _intersect(p.box, crop)
            if ix is not None:
                box = ix if box is None else _union_box(box, ix)
        if box is None:
            continue
        va = a.view(box) if a is not None else np.zeros((box[3] - box[1], box[2] - box[0]), bool)
        vb = b.view(box) if b is not None else np.zeros_like(va)
        changed[box[1] - crop[1] : box[3] - crop[1], box[0] - crop[0] : box[2] - crop[0]] |= va ^ vb
    return changed


def _drawn_view(patch: _Patch, seed: _Patch | None, zone: Box) -> np.ndarray:
    """A region's pixels over ``zone`` that the annotator drew: all of a new region, only the
    pixels painted beyond its seed for a seeded one (seeds cover the whole image, so a seeded
    region's kept pixels say nothing about what was drawn across a seam)."""
    v = patch.view(zone)
    if seed is not None:
        v &= ~seed.view(zone)
    return v


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def stitch(
    plan: TilePlan,
    parts: Mapping[int, Sequence[Entity]],
    seed: Sequence[Entity] = (),
    *,
    merge_fraction: float = 0.5,
) -> StitchResult:
    """Full-size entities from the per-tile annotations (see the module docstring).

    Args:
        plan: the image's tile plan.
        parts: tile index -> that tile's regions (tile-size RLEs, in result order); every tile
            must be present (an empty list is a tile whose regions were all deleted).
        seed: the full-size seeded entities the tiles were cut from (empty: nothing seeded).
        merge_fraction: see :class:`TilingConfig`.

    Returns a :class:`StitchResult`; masks may overlap (the overlap rule runs afterwards).
    """
    tp = _Parts(plan, parts)
    seeds = _seed_patches(seed, plan)
    seed_ids = [e.id for e in seed]
    seeded = set(seed_ids)

    # 1. which tile decides each pixel
    changed = [_changed(t, tp.regions[t.index], seeds) for t in plan.tiles]
    owner = plan.core_owner()
    owner_changed = np.zeros((plan.height, plan.width), bool)
    for t in plan.tiles:
        x0, y0, x1, y1 = t.core
        cx0, cy0 = t.crop[0], t.crop[1]
        owner_changed[y0:y1, x0:x1] = changed[t.index][y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
    source = owner.copy()
    taken = owner_changed.copy()  # pixels already decided by a tile that changed them
    for t in plan.tiles:
        x0, y0, x1, y1 = t.crop
        take = changed[t.index] & ~taken[y0:y1, x0:x1]
        if take.any():
            source[y0:y1, x0:x1][take] = t.index
            taken[y0:y1, x0:x1] |= take
    margin_edits = int((source != owner).sum())
    del owner_changed, taken, changed

    # 2. ids: same id = same entity; new regions merge through the overlap margins
    uf = _UnionFind()
    seed_overlap: dict[Any, dict[EntityId, int]] = {}
    merge_pixels: dict[tuple[int, EntityId], int] = {}
    order: dict[Any, tuple[int, int]] = {}
    first_of: dict[EntityId, Any] = {}
    for t in plan.tiles:
        for k, (rid, _p, _e) in enumerate(tp.regions[t.index]):
            node = rid if rid in seeded else (t.index, rid)
            order.setdefault(node, (t.index, k))
            uf.find(node)
            if node != rid:  # a new id seen in several tiles is one region
                first_of.setdefault(rid, node)
                uf.union(first_of[rid], node)
    for a in plan.tiles:
        for b in plan.tiles[a.index + 1 :]:
            zone = _intersect(a.crop, b.crop)
            if zone is None:
                continue
            views_b = [
                (rb, _drawn_view(pb, seeds.get(rb), zone))
                for rb, pb, _ in tp.regions[b.index]
                if pb is not None and _intersect(pb.box, zone) is not None
            ]
            for ra, pa, _ in tp.regions[a.index]:
                if pa is None or _intersect(pa.box, zone) is None:
                    continue
                va = _drawn_view(pa, seeds.get(ra), zone)
                na = int(va.sum())
                if na == 0:
                    continue
                for rb, vb in views_b:
                    if ra == rb or (ra in seeded and rb in seeded):
                        continue
                    common = int((va & vb).sum())
                    nb = int(vb.sum())
                    if common == 0 or common < merge_fraction * min(na, nb):
                        continue
                    node_a = ra if ra in seeded else (a.index, ra)
                    node_b = rb if rb in seeded else (b.index, rb)
                    if ra in seeded or rb in seeded:  # new region touching a seeded one
                        new, old = (node_b, ra) if ra in seeded else (node_a, rb)
                        d = seed_overlap.setdefault(new, {})
                        d[old] = d.get(old, 0) + common
                    else:
                        uf.union(node_a, node_b)
                        merge_pixels[(b.index, rb)] = merge_pixels.get((b.index, rb), 0) + common
                        merge_pixels[(a.index, ra)] = merge_pixels.get((a.index, ra), 0) + common
    # a group of new regions takes the seeded id it overlaps most, else its first region's id
    groups: dict[Any, list[Any]] = {}
    for node in order:
        if isinstance(node, tuple):
            groups.setdefault(uf.find(node), []).append(node)
    final: dict[Any, EntityId] = {}
    for members in groups.values():
        members.sort(key=lambda n: order[n])
        votes: dict[EntityId, int] = {}
        for n in members:
            for sid, px in seed_overlap.get(n, {}).items():
                votes[sid] = votes.get(sid, 0) + px
        if votes:
            target = max(sorted(votes), key=lambda s: votes[s])
        else:
            target = members[0][1]
        for n in members:
            final[n] = target
    # a new id that collides with a seeded id or another group's id keeps its tile suffix
    used = set(seeded)
    group_ids: dict[EntityId, Any] = {}
    for members in sorted(groups.values(), key=lambda m: order[m[0]]):
        target = final[members[0]]
        if target in seeded:
            continue
        root = uf.find(members[0])
        if target in used and group_ids.get(target) != root:
            target = f"{target}@t{members[0][0]}"
            for n in members:
                final[n] = target
        used.add(target)
        group_ids[target] = root
    merges = []
    for node, target in final.items():
        t_index, rid = node
        if rid != target:
            px = merge_pixels.get((t_index, rid), 0) + sum(seed_overlap.get(node, {}).values())
            merges.append(SeamMerge(tile=t_index, merged=rid, into=target, pixels=px))
    merges.sort(key=lambda m: (m.tile, m.merged))

    # 3. paste: every entity's pixels from the tiles that decide them
    members_of: dict[EntityId, list[tuple[int, _Patch | None, Entity]]] = {}
    for t in plan.tiles:
        for rid, patch, e in tp.regions[t.index]:
            eid = rid if rid in seeded else final[(t.index, rid)]
            members_of.setdefault(eid, []).append((t.index, patch, e))
    new_ids = sorted(
        (eid for eid in members_of if eid not in seeded),
        key=lambda eid: min(order[n] for n, f in final.items() if f == eid),
    )
    out: list[Entity] = []
    tiles_of: dict[EntityId, tuple[int, ...]] = {}
    for eid in [s for s in seed_ids if s in members_of] + new_ids:
        full = np.zeros((plan.height, plan.width), bool)
        for t_index, patch, _e in members_of[eid]:
            if patch is None:
                continue
            x0, y0, x1, y1 = patch.box
            full[y0:y1, x0:x1] |= patch.mask & (source[y0:y1, x0:x1] == t_index)
        first = members_of[eid][0][2]
        attrs = next((e for ti, _p, e in members_of[eid] if e.id == eid), first)
        out.append(replace(attrs, id=eid, rle=rle_utils.encode(full)))
        tiles_of[eid] = tuple(sorted({ti for ti, _p, _e in members_of[eid]}))
    return StitchResult(
        entities=tuple(out), merges=tuple(merges), tiles_of=tiles_of, margin_edits=margin_edits
    )


def tiles_for_regions(region_ids: Iterable[str], result: StitchResult) -> dict[int, list[str]]:
    """Tile index -> the stitched entity ids (from ``region_ids``) shown in that tile: where a
    finding about a region is reported back to the annotator."""
    out: dict[int, list[str]] = {}
    for rid in region_ids:
        for t in result.tiles_of.get(rid, ()):
            out.setdefault(t, []).append(rid)
    return out


__all__ = [
    "Box",
    "SeamMerge",
    "StitchResult",
    "Tile",
    "TilePlan",
    "TilingConfig",
    "crop_entities",
    "crop_image",
    "owner_tiles",
    "plan_for",
    "plan_tiles",
    "stitch",
    "tiles_for_regions",
]
