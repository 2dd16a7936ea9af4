"""Tiled annotation: tile geometry, cropping and exact stitching (pure functions, no server)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from entityseg_data.annotation import tiling
from entityseg_data.annotation.tiling import TilePlan, TilingConfig, plan_tiles, stitch
from entityseg_data.errors import ConfigError, DataError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity

H, W = 700, 1000
TILE, MARGIN = 400, 24  # a 2 x 3 grid: cores ~350 x 333


@functools.cache
def voronoi(h: int, w: int, n: int, seed: int) -> np.ndarray:
    """(h, w) uint16 label map 1..n with wiggly borders (every pixel labelled). Computed once per
    arguments (~0.1 CPU s at 700 x 1000; a dozen tests read it) and read-only, so that no test
    can change another's."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1, (n, 2)) * [h, w]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy += 4 * np.sin(xx / 7.0)
    d = (yy[None] - pts[:, 0, None, None]) ** 2 + (xx[None] - pts[:, 1, None, None]) ** 2
    lm = (np.argmin(d, axis=0) + 1).astype(np.uint16)
    lm.setflags(write=False)
    return lm


def entities_of(lm: np.ndarray, prefix: str = "9_") -> list[Entity]:
    return [
        Entity(id=f"{prefix}{k}", rle=r, score=0.5, name=f"n{k}")
        for k, r in sorted(rle_utils.label_map_to_rles(lm).items())
    ]


def masks(entities) -> dict[str, np.ndarray]:
    return {e.id: rle_utils.decode(e.segmentation).astype(bool) for e in entities}


def tile_entity(tile, eid: str, full_mask: np.ndarray, **kw) -> Entity:
    x0, y0, x1, y1 = tile.crop
    return Entity(id=eid, rle=rle_utils.encode(full_mask[y0:y1, x0:x1]), **kw)


def disc(cx: float, cy: float, r: float, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def replace_in(parts, tile_index, eid, new_entity):
    parts[tile_index] = [new_entity if e.id == eid else e for e in parts[tile_index]]


@pytest.fixture()
def plan() -> TilePlan:
    return plan_tiles(H, W, tile_size=TILE, margin=MARGIN)


@pytest.fixture()
def bands() -> tuple[list[Entity], dict[str, np.ndarray]]:
    """Vertical bands 9_1..9_6 at x = 0, 250, 320, 420, 600, 760 (seams at x = 333 and 667)."""
    cuts = [0, 250, 320, 420, 600, 760, W]
    lm = np.zeros((H, W), np.uint16)
    for k in range(len(cuts) - 1):
        lm[:, cuts[k] : cuts[k + 1]] = k + 1
    seed = entities_of(lm)
    return seed, masks(seed)


@pytest.fixture()
def seed() -> list[Entity]:
    return entities_of(voronoi(H, W, 12, seed=3))


# ---- geometry ---------------------------------------------------------------------------------


def test_plan_cores_partition_the_image_and_crops_add_the_margin(plan):
    assert len(plan) == 6
    plan.check()
    cover = np.zeros((H, W), int)
    for t in plan.tiles:
        x0, y0, x1, y1 = t.core
        assert x1 - x0 <= TILE and y1 - y0 <= TILE
        cover[y0:y1, x0:x1] += 1
        assert t.crop == (
            max(0, x0 - MARGIN),
            max(0, y0 - MARGIN),
            min(W, x1 + MARGIN),
            min(H, y1 + MARGIN),
        )
    assert (cover == 1).all()
    owner = plan.core_owner()
    for t in plan.tiles:
        x0, y0, x1, y1 = t.core
        assert (owner[y0:y1, x0:x1] == t.index).all()


def test_plan_round_trips_through_json_and_rejects_broken_plans(plan):
    assert TilePlan.from_json(plan.to_json()) == plan
    broken = plan.to_json()
    broken["tiles"][1]["core"] = [320, 0, 330, 10]  # inside its crop, but leaves a hole
    with pytest.raises(DataError, match="cover the image exactly once"):
        TilePlan.from_json(broken)
    with pytest.raises(DataError, match="malformed tile"):
        TilePlan.from_json({"height": 5, "width": 5, "tiles": [{"index": 0}]})


def test_small_images_are_one_tile_and_the_threshold_chooses_tiling():
    assert len(plan_tiles(300, 200, tile_size=400, margin=10)) == 1
    cfg = TilingConfig(min_pixels=1_000_000, tile_size=512, margin=32)
    assert tiling.plan_for(999, 1000, cfg) is None
    p = tiling.plan_for(1000, 1001, cfg)
    assert p is not None and len(p) == 4
    assert tiling.plan_for(4000, 3000, TilingConfig(min_pixels=-1)) is None
    with pytest.raises(ConfigError, match="tile_size"):
        TilingConfig(tile_size=10)
    with pytest.raises(ConfigError, match="margin"):
        TilingConfig(margin=-1)
    with pytest.raises(ConfigError, match="merge_fraction"):
        TilingConfig(merge_fraction=0)


@pytest.mark.parametrize(
    ("height", "width", "tiled"),
    [
        (4000, 3000, True),
        (3000, 4000, True),
        (2000, 2000, False),
        (1500, 2000, False),
        (400, 600, False),
    ],
)
def test_the_default_config_tiles_12mp_and_not_3mp(height, width, tiled):
    """Issue 13: tiled mode on by default above the threshold (4 MP): a 12 MP image becomes
    tiles of at most tile_size + 2 margins, smaller images stay whole."""
    from entityseg_data.config.annotation import AnnotationConfig

    cfg = TilingConfig.from_config(AnnotationConfig())
    p = tiling.plan_for(height, width, cfg)
    assert (p is not None) is tiled
    if p is not None:
        assert len(p) > 1
        for t in p.tiles:
            x0, y0, x1, y1 = t.crop
            assert x1 - x0 <= cfg.tile_size + 2 * cfg.margin
            assert y1 - y0 <= cfg.tile_size + 2 * cfg.margin


def test_crop_keeps_ids_names_order_and_only_intersecting_regions(plan, seed):
    crops = tiling.crop_entities(seed, plan)
    full = masks(seed)
    for t, part in zip(plan.tiles, crops):
        x0, y0, x1, y1 = t.crop
        expected = [e.id for e in seed if full[e.id][y0:y1, x0:x1].any()]
        assert [e.id for e in part] == expected
        for e in part:
            assert rle_utils.size(e.segmentation) == (t.height, t.width)
            assert (rle_utils.decode(e.segmentation).astype(bool) == full[e.id][y0:y1, x0:x1]).all()
            assert e.name == f"n{e.id.split('_')[1]}" and e.score == 0.5
        assert len(part) < len(seed)  # a tile carries only what it shows


# ---- stitching --------------------------------------------------------------------------------


def test_unedited_tiles_stitch_back_to_the_seed_bit_for_bit(plan, seed):
    crops = tiling.crop_entities(seed, plan)
    res = stitch(plan, dict(enumerate(crops)), seed)
    assert [e.id for e in res.entities] == [e.id for e in seed]
    for a, b in zip(res.entities, seed):
        assert a.segmentation == b.segmentation  # identical compressed RLE
        assert (a.name, a.score) == (b.name, b.score)
    assert res.merges == () and res.margin_edits == 0


def test_edits_inside_cores_come_back_exactly(plan, seed):
    lm = voronoi(H, W, 12, seed=3)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    full = masks(seed)
    # tile 0: region 9_k painted over a disc inside its core (away from every margin)
    t0 = plan.tiles[0]
    d = disc(150, 150, 60)
    k = int(lm[150, 150])
    other = [int(v) for v in np.unique(lm[d]) if v != k]
    grown = full[f"9_{k}"] | d
    replace_in(crops, 0, f"9_{k}", tile_entity(t0, f"9_{k}", grown))
    # tile 4: a region erased over a box inside its core
    t4 = plan.tiles[4]
    j = int(lm[500, 500])
    erased = full[f"9_{j}"].copy()
    erased[470:530, 470:530] = False
    replace_in(crops, 4, f"9_{j}", tile_entity(t4, f"9_{j}", erased))
    res = stitch(plan, crops, seed)
    out = masks(res.entities)
    assert (out[f"9_{k}"] == grown).all()
    assert (out[f"9_{j}"] == erased).all()
    for o in other:  # the neighbours still hold their seed: the overlap rule decides later
        assert (out[f"9_{o}"] == full[f"9_{o}"]).all()
    assert res.margin_edits == 0


def test_an_edit_made_in_a_margin_wins_over_the_unedited_core_tile(plan, bands):
    """Tile 0 paints band 2 across the seam into tile 1's core (through its margin); tile 1 left
    those pixels alone, so tile 0's edit counts. Where tile 1 changed them too, tile 1 decides."""
    seed, full = bands
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    t0, t1 = plan.tiles[0], plan.tiles[1]
    seam, edge = t0.core[2], t0.crop[2]  # 333, 357
    band = np.zeros((H, W), bool)
    band[100:140, 320:edge] = True  # over band 3, up to the edge of tile 0's crop
    grown = full["9_2"] | band
    replace_in(crops, 0, "9_2", tile_entity(t0, "9_2", grown))
    res = stitch(plan, crops, seed)
    out = masks(res.entities)
    assert (out["9_2"] == grown).all()
    assert res.margin_edits == 40 * (edge - seam)
    assert (out["9_3"] == full["9_3"]).all()  # the overlap rule, later, decides between them
    # tile 1 paints band 4 over the same pixels of its core: the core's tile decides there
    replace_in(crops, 1, "9_4", tile_entity(t1, "9_4", full["9_4"] | band))
    out2 = masks(stitch(plan, crops, seed).entities)
    assert (out2["9_2"] == full["9_2"] | (band & (np.arange(W) < seam)[None, :])).all()
    assert (out2["9_4"] == full["9_4"] | (band & (np.arange(W) >= seam)[None, :])).all()


def test_an_erase_in_the_margin_is_kept(plan, seed):
    lm = voronoi(H, W, 12, seed=3)
    full = masks(seed)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    t1 = plan.tiles[1]
    seam = t1.core[0]
    y = 200
    rid = f"9_{int(lm[y, seam - 5])}"
    erased = full[rid].copy()
    erased[y - 10 : y + 10, seam - MARGIN : seam] = False  # tile 1 erases inside tile 0's core
    replace_in(crops, 1, rid, tile_entity(t1, rid, erased))
    out = masks(stitch(plan, crops, seed).entities)
    assert (out[rid] == erased).all()


def test_a_region_drawn_across_a_seam_in_two_tiles_is_merged(plan, seed):
    """The annotator draws a new disc in tile 0 up to its crop edge and the rest in tile 1 from
    its crop edge: one entity, with tile 0's id, the whole disc."""
    t0, t1 = plan.tiles[0], plan.tiles[1]
    seam = t0.core[2]
    d = disc(seam, 200, 70)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    crops[0].append(tile_entity(t0, "newA", d))
    crops[1].append(tile_entity(t1, "newB", d))
    res = stitch(plan, crops, seed)
    out = masks(res.entities)
    assert "newB" not in out
    assert (out["newA"] == d).all()
    assert [(m.tile, m.merged, m.into) for m in res.merges] == [(1, "newB", "newA")]
    assert res.merges[0].pixels > 0
    assert res.tiles_of["newA"] == (0, 1)
    assert res.ids_by_tile() == {(1, "newB"): "newA"}
    assert [e.id for e in res.entities][-1] == "newA"  # new entities after the seeded ones


def test_an_entity_spanning_four_tiles_keeps_its_id_and_is_named_in_one_tile(plan):
    """A seeded entity over the corner where tiles 0, 1, 3, 4 meet stays one entity; a new one
    drawn in four pieces there (each tile draws what it shows) becomes one entity too."""
    cx, cy = plan.tiles[0].core[2], plan.tiles[0].core[3]
    big = disc(cx + 20, cy + 10, 120)
    lm = np.where(big, 2, 1).astype(np.uint16)
    seed = entities_of(lm)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    assert sorted(i for i, p in crops.items() if any(e.id == "9_2" for e in p)) == [0, 1, 3, 4]
    res = stitch(plan, crops, seed)
    out = masks(res.entities)
    assert (out["9_2"] == big).all() and res.tiles_of["9_2"] == (0, 1, 3, 4)
    owners = tiling.owner_tiles(seed, plan)
    assert owners["9_2"] == 4  # the disc's centre is right/below the corner
    counts = np.bincount(plan.core_owner()[big], minlength=6)
    assert counts[4] == counts.max()
    # a new entity drawn in four tiles, each drawing only what it shows
    small = disc(cx - 5, cy + 5, 50)
    for i, t in enumerate(plan.tiles):
        if i in (0, 1, 3, 4):
            crops[i].append(tile_entity(t, f"piece{i}", small))
    res = stitch(plan, crops, seed)
    out = masks(res.entities)
    assert "piece0" in out and not {"piece1", "piece3", "piece4"} & set(out)
    assert (out["piece0"] == small).all()
    assert {m.merged for m in res.merges} == {"piece1", "piece3", "piece4"}


def test_a_new_region_in_a_margin_does_not_join_the_seed_under_it(plan, seed):
    """A small object drawn in tile 0's margin over a seeded region that tile 1 left alone stays
    a new entity (seeds cover everything: what a seeded region kept is not a drawing)."""
    t0 = plan.tiles[0]
    seam = t0.core[2]
    cup = disc(seam + 8, 300, 10)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    crops[0].append(tile_entity(t0, "cup", cup))
    res = stitch(plan, crops, seed)
    out = masks(res.entities)
    assert (out["cup"] == cup).all()
    assert res.merges == ()


def test_a_new_region_joins_a_seeded_region_extended_from_the_other_side(plan, bands):
    seed, full = bands
    t0, t1 = plan.tiles[0], plan.tiles[1]
    d = disc(t0.core[2], 200, 30)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    crops[0].append(tile_entity(t0, "fresh", d))  # tile 0 draws a new region
    replace_in(crops, 1, "9_4", tile_entity(t1, "9_4", full["9_4"] | d))  # tile 1 extends 9_4
    res = stitch(plan, crops, seed)
    out = masks(res.entities)
    assert "fresh" not in out
    assert (out["9_4"] == full["9_4"] | d).all()
    assert [(m.merged, m.into) for m in res.merges] == [("fresh", "9_4")]


def test_two_seeded_regions_are_never_merged(plan, bands):
    seed, full = bands
    t0, t1 = plan.tiles[0], plan.tiles[1]
    d = disc(t0.core[2], 250, 30)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    # both tiles paint the same disc across the seam, each into another seeded region
    replace_in(crops, 0, "9_2", tile_entity(t0, "9_2", full["9_2"] | d))
    replace_in(crops, 1, "9_4", tile_entity(t1, "9_4", full["9_4"] | d))
    res = stitch(plan, crops, seed)
    assert res.merges == ()
    assert [e.id for e in res.entities] == [e.id for e in seed]


def test_deleted_regions(plan, seed):
    full = masks(seed)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    shown = [i for i, p in crops.items() if any(e.id == "9_1" for e in p)]
    for i in shown:  # deleted everywhere: gone
        crops[i] = [e for e in crops[i] if e.id != "9_1"]
    res = stitch(plan, crops, seed)
    assert "9_1" not in {e.id for e in res.entities}
    # deleted in one of several tiles only: its pixels decided by that tile are gone
    many = next(e.id for e in seed if sum(any(x.id == e.id for x in p) for p in crops.values()) > 1)
    crops = {i: list(p) for i, p in enumerate(tiling.crop_entities(seed, plan))}
    i = next(i for i, p in crops.items() if any(e.id == many for e in p))
    crops[i] = [e for e in crops[i] if e.id != many]
    out = masks(stitch(plan, crops, seed).entities)
    x0, y0, x1, y1 = plan.tiles[i].crop
    expect = full[many].copy()
    expect[y0:y1, x0:x1] = False
    assert (out[many] == expect).all()


def test_stitch_without_a_seed_joins_the_same_id_across_tiles(plan):
    lm = voronoi(H, W, 5, seed=1)
    ents = entities_of(lm, prefix="r")
    crops = tiling.crop_entities(ents, plan)
    res = stitch(plan, dict(enumerate(crops)))
    assert sorted(e.id for e in res.entities) == sorted(e.id for e in ents)
    out = masks(res.entities)
    for e in ents:
        assert (out[e.id] == rle_utils.decode(e.segmentation).astype(bool)).all()


def test_stitch_refuses_missing_tiles_and_wrong_sizes(plan, seed):
    crops = dict(enumerate(tiling.crop_entities(seed, plan)))
    del crops[2]
    with pytest.raises(DataError, match=r"tiles \[2\] have no annotation"):
        stitch(plan, crops, seed)
    crops = dict(enumerate(tiling.crop_entities(seed, plan)))
    crops[0] = [Entity(id="x", rle=rle_utils.encode(np.ones((5, 5), np.uint8)))]
    with pytest.raises(DataError, match="tile 0 region x"):
        stitch(plan, crops, seed)


def test_findings_map_back_to_the_tiles_showing_a_region(plan, seed):
    res = stitch(plan, dict(enumerate(tiling.crop_entities(seed, plan))), seed)
    rid = next(e for e, ts in res.tiles_of.items() if len(ts) > 1)
    back = tiling.tiles_for_regions([rid], res)
    assert sorted(back) == list(res.tiles_of[rid])
    assert all(v == [rid] for v in back.values())
