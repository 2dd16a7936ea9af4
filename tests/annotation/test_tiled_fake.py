"""The tiled mode through push and pull, against the in-memory backend (unit tier).

Images above ``annotation.tile_min_pixels`` become one task per tile; the pull stitches the
tiles back (ids kept, seams merged), applies the overlap rule and QA on the whole image, names
each stage-2 entity in one tile and sends a rejection back only to the tiles concerned. The same
flow against a real Label Studio is in test_tiled_ls.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from annotation_support import add_test_images
from PIL import Image

from entityseg_data.annotation import tiled
from entityseg_data.annotation.fake import InMemoryBackend
from entityseg_data.annotation.pull import pull
from entityseg_data.annotation.push import push
from entityseg_data.annotation.tiling import Tile
from entityseg_data.config.annotation import AnnotationConfig
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity, ImageAnnotation, load_annotation

H, W = 120, 200  # 2 x 4 tiles of at most 64 px, margin 8


def config(**kw) -> AnnotationConfig:
    base = dict(
        annotators=("alice",),
        overlap_fraction=0.0,
        max_uncovered_fraction=0.5,
        tile_min_pixels=10_000,
        tile_size=64,
        tile_margin=8,
    )
    return AnnotationConfig(**{**base, **kw})


def decoded(entities) -> dict[str, np.ndarray]:
    return {e.id: rle_utils.decode(e.segmentation).astype(bool) for e in entities}


def tile_tasks(be: InMemoryBackend, stage: int):
    out = {}
    for t in be.tasks_by_id.values():
        if t.spec.stage == stage and "tile" in t.data:
            out[Tile.from_json(t.data["tile"]).index] = t
    return dict(sorted(out.items()))


def crop(mask: np.ndarray, tile: Tile) -> np.ndarray:
    x0, y0, x1, y1 = tile.crop
    return mask[y0:y1, x0:x1]


def submit_tile(be, task, masks: dict[str, np.ndarray], names=None, stage=1):
    """Submit full-size masks as the tile shows them (only regions with pixels in the tile)."""
    tile = Tile.from_json(task.data["tile"])
    ents = []
    for rid, m in masks.items():
        part = crop(m, tile)
        if part.any():
            ents.append(Entity(id=rid, rle=rle_utils.encode(part), name=(names or {}).get(rid)))
    ann = ImageAnnotation(
        image_id=task.spec.image_id,
        height=tile.height,
        width=tile.width,
        stage=stage,
        annotator="alice",
        entities=tuple(ents),
    )
    return be.submit(task.id, "alice", ann)


@pytest.fixture()
def flow(workspace):
    (iid,) = add_test_images(workspace, [(H, W)])
    (small,) = add_test_images(workspace, [(60, 80)], seed=1)  # below the threshold: one task
    be = InMemoryBackend()
    cfg = config()
    rep = push(workspace, be, cfg, stage=1)
    seed = load_seed_masks(workspace, iid)
    return workspace, iid, small, be, cfg, rep, seed


def load_seed_masks(ws, iid) -> dict[str, np.ndarray]:
    with ws.catalog() as cat:
        (rec,) = cat.predictions(image_id=iid)
    import json

    data = json.loads((ws.root / rec.path).read_text())
    return {
        f"{iid}_{e['id']}": rle_utils.decode(e["segmentation"]).astype(bool)
        for e in data["entities"]
    }


def test_push_makes_one_task_per_tile_with_the_regions_it_shows(flow):
    ws, iid, small, be, cfg, rep, seed = flow
    tasks = tile_tasks(be, 1)
    assert rep.images == 2 and rep.tasks == 8 + 1
    assert len(tasks) == 8
    with ws.catalog() as cat:
        row = cat.annotation(iid, 1, "alice")
    assert row.ls_task_id == int(tasks[0].id)  # the catalog keeps the first tile's task
    src = np.asarray(Image.open(ws.root / ws_image(ws, iid)).convert("RGB"))
    for i, t in tasks.items():
        tile = Tile.from_json(t.data["tile"])
        assert tile.index == i and t.data["tiles"] == 8
        assert (t.data["image_height"], t.data["image_width"]) == (H, W)
        assert (t.spec.height, t.spec.width) == (tile.height, tile.width)
        assert t.spec.image.startswith(f"tiles/{iid}/")
        pic = np.asarray(Image.open(ws.root / t.spec.image).convert("RGB"))
        assert (pic == crop(src, tile)).all()  # full resolution, lossless for a PNG source
        shown = [rid for rid, m in seed.items() if crop(m, tile).any()]
        assert [e.id for e in t.spec.seed.entities] == shown
        for e in t.spec.seed.entities:
            assert (rle_utils.decode(e.segmentation).astype(bool) == crop(seed[e.id], tile)).all()
        assert t.spec.context == ()  # stage 1 has no context regions
    whole = [t for t in be.tasks_by_id.values() if t.spec.image_id == small]
    assert len(whole) == 1 and "tile" not in whole[0].data
    assert push(ws, be, cfg, stage=1).tasks == 0  # idempotent


def ws_image(ws, iid) -> Path:
    with ws.catalog() as cat:
        return Path(cat.image(iid).path)


def test_pull_waits_for_every_tile_then_stitches_exactly(flow):
    ws, iid, _small, be, cfg, _rep, seed = flow
    tasks = tile_tasks(be, 1)
    for t in list(tasks.values())[:-1]:
        submit_tile(be, t, seed)
    rep = pull(ws, be, cfg, stages=(1,))[1]
    assert rep.unannotated == 2  # the tiled image (7 of 8 tiles) and the small image
    assert load_annotation(ws.root, 1, "alice", iid) is None
    submit_tile(be, tasks[7], seed)
    rep = pull(ws, be, cfg, stages=(1,))[1]
    assert rep.pulled == 1 and rep.approved == 1
    ann = load_annotation(ws.root, 1, "alice", iid)
    assert {e.id: e.segmentation for e in ann.entities} == {
        rid: rle_utils.encode(m) for rid, m in seed.items()
    }
    assert sorted(ann.meta["tiles"]) == [str(i) for i in range(8)]
    assert pull(ws, be, cfg, stages=(1,))[1].unchanged == 1  # nothing changed: skipped


def test_a_region_drawn_across_tiles_is_one_entity_and_wins_by_intent(flow):
    """A new region drawn over three tiles (each tile draws the part it shows, into its
    margins) comes back as one entity that takes the seeded pixels it covers."""
    ws, iid, _small, be, cfg, _rep, seed = flow
    tasks = tile_tasks(be, 1)
    new = np.zeros((H, W), bool)
    new[20:50, 40:140] = True  # across the seams at x = 50 and 100
    ids = {}
    for i, t in tasks.items():
        tile = Tile.from_json(t.data["tile"])
        masks = dict(seed)
        if crop(new, tile).any():
            rid = f"new{i}"
            masks[rid] = new
            ids[i] = rid
        submit_tile(be, t, masks)
    assert len(ids) == 3
    rep = pull(ws, be, cfg, stages=(1,))[1]
    assert rep.pulled == 1 and rep.rejected == 0, rep.per_task
    ann = load_annotation(ws.root, 1, "alice", iid)
    out = decoded(ann.entities)
    first = ids[min(ids)]
    assert set(out) == set(seed) | {first}
    assert (out[first] == new).all()
    for rid, m in seed.items():  # the neighbours lost what the new region covers
        assert (out[rid] == m & ~new).all()
    assert sorted(m[1] for m in ann.meta["seam_merges"]) == sorted(set(ids.values()) - {first})


def test_stage2_names_each_entity_once_and_sends_back_only_the_owner_tile(flow):
    ws, iid, small, be, cfg, _rep, seed = flow
    approve_stage1(ws, be, cfg, seed, small)
    assert push(ws, be, cfg, stage=2).images == 2
    tasks = tile_tasks(be, 2)
    owners = {}
    for i, t in tasks.items():
        shown = {e.id for e in t.spec.seed.entities}
        for rid in shown - set(t.spec.context):
            assert rid not in owners, "an entity is named in one tile only"
            owners[rid] = i
    assert set(owners) == set(seed)
    for rid, i in owners.items():  # the owner tile holds most of the entity's pixels
        counts = [
            crop_core(seed[rid], Tile.from_json(t.data["tile"])).sum() for t in tasks.values()
        ]
        assert counts[i] == max(counts)
    names = {rid: f"thing {k}" for k, rid in enumerate(sorted(seed))}
    left_out = sorted(seed)[0]
    for i, t in tasks.items():
        given = {rid: n for rid, n in names.items() if owners[rid] == i and rid != left_out}
        submit_tile(be, t, seed, names=given, stage=2)
    rep = pull(ws, be, cfg, stages=(2,))[2]
    assert rep.rejected == 1 and rep.sent_back == 1, rep.per_task
    sent = {i for i, t in tasks.items() if t.feedback}
    assert sent == {owners[left_out]}
    (fb,) = tasks[owners[left_out]].feedback
    assert list(fb.regions) == [left_out] and "Tile" in fb.note
    # the annotator names it in the owner tile; the other tiles keep their submissions
    t = tasks[owners[left_out]]
    given = {rid: n for rid, n in names.items() if owners[rid] == owners[left_out]}
    submit_tile(be, t, seed, names=given, stage=2)
    rep = pull(ws, be, cfg, stages=(2,))[2]
    assert rep.rejected == 0 and rep.approved >= 1, rep.per_task
    ann = load_annotation(ws.root, 2, "alice", iid)
    assert {e.id: e.name for e in ann.entities} == names
    for e in ann.entities:  # geometry locked: exactly stage 1
        assert (rle_utils.decode(e.segmentation).astype(bool) == seed[e.id]).all()
    assert be.tasks_by_id[t.id].data["qa_status"] == "passed"


def approve_stage1(ws, be, cfg, seed, small) -> None:
    """Alice submits every stage-1 tile and the small image unchanged; the pull approves them."""
    for t in tile_tasks(be, 1).values():
        submit_tile(be, t, seed)
    small_task = be.task_of("alice", small, 1)
    be.submit(small_task.id, "alice", small_task.spec.seed)
    assert pull(ws, be, cfg, stages=(1,))[1].approved == 2


def crop_core(mask: np.ndarray, tile: Tile) -> np.ndarray:
    x0, y0, x1, y1 = tile.core
    return mask[y0:y1, x0:x1]


def test_a_stage2_name_typed_in_a_context_tile_counts(flow):
    ws, iid, small, be, cfg, _rep, seed = flow
    approve_stage1(ws, be, cfg, seed, small)
    push(ws, be, cfg, stage=2)
    tasks = tile_tasks(be, 2)
    # every tile names everything it shows, context included; the owner's name wins
    for t in tasks.values():
        shown = {e.id for e in t.spec.seed.entities}
        ctx = set(t.spec.context)
        names = {rid: (f"owner {rid}" if rid not in ctx else f"other {rid}") for rid in shown}
        submit_tile(be, t, {rid: seed[rid] for rid in shown}, names=names, stage=2)
    rep = pull(ws, be, cfg, stages=(2,))[2]
    assert rep.rejected == 0, rep.per_task
    ann = load_annotation(ws.root, 2, "alice", iid)
    assert {e.id: e.name for e in ann.entities} == {rid: f"owner {rid}" for rid in seed}


def test_tiles_are_off_below_the_threshold_and_when_disabled(workspace):
    add_test_images(workspace, [(H, W)])
    be = InMemoryBackend()
    rep = push(workspace, be, config(tile_min_pixels=-1), stage=1)
    assert rep.tasks == 1
    (t,) = be.tasks_by_id.values()
    assert "tile" not in t.data and not (workspace.root / tiled.TILES_DIR).exists()


def test_plan_of_refuses_incomplete_tile_sets(flow):
    _ws, _iid, _small, be, _cfg, _rep, _seed = flow
    tasks = [s for s in be.tasks("1") if "tile" in s.data]
    with pytest.raises(Exception, match=r"tile tasks \[3\] are missing"):
        tiled.plan_of([t for t in tasks if t.data["tile"]["index"] != 3])
    dup = replace(tasks[1], id="999")
    with pytest.raises(Exception, match="tile 1 is in tasks"):
        tiled.plan_of([*tasks, dup])
