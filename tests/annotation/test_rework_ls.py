"""Against a real Label Studio: the intent overlap rule on edits made of real brush and polygon
results, the rework loop (a rejection reaches the annotator inside Label Studio and the fixed
version is pulled), the stage-2 geometry lock, the project table without image thumbnails, and
annotator passwords (show / reset). The same workflow runs on the in-memory backend in
test_workflow_fake.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from annotation_support import add_test_images
from click.testing import CliRunner

from entityseg_data.annotation.labelstudio import configs
from entityseg_data.annotation.labelstudio.accounts import session_login
from entityseg_data.annotation.labelstudio.backend import IMAGE_COLUMN, REWORK_TAB, TASKS_TAB
from entityseg_data.annotation.labelstudio.format import brush_result, name_results, polygon_mask
from entityseg_data.annotation.labelstudio.session import (
    annotator_client,
    create_annotators,
    open_backend,
    read_credentials,
    tasks_for,
    write_credentials,
)
from entityseg_data.annotation.pull import pull
from entityseg_data.annotation.push import push
from entityseg_data.cli.main import cli
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.brush import decode_brush
from entityseg_data.masks.store import load_annotation

pytestmark = pytest.mark.labelstudio

H, W = 40, 60


def seed_masks(task) -> dict[str, np.ndarray]:
    return {
        r["id"]: decode_brush(r["value"]["rle"], H, W).astype(bool)
        for r in task["predictions"][0]["result"]
    }


def status_rows(ws) -> list[dict]:
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "annotate", "status", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("[") :])


def test_intent_rework_and_geometry_lock(labelstudio):
    ws = labelstudio.workspace(
        "rework", ("annotation.annotators=[rita]", "annotation.max_uncovered_fraction=0.5")
    )
    a_id, b_id = add_test_images(ws, [(H, W), (H, W)])
    admin = labelstudio.admin
    create_annotators(ws, ["rita"], admin=admin)
    backend, cfg = open_backend(ws, admin), ws.config().annotation
    assert cfg.overlap_policy == "intent" and cfg.rework
    rep = push(ws, backend, cfg, stage=1)
    assert rep.tasks == 2
    project = int(rep.projects["rita"])

    # the project table: the first tab hides the image column (no full-size thumbnails)
    views = admin.get("/api/dm/views/", project=project)
    tabs = {v["data"]["title"]: v for v in views}
    first = min(views, key=lambda v: (v.get("order") or 0, v["id"]))
    assert first["data"]["title"] == TASKS_TAB
    assert IMAGE_COLUMN in first["data"]["hiddenColumns"]["explore"]
    assert tabs[REWORK_TAB]["data"]["filters"]["items"][0]["value"] == "rework"
    push(ws, backend, cfg, stage=1)  # idempotent: no second set of tabs
    assert len(admin.get("/api/dm/views/", project=project)) == len(views)

    # ---------------------------------------------------------------- stage 1 edits
    rita = annotator_client(ws, "rita")
    rows = {r.image_id: r for r in tasks_for(ws, 1, "rita")}
    task_a = rita.task(rows[a_id].ls_task_id)
    assert task_a["data"][configs.QA_STATUS] == "" and task_a["data"]["seed"] == "source:test"
    labels = {r["value"]["brushlabels"][0] for r in task_a["predictions"][0]["result"]}
    assert labels <= set(configs.BRUSH_LABELS) and len(labels) == 3  # touching: 3 colours
    seeds = seed_masks(task_a)
    r1, r2, r3 = (f"{a_id}_{k}" for k in (1, 2, 3))
    stroke = np.zeros((H, W), bool)
    stroke[20:28, 5:15] = True  # brush: region 1 extended into region 2
    pts = [[50.0, 5.0], [95.0, 5.0], [95.0, 45.0], [50.0, 45.0]]  # a new polygon over region 3
    poly = polygon_mask(pts, H, W).astype(bool)
    results = [
        brush_result((seeds[r1] | stroke).astype(np.uint8), region_id=r1, height=H, width=W),
        brush_result(seeds[r2].astype(np.uint8), region_id=r2, height=H, width=W),
        brush_result(seeds[r3].astype(np.uint8), region_id=r3, height=H, width=W),
        {
            "id": "poly1",
            "type": "polygonlabels",
            "from_name": configs.POLYGON,
            "to_name": configs.IMAGE,
            "original_width": W,
            "original_height": H,
            "image_rotation": 0,
            "value": {"points": pts, "closed": True, "polygonlabels": ["polygon 1"]},
        },
    ]
    rita.create_annotation(task_a["id"], results)
    task_b = rita.task(rows[b_id].ls_task_id)
    rita.create_annotation(task_b["id"], task_b["predictions"][0]["result"])  # as is
    r = pull(ws, backend, cfg, stages=(1,))[1]
    assert r.pulled == 2 and r.rejected == 0 and r.approved == 2, r.to_json()
    got = {
        e.id: rle_utils.decode(e.segmentation).astype(bool)
        for e in load_annotation(ws.root, 1, "rita", a_id).entities
    }
    assert np.array_equal(got[r1], seeds[r1] | stroke)
    assert np.array_equal(got[r2], seeds[r2] & ~stroke)
    assert np.array_equal(got["poly1"], poly)  # the new polygon takes what it covers
    assert np.array_equal(got[r3], seeds[r3] & ~poly)
    assert r.moved == {
        "painted_over_seed": int((stroke & seeds[r2]).sum()),
        "new_region": int((poly & seeds[r3]).sum()),
    }
    meta = load_annotation(ws.root, 1, "rita", a_id).meta
    assert meta["kinds"]["poly1"] == ["polygon"] and meta["kinds"][r1] == ["brush"]

    # ---------------------------------------------------------------- stage 2 + rework
    push(ws, backend, cfg, stage=2)
    rows2 = {r.image_id: r for r in tasks_for(ws, 2, "rita")}
    t2a = rita.task(rows2[a_id].ls_task_id)
    regions = t2a["predictions"][0]["result"]
    assert {x["value"]["brushlabels"][0] for x in regions} <= set(configs.MASK_LABELS)
    named = [*regions]
    for k, x in enumerate(regions[:-1]):  # the last region is left unnamed
        named += name_results(x["id"], f"thing {k}", None)
    rita.create_annotation(t2a["id"], named)
    t2b = rita.task(rows2[b_id].ls_task_id)
    erased = []
    for k, x in enumerate(t2b["predictions"][0]["result"]):
        m = decode_brush(x["value"]["rle"], H, W)
        if k == 0:
            m[:2, :2] = 0  # the eraser in stage 2
        erased.append(brush_result(m, region_id=x["id"], height=H, width=W))
        erased += name_results(x["id"], None, "unknown")
    rita.create_annotation(t2b["id"], erased)
    r2 = pull(ws, backend, cfg, stages=(2,))[2]
    assert r2.rejected == 2 and r2.sent_back == 2 and r2.in_rework == 2, r2.to_json()
    assert r2.findings["rita"]["unnamed"] == 1 and r2.findings["rita"]["geometry_changed"] == 1
    assert {"stage": 2, "annotator": "rita"}.items() <= next(
        row for row in status_rows(ws) if row["stage"] == 2
    ).items()
    assert next(row for row in status_rows(ws) if row["stage"] == 2)["rework"] == 2

    # what the annotator finds in Label Studio: the note, the task back in the queue, her draft
    # with the offending region marked
    back = rita.task(t2a["id"])
    assert back["data"][configs.QA_STATUS] == "rework"
    assert "unnamed" in back["data"][configs.QA_NOTE]
    assert rita.task_annotations(t2a["id"]) == []  # no submitted annotation: unlabeled again
    assert not back.get("is_labeled")
    (draft,) = rita.get(f"/api/tasks/{t2a['id']}/drafts")
    missing = regions[-1]["id"]
    marked = [x for x in draft["result"] if x["id"] == missing and x["type"] == "brushlabels"]
    assert marked[0]["value"]["brushlabels"] == [configs.FIX_LABEL]
    assert "name" in marked[0]["meta"]["text"][0]
    others = [x for x in draft["result"] if x["type"] == "brushlabels" and x["id"] != missing]
    assert all(x["value"]["brushlabels"][0] in configs.MASK_LABELS for x in others)
    again = pull(ws, backend, cfg, stages=(2,))[2]
    assert again.pulled == 0 and again.in_rework == 2

    # the annotator fixes it from her draft and submits: the next pull reads it and approves
    fixed = [*draft["result"], *name_results(missing, "last thing", None)]
    rita.post(f"/api/tasks/{t2a['id']}/annotations/", {"result": fixed, "draft_id": draft["id"]})
    r3 = pull(ws, backend, cfg, stages=(2,))[2]
    assert r3.pulled == 1 and r3.rejected == 0 and r3.in_rework == 1, r3.to_json()
    ann2 = load_annotation(ws.root, 2, "rita", a_id)
    assert [e.name for e in ann2.entities][-1] == "last thing"
    stage1 = {e.id: e.segmentation for e in load_annotation(ws.root, 1, "rita", a_id).entities}
    assert {e.id: e.segmentation for e in ann2.entities} == stage1  # stage-1 masks, exactly
    done = admin.task(t2a["id"])
    assert done["data"][configs.QA_STATUS] == "passed" and done["data"][configs.QA_NOTE] == ""
    with ws.catalog() as cat:
        assert cat.annotation(a_id, 2, "rita").status == "approved"
        assert cat.annotation(b_id, 2, "rita").status == "rework"


def test_users_show_and_reset_password(labelstudio):
    """Annotator passwords were only in the credentials JSON (issue 13): shown on request, reset
    in Label Studio (through its admin form) and in the file."""
    from labelstudio_support import ADMIN_PASSWORD

    ws = labelstudio.workspace("pw")
    creds = read_credentials(ws)
    creds["admin"]["password"] = ADMIN_PASSWORD  # as 'annotate server' stores it
    write_credentials(ws, creds)
    runner = CliRunner()
    base = ["-w", str(ws.root), "annotate", "users"]
    res = runner.invoke(cli, [*base, "tess"])
    assert res.exit_code == 0, res.output
    old = read_credentials(ws)["annotators"]["tess"]["password"]
    assert old not in res.output and "--show-password" in res.output  # secrets only on request
    res = runner.invoke(cli, [*base, "tess", "--show-password"])
    assert res.exit_code == 0 and f"tess: tess@entityseg.local password: {old}" in res.output
    session_login(labelstudio.url, "tess@entityseg.local", old)  # the shown password works
    res = runner.invoke(cli, [*base, "tess", "--reset-password"])
    assert res.exit_code == 0, res.output
    new = read_credentials(ws)["annotators"]["tess"]["password"]
    assert new != old and f"password: {new} (new)" in res.output
    session_login(labelstudio.url, "tess@entityseg.local", new)
    from entityseg_data.errors import LabelStudioError

    with pytest.raises(LabelStudioError, match="login"):
        session_login(labelstudio.url, "tess@entityseg.local", old)
    assert annotator_client(ws, "tess").whoami()["email"] == "tess@entityseg.local"  # token kept
    res = runner.invoke(cli, [*base, "nobody-yet", "--show-password"])  # made, then shown
    assert res.exit_code == 0 and "nobody-yet@entityseg.local password: " in res.output
