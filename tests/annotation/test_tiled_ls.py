"""The tiled mode against a real Label Studio: tile tasks (full-resolution pictures served by
Local Files storage, cropped pre-annotations), a region drawn across a seam in two tiles merged
by the pull, stage 2 naming each entity in one tile (the others show it as ``context``), and a
rejection sent back to the one tile that must change. The same flow on the in-memory backend is
in test_tiled_fake.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
from annotation_support import add_test_images
from PIL import Image

from entityseg_data.annotation.labelstudio import configs
from entityseg_data.annotation.labelstudio.format import brush_result, name_results
from entityseg_data.annotation.labelstudio.session import (
    annotator_client,
    create_annotators,
    open_backend,
    tasks_for,
)
from entityseg_data.annotation.pull import pull
from entityseg_data.annotation.push import push
from entityseg_data.annotation.tiling import Tile
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.brush import decode_brush
from entityseg_data.masks.store import load_annotation

pytestmark = pytest.mark.labelstudio

H, W = 300, 500  # 2 x 3 tiles of at most 200 px, margin 16
NAME = "tiler"


def region_masks(results, h, w) -> dict[str, np.ndarray]:
    return {
        r["id"]: decode_brush(r["value"]["rle"], h, w).astype(bool)
        for r in results
        if r["type"] == "brushlabels"
    }


def tile_tasks(client, project: int) -> dict[int, dict]:
    out = {}
    for t in client.iter_tasks(project, fields="all"):
        out[int(t["data"]["tile"]["index"])] = client.task(int(t["id"]))
    return dict(sorted(out.items()))


def test_tiled_stage1_and_stage2_through_label_studio(labelstudio):
    ws = labelstudio.workspace(
        "tiled",
        (
            f"annotation.annotators=[{NAME}]",
            "annotation.max_uncovered_fraction=0.5",
            "annotation.tile_min_pixels=100000",
            "annotation.tile_size=200",
            "annotation.tile_margin=16",
        ),
    )
    (iid,) = add_test_images(ws, [(H, W)])
    admin = labelstudio.admin
    create_annotators(ws, [NAME], admin=admin)
    backend, cfg = open_backend(ws, admin), ws.config().annotation
    rep = push(ws, backend, cfg, stage=1)
    assert rep.images == 1 and rep.tasks == 6
    me = annotator_client(ws, NAME)
    tasks = tile_tasks(me, int(rep.projects[NAME]))
    assert len(tasks) == 6

    # every tile: its picture at full resolution through Local Files, its own regions only
    with ws.catalog() as cat:
        src = np.asarray(Image.open(ws.root / cat.image(iid).path).convert("RGB"))
    seed_full = {}
    for t in tasks.values():
        tile = Tile.from_json(t["data"]["tile"])
        x0, y0, x1, y1 = tile.crop
        assert (t["data"]["height"], t["data"]["width"]) == (tile.height, tile.width)
        assert (t["data"]["image_height"], t["data"]["image_width"]) == (H, W)
        served = me.request("GET", t["data"]["image"], expect_json=False).content
        pic = np.asarray(Image.open(io.BytesIO(served)).convert("RGB"))
        assert pic.shape[:2] == (tile.height, tile.width)  # full resolution, never downscaled
        assert (pic[..., :3] == src[y0:y1, x0:x1]).all()
        (pred,) = t["predictions"]
        for rid, m in region_masks(pred["result"], tile.height, tile.width).items():
            full = seed_full.setdefault(rid, np.zeros((H, W), bool))
            full[y0:y1, x0:x1] |= m

    # stage 1: tiles 0 and 1 draw one new region across their seam (each the part it shows)
    new = np.zeros((H, W), bool)
    new[60:120, 150:260] = True  # across the seam at x = 167
    for i, t in tasks.items():
        tile = Tile.from_json(t["data"]["tile"])
        x0, y0, x1, y1 = tile.crop
        results = list(t["predictions"][0]["result"])
        part = new[y0:y1, x0:x1]
        if part.any():
            results.append(
                brush_result(
                    part.astype(np.uint8),
                    region_id=f"drawn{i}",
                    height=tile.height,
                    width=tile.width,
                )
            )
        me.create_annotation(t["id"], results)
    r1 = pull(ws, backend, cfg, stages=(1,))[1]
    assert r1.pulled == 1 and r1.rejected == 0 and r1.approved == 1, r1.to_json()
    ann = load_annotation(ws.root, 1, NAME, iid)
    got = {e.id: rle_utils.decode(e.segmentation).astype(bool) for e in ann.entities}
    assert set(got) == set(seed_full) | {"drawn0"}
    assert np.array_equal(got["drawn0"], new)  # one entity, the whole drawing
    for rid, m in seed_full.items():
        assert np.array_equal(got[rid], m & ~new)  # the new region takes what it covers
    assert [m[:3] for m in ann.meta["seam_merges"]] == [[1, "drawn1", "drawn0"]]

    # stage 2: each entity is named in one tile; the others show it as 'context'
    rep2 = push(ws, backend, cfg, stage=2)
    assert rep2.tasks == 6
    tasks2 = tile_tasks(me, int(rep2.projects[NAME]))
    owner: dict[str, int] = {}
    for i, t in tasks2.items():
        for r in t["predictions"][0]["result"]:
            if r["value"]["brushlabels"][0] != configs.CONTEXT_LABEL:
                assert r["value"]["brushlabels"][0] in configs.MASK_LABELS
                assert r["id"] not in owner
                owner[r["id"]] = i
    assert set(owner) == set(got)
    left_out = "drawn0"
    for i, t in tasks2.items():
        results = list(t["predictions"][0]["result"])
        for r in t["predictions"][0]["result"]:
            if owner[r["id"]] == i and r["id"] != left_out:
                results += name_results(r["id"], f"thing {r['id']}", None)
        me.create_annotation(t["id"], results)
    r2 = pull(ws, backend, cfg, stages=(2,))[2]
    assert r2.rejected == 1 and r2.sent_back == 1, r2.to_json()
    rework = {i for i, t in tasks2.items() if me.task(t["id"])["data"][configs.QA_STATUS]}
    assert rework == {owner[left_out]}  # only the tile that must name it
    fix = tasks2[owner[left_out]]
    assert me.task_annotations(fix["id"]) == []  # back in the annotator's queue
    (draft,) = me.get(f"/api/tasks/{fix['id']}/drafts")
    marked = [x for x in draft["result"] if x["id"] == left_out and x["type"] == "brushlabels"]
    assert marked[0]["value"]["brushlabels"] == [configs.FIX_LABEL]
    for i, t in tasks2.items():
        if i != owner[left_out]:
            assert len(me.task_annotations(t["id"])) == 1  # the other tiles stay done
    fixed = [*draft["result"], *name_results(left_out, "the drawn thing", None)]
    me.post(f"/api/tasks/{fix['id']}/annotations/", {"result": fixed, "draft_id": draft["id"]})
    r3 = pull(ws, backend, cfg, stages=(2,))[2]
    assert r3.pulled == 1 and r3.rejected == 0 and r3.approved == 1, r3.to_json()
    ann2 = load_annotation(ws.root, 2, NAME, iid)
    names = {e.id: e.name for e in ann2.entities}
    assert names[left_out] == "the drawn thing"
    assert all(names[rid] == f"thing {rid}" for rid in names if rid != left_out)
    assert {e.id: e.segmentation for e in ann2.entities} == {
        e.id: e.segmentation for e in ann.entities
    }  # geometry locked across tiles
    assert [r.status for r in tasks_for(ws, 2, NAME)] == ["approved"]
