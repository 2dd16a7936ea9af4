"""The two-stage workflow against a real Label Studio (started once per session on 127.0.0.1)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from annotation_support import add_test_images

from entityseg_data.annotation.labelstudio import configs
from entityseg_data.annotation.labelstudio.format import (
    brush_result,
    ls_export_to_annotations,
    name_results,
)
from entityseg_data.annotation.labelstudio.session import (
    annotator_client,
    create_annotators,
    open_backend,
    submit_annotation,
    tasks_for,
)
from entityseg_data.annotation.pull import pull
from entityseg_data.annotation.push import push
from entityseg_data.catalog.predictions import prediction_relpath
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.brush import decode_brush
from entityseg_data.masks.store import ImageAnnotation, load_annotation

pytestmark = pytest.mark.labelstudio


def voronoi_label_map(h: int, w: int, n: int, seed: int) -> np.ndarray:
    """A random partition of the image into n irregular regions (labels 1..n)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1, (n, 2)) * [h, w]
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    return (np.argmin(d, axis=-1) + 1).astype(np.uint16)


def pixel_centre_polygon(points_pct, h, w) -> np.ndarray:
    """Independent rasteriser: shapely point-in-polygon on every pixel centre."""
    import shapely

    poly = shapely.Polygon([(x / 100 * w, y / 100 * h) for x, y in points_pct])
    yy, xx = np.mgrid[0:h, 0:w]
    inside = shapely.contains_xy(poly, xx.ravel() + 0.5, yy.ravel() + 0.5)
    return inside.reshape(h, w).astype(np.uint8)


def test_two_stage_round_trip(labelstudio):
    ws = labelstudio.workspace(
        "flow",
        (
            "annotation.annotators=[alice, bob]",
            "annotation.overlap_fraction=1.0",
            "annotation.overlap_images=2",
            "annotation.max_uncovered_fraction=0.5",
            "annotation.overlap_policy=reject",
            "annotation.rework=false",
        ),
    )
    sizes = [(48, 64), (64, 40), (50, 50), (33, 71)]
    ids = add_test_images(ws, sizes)
    admin = labelstudio.admin
    tokens = create_annotators(ws, ["alice", "bob"], admin=admin)
    assert set(tokens) == {"alice", "bob"} and tokens["alice"] != tokens["bob"]
    backend, cfg = open_backend(ws, admin), ws.config().annotation

    # ---------------------------------------------------------------- stage 1 push
    rep = push(ws, backend, cfg, stage=1)
    assert rep.images == 4 and rep.overlap_images == 2 and rep.tasks == 6, rep
    assert set(rep.projects) == {"alice", "bob"}
    assert push(ws, backend, cfg, stage=1).tasks == 0  # nothing new: idempotent
    with ws.catalog() as cat:
        rows = cat.annotations(stage=1)
        assignment = {int(k): v for k, v in cat.get_kv("annotation.stage1.assignment").items()}
    assert len(rows) == 6 and all(r.status == "pushed" for r in rows)
    assert sorted(len(v) for v in assignment.values()) == [1, 1, 2, 2]

    # predictions arrived exactly, and the image is served at full resolution
    alice = annotator_client(ws, "alice")
    bob = annotator_client(ws, "bob")
    assert alice.whoami()["email"] == "alice@entityseg.local"
    assert bob.whoami()["email"] == "bob@entityseg.local"
    row = tasks_for(ws, 1, "alice")[0]
    task = alice.task(row.ls_task_id)
    h, w = task["data"]["height"], task["data"]["width"]
    pred = task["predictions"][0]
    assert pred["model_version"] == "source:test"
    with ws.catalog() as cat:
        img = cat.image(row.image_id)
    assert (h, w) == (img.height, img.width)
    expected_pred = np.zeros((h, w), np.uint8)
    expected_pred[: h // 2, : w // 2] = 1
    first = next(r for r in pred["result"] if r["id"] == f"{row.image_id}_1")
    assert first["original_width"] == w and first["original_height"] == h
    assert np.array_equal(decode_brush(first["value"]["rle"], h, w), expected_pred)
    served = alice.request("GET", task["data"]["image"], expect_json=False)
    assert served.content == (ws.root / img.file_path).read_bytes()

    # ---------------------------------------------------------------- stage 1 annotations
    truth: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    poly_pts = [[10.3, 12.1], [60.7, 8.9], [55.2, 70.4], [14.9, 61.3]]
    for who, client in (("alice", alice), ("bob", bob)):
        for k, r in enumerate(tasks_for(ws, 1, who)):
            iid = r.image_id
            h, w = sizes[ids.index(iid)]
            lm = voronoi_label_map(h, w, 5, seed=iid * 10 + (who == "bob"))
            masks = {f"{who}{iid}r{i}": (lm == i).astype(np.uint8) for i in range(1, 6)}
            results = [
                brush_result(m, region_id=rid, height=h, width=w) for rid, m in masks.items()
            ]
            if who == "alice" and k == 0:  # an overlapping region: QA must reject it
                over = np.zeros((h, w), np.uint8)
                over[: h // 2, : w // 2] = 1
                masks["alice_overlap"] = over
                results.append(brush_result(over, region_id="alice_overlap", height=h, width=w))
            if who == "bob" and k == 0:  # a polygon replaces region 1
                pm = pixel_centre_polygon(poly_pts, h, w)
                for rid in masks:
                    masks[rid] = masks[rid] & (1 - pm)
                results = [
                    brush_result(m, region_id=rid, height=h, width=w) for rid, m in masks.items()
                ]
                results.append(
                    {
                        "id": "bobpoly",
                        "type": "polygonlabels",
                        "from_name": configs.POLYGON,
                        "to_name": configs.IMAGE,
                        "original_width": w,
                        "original_height": h,
                        "image_rotation": 0,
                        "value": {"points": poly_pts, "closed": True, "polygonlabels": ["entity"]},
                    }
                )
                masks["bobpoly"] = pm
            submit_annotation(
                ws,
                stage=1,
                annotator=who,
                image_id=iid,
                results=results,
                client=client,
                lead_time=12.5,
            )
            truth[(who, iid)] = masks

    # ---------------------------------------------------------------- stage 1 pull
    reports = pull(ws, backend, cfg, stages=(1,))
    r1 = reports[1]
    assert r1.pulled == 6 and r1.rejected == 1 and not r1.errors, r1.to_json()
    assert r1.findings["alice"]["overlap"] == 1
    for (who, iid), masks in truth.items():
        ann = load_annotation(ws.root, 1, who, iid)
        got = {e.id: rle_utils.decode(e.segmentation) for e in ann.entities}
        assert set(got) == {k for k, m in masks.items() if m.any()}
        for rid, m in got.items():
            assert np.array_equal(m, masks[rid]), (who, iid, rid)  # bit-exact
    with ws.catalog() as cat:
        rows = {(r.annotator, r.image_id): r for r in cat.annotations(stage=1)}
    approved = {iid for (a, iid), r in rows.items() if r.status == "approved"}
    assert approved == set(ids)  # the rejected one is covered by the overlap partner
    for iid in ids:
        group = assignment[iid]
        chosen = [a for a in group if rows[(a, iid)].status == "approved"]
        passing = [a for a in group if rows[(a, iid)].qa["passed"]]
        assert chosen == passing[:1]
    rejected = [k for k, r in rows.items() if r.status == "rejected"]
    assert len(rejected) == 1 and rejected[0][0] == "alice"
    again = pull(ws, backend, cfg, stages=(1,))[1]
    assert again.pulled == 0 and again.unchanged == 6

    # ---------------------------------------------------------------- stage 2
    rep2 = push(ws, backend, cfg, stage=2)
    assert rep2.images == 4 and rep2.tasks == 6, rep2
    names = ["Dogs", "unknown", "person_other", "sky", None]
    for who, client in (("alice", alice), ("bob", bob)):
        for r in tasks_for(ws, 2, who):
            task = client.task(r.ls_task_id)
            seeds = [p for p in task["predictions"][0]["result"]]
            results = []
            for j, s in enumerate(seeds):
                name = names[j % len(names)]
                if who == "bob":
                    results.append(s)  # bob keeps the regions in his annotation
                    if name is None:
                        name = "tree"
                if name in configs.flag_choices(ws.config().annotation.supercategories):
                    results += name_results(s["id"], None, name)
                elif name:
                    results += name_results(s["id"], name, None)
            submit_annotation(
                ws, stage=2, annotator=who, image_id=r.image_id, results=results, client=client
            )
    r2 = pull(ws, backend, cfg, stages=(2,))[2]
    assert r2.pulled == 6 and not r2.errors
    assert r2.findings["alice"]["unnamed"] >= 1 and "unnamed" not in r2.findings["bob"]
    for who in ("alice", "bob"):
        for r in tasks_for(ws, 2, who):
            ann2 = load_annotation(ws.root, 2, who, r.image_id)
            with ws.catalog() as cat:
                a1 = next(
                    x.annotator
                    for x in cat.annotations(stage=1)
                    if x.image_id == r.image_id and x.status == "approved"
                )
            ann1 = load_annotation(ws.root, 1, a1, r.image_id)
            seg1 = {e.id: e.segmentation for e in ann1.entities}
            for e in ann2.entities:
                assert e.segmentation == seg1[e.id]  # names attach to the stage-1 masks
            got_names = [e.name for e in ann2.entities]
            assert "Dogs" in got_names and "unknown" in got_names

    # ---------------------------------------------------------------- exports read the same
    proj = {r.annotator: r.ls_project_id for r in tasks_for(ws, 1, "alice")}
    export = admin.export_json(proj["alice"])
    users = {u["id"]: u["email"] for u in admin.users()}
    by_ann = ls_export_to_annotations(export, stage=1, users=users)
    assert set(by_ann) == {"alice"}
    for a in by_ann["alice"]:
        masks = truth[("alice", a.image_id)]
        for e in a.entities:
            assert np.array_equal(rle_utils.decode(e.segmentation), masks[e.id])


def test_interrupted_pull_keeps_what_was_pulled(labelstudio):
    ws = labelstudio.workspace("resume", ("annotation.annotators=[erin]",))
    ids = add_test_images(ws, [(20, 30), (24, 32), (16, 16)])
    admin = labelstudio.admin
    create_annotators(ws, ["erin"], admin=admin)
    backend, cfg = open_backend(ws, admin), ws.config().annotation
    push(ws, backend, cfg, stage=1)
    erin = annotator_client(ws, "erin")
    for k, r in enumerate(tasks_for(ws, 1, "erin")):
        if k == 2:  # the ImageAnnotation path of submit_annotation (what a simulator uses)
            rel = prediction_relpath("source:test", r.image_id)
            pred = json.loads((ws.root / rel).read_text())
            ann = ImageAnnotation.from_json({**pred, "stage": 1, "annotator": "erin"})
            ann = replace(
                ann, entities=tuple(replace(e, id=f"{r.image_id}_{e.id}") for e in ann.entities)
            )
            submit_annotation(ws, stage=1, annotator="erin", image_id=r.image_id, annotation=ann)
            continue
        task = erin.task(r.ls_task_id)
        erin.create_annotation(task["id"], task["predictions"][0]["result"])

    def stop_after_first(stage, annotator, n):
        if n == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(ws, backend, cfg, stages=(1,), progress=stop_after_first)
    with ws.catalog() as cat:
        done = [r for r in cat.annotations(stage=1) if r.status == "pulled"]
    assert len(done) == 1 and load_annotation(ws.root, 1, "erin", done[0].image_id)
    rep = pull(ws, backend, cfg, stages=(1,))[1]
    assert rep.unchanged == 1 and rep.pulled == 2 and rep.approved == 3
    for iid in ids:  # accepted predictions come back exactly
        ann = load_annotation(ws.root, 1, "erin", iid)
        pred = json.loads((ws.root / prediction_relpath("source:test", iid)).read_text())
        assert {e.id: e.segmentation["counts"] for e in ann.entities} == {
            f"{iid}_{p['id']}": p["segmentation"]["counts"] for p in pred["entities"]
        }
