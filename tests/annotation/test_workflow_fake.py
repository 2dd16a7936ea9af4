"""The two-stage workflow against the in-memory backend (unit tier: no server).

Assignment, the intent overlap rule on a pulled edit, approval, the rework loop and the stage-2
merge with its geometry lock, through the same push/pull a real Label Studio runs (the real-server
tests of the same behaviour are in test_workflow_ls.py and test_rework_ls.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from annotation_support import add_test_images

from entityseg_data.annotation.fake import InMemoryBackend
from entityseg_data.annotation.pull import pull
from entityseg_data.annotation.push import push
from entityseg_data.config.annotation import AnnotationConfig
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity, load_annotation

SIZES = [(48, 64), (64, 40), (50, 50), (33, 71)]


def config(**kw) -> AnnotationConfig:
    base = dict(
        annotators=("alice", "bob"),
        overlap_fraction=1.0,
        overlap_images=2,
        max_uncovered_fraction=0.5,
    )
    return AnnotationConfig(**{**base, **kw})


def decoded(ann) -> dict[str, np.ndarray]:
    return {e.id: rle_utils.decode(e.segmentation).astype(bool) for e in ann.entities}


def catalog_rows(ws, stage):
    with ws.catalog() as cat:
        return {(r.image_id, r.annotator): r for r in cat.annotations(stage=stage)}


def assignment(ws, stage=1):
    with ws.catalog() as cat:
        return {int(k): v for k, v in cat.get_kv(f"annotation.stage{stage}.assignment").items()}


@pytest.fixture()
def flow(workspace):
    ids = add_test_images(workspace, SIZES)
    backend = InMemoryBackend()
    cfg = config()
    rep = push(workspace, backend, cfg, stage=1)
    return workspace, ids, backend, cfg, rep


def test_push_assigns_balanced_and_seeds_tasks(flow):
    ws, _ids, be, cfg, rep = flow
    assert rep.images == 4 and rep.overlap_images == 2 and rep.tasks == 6, rep
    assert set(rep.projects) == {"alice", "bob"}
    assert push(ws, be, cfg, stage=1).tasks == 0  # nothing new: idempotent
    a = assignment(ws)
    assert Counter(v[0] for v in a.values()) == {"alice": 2, "bob": 2}
    assert sorted(len(v) for v in a.values()) == [1, 1, 2, 2]
    rows = catalog_rows(ws, 1)
    assert len(rows) == 6 and all(r.status == "pushed" for r in rows.values())
    for t in be.tasks_by_id.values():
        assert t.data["seed"] == "source:test" and t.data["qa_status"] == ""
        iid = t.spec.image_id
        assert [e.id for e in t.spec.seed.entities] == [f"{iid}_{k}" for k in (1, 2, 3)]
        assert rows[(iid, t.spec.annotator)].ls_task_id == int(t.id)


def test_pull_applies_the_intent_rule_to_a_brush_extension(flow):
    ws, ids, be, cfg, _ = flow
    iid = ids[0]
    who = assignment(ws)[iid][0]
    t = be.task_of(who, iid, 1)
    seed = t.spec.seed
    h, w = seed.height, seed.width
    masks = decoded(seed)
    stroke = np.zeros((h, w), bool)
    stroke[h // 4 : h // 2 + 8, 5:15] = True  # region 1 extended down into region 2
    edited = masks[f"{iid}_1"] | stroke
    ents = tuple(
        replace(e, rle=rle_utils.encode(edited.astype(np.uint8))) if e.id == f"{iid}_1" else e
        for e in seed.entities
    )
    be.submit(t.id, who, replace(seed, entities=ents))
    rep = pull(ws, be, cfg, stages=(1,))[1]
    assert rep.pulled == 1 and rep.rejected == 0, rep.to_json()
    got = decoded(load_annotation(ws.root, 1, who, iid))
    assert np.array_equal(got[f"{iid}_1"], edited)  # what was painted stays
    assert np.array_equal(got[f"{iid}_2"], masks[f"{iid}_2"] & ~stroke)
    moved = int((stroke & masks[f"{iid}_2"]).sum())
    assert rep.moved == {"painted_over_seed": moved}
    qa = catalog_rows(ws, 1)[(iid, who)].qa
    (overlap,) = [f for f in qa["findings"] if f["check"] == "overlap"]
    assert overlap["moves"] == [
        {"from": f"{iid}_2", "to": f"{iid}_1", "pixels": moved, "rule": "painted_over_seed"}
    ]
    # the same annotation under the old default is rejected
    rej = pull(ws, be, replace(cfg, overlap_policy="reject", rework=False), stages=(1,))[1]
    assert rej.unchanged == 1  # unchanged submissions are not re-read
    assert rep.per_task[0]["status"] == "approved"  # the report says what the catalog says


def test_rework_loop_and_approval(flow):
    ws, ids, be, cfg, _ = flow
    a = assignment(ws)
    overlap = [i for i in ids if len(a[i]) > 1]
    single = [i for i in ids if len(a[i]) == 1]
    bad_overlap, bad_single = overlap[0], single[0]
    for t in list(be.tasks_by_id.values()):
        iid, who = t.spec.image_id, t.spec.annotator
        seed = t.spec.seed
        if (iid == bad_overlap and who == a[iid][0]) or iid == bad_single:
            be.submit(t.id, who, replace(seed, entities=()))  # submitted empty: no_entities
        else:
            be.submit(t.id, who, seed)
    rep = pull(ws, be, cfg, stages=(1,))[1]
    assert rep.pulled == 6 and rep.rejected == 2 and rep.sent_back == 2 and rep.in_rework == 2
    rows = catalog_rows(ws, 1)
    assert rows[(bad_single, a[bad_single][0])].status == "rework"
    # the overlap partner passed: approved in place of the rejected primary
    assert rows[(bad_overlap, a[bad_overlap][1])].status == "approved"
    assert rows[(bad_overlap, a[bad_overlap][0])].status == "rework"
    assert rep.approved == 3
    t = be.task_of(a[bad_single][0], bad_single, 1)
    assert t.data["qa_status"] == "rework" and "no_entities" in t.data["qa_note"]
    assert not t.submissions and a[bad_single][0] in t.drafts  # back in the annotator's hands
    again = pull(ws, be, cfg, stages=(1,))[1]
    assert again.unchanged == 4 and again.in_rework == 2 and again.pulled == 0
    # the annotator fixes it: the next pull reads it, clears the note, approves
    be.submit(t.id, a[bad_single][0], t.spec.seed)
    fixed = pull(ws, be, cfg, stages=(1,))[1]
    assert fixed.pulled == 1 and fixed.rejected == 0 and fixed.in_rework == 1
    assert t.data["qa_status"] == "passed" and t.data["qa_note"] == ""
    assert catalog_rows(ws, 1)[(bad_single, a[bad_single][0])].status == "approved"
    assert fixed.approved == 4
    # without rework the rejection stays a rejection (and the task stays submitted)
    t2 = be.task_of(a[bad_overlap][0], bad_overlap, 1)
    be.submit(t2.id, a[bad_overlap][0], replace(t2.spec.seed, entities=()))
    norework = pull(ws, be, replace(cfg, rework=False), stages=(1,))[1]
    assert norework.rejected == 1 and norework.sent_back == 0
    assert catalog_rows(ws, 1)[(bad_overlap, a[bad_overlap][0])].status == "rejected"


def test_stage2_names_attach_and_geometry_is_locked(flow):
    ws, _ids, be, cfg, _ = flow
    for t in list(be.tasks_by_id.values()):
        be.submit(t.id, t.spec.annotator, t.spec.seed)
    assert pull(ws, be, cfg, stages=(1,))[1].approved == 4
    rep2 = push(ws, be, cfg, stage=2)
    assert rep2.images == 4 and rep2.tasks == 6
    a = assignment(ws, 2)
    assert a == assignment(ws, 1)  # the same overlap sample in both stages
    rows1 = catalog_rows(ws, 1)
    stage2 = [t for t in be.tasks_by_id.values() if t.spec.stage == 2]
    erased_task = next(t for t in stage2 if t.spec.annotator == "bob")
    unnamed_task = next(t for t in stage2 if t.spec.annotator == "alice")
    for t in stage2:
        iid, who = t.spec.image_id, t.spec.annotator
        approved_by = next(x for (i, x), r in rows1.items() if i == iid and r.status == "approved")
        assert t.data["seed"] == f"stage1:{approved_by}"
        seed = t.spec.seed
        assert seed == load_annotation(ws.root, 1, approved_by, iid)
        names = ["Dogs", "sky", "tree"]
        ents = [replace(e, name=n) for e, n in zip(seed.entities, names)]
        flags = {}
        if t is unnamed_task:
            ents[2] = replace(ents[2], name=None)  # left unnamed
        elif t is erased_task:  # the eraser touched a mask in stage 2
            m = rle_utils.decode(ents[0].segmentation).copy()
            m[:3, :3] = 0
            ents[0] = replace(ents[0], rle=rle_utils.encode(m))
        else:
            ents[2] = replace(ents[2], name=None)
            flags = {ents[2].id: "person_other"}  # a flag instead of a name
        be.submit(t.id, who, replace(seed, entities=tuple(ents), stage=2), flags=flags)
    r2 = pull(ws, be, cfg, stages=(2,))[2]
    assert r2.pulled == 6 and r2.rejected == 2 and r2.sent_back == 2, r2.to_json()
    assert r2.findings["alice"]["unnamed"] == 1 and r2.findings["bob"]["geometry_changed"] == 1
    rows2 = catalog_rows(ws, 2)
    for t in stage2:
        iid, who = t.spec.image_id, t.spec.annotator
        ann2 = load_annotation(ws.root, 2, who, iid)
        seeds = {e.id: e.segmentation for e in t.spec.seed.entities}
        assert {e.id: e.segmentation for e in ann2.entities} == seeds  # stage-1 masks, exactly
        if t in (erased_task, unnamed_task):
            assert rows2[(iid, who)].status == "rework"
            fb = be.tasks_by_id[t.id].feedback[-1]
            bad = t.spec.seed.entities[0 if t is erased_task else 2].id
            assert set(fb.regions) == {bad}
        else:
            assert [e.name for e in ann2.entities] == ["Dogs", "sky", "person_other"]
    # a stage-2 submission that only names (no geometry results) is enough
    t = unnamed_task
    ents = tuple(replace(e, name=f"thing{k}") for k, e in enumerate(t.spec.seed.entities))
    be.submit(
        t.id,
        t.spec.annotator,
        replace(t.spec.seed, entities=ents, stage=2),
        names_only=[e.id for e in ents],
    )
    r3 = pull(ws, be, cfg, stages=(2,))[2]
    assert r3.pulled == 1 and r3.rejected == 0
    ann = load_annotation(ws.root, 2, t.spec.annotator, t.spec.image_id)
    assert [e.name for e in ann.entities] == ["thing0", "thing1", "thing2"]


def test_stage2_new_region_is_refused(flow):
    ws, _ids, be, cfg, _ = flow
    for t in list(be.tasks_by_id.values()):
        be.submit(t.id, t.spec.annotator, t.spec.seed)
    pull(ws, be, cfg, stages=(1,))
    push(ws, be, cfg, stage=2)
    t = next(t for t in be.tasks_by_id.values() if t.spec.stage == 2)
    seed = t.spec.seed
    extra = np.zeros((seed.height, seed.width), np.uint8)
    extra[:4, :4] = 1
    ents = (
        *(replace(e, name="x") for e in seed.entities),
        Entity(id="new", rle=rle_utils.encode(extra), name="y"),
    )
    be.submit(t.id, t.spec.annotator, replace(seed, entities=ents, stage=2))
    r2 = pull(ws, be, cfg, stages=(2,))[2]
    assert r2.rejected == 1 and r2.findings[t.spec.annotator]["unknown_region"] == 1
    fb = be.tasks_by_id[t.id].feedback[-1]
    assert "new" in fb.regions and "delete it" in fb.regions["new"]


def test_approval_rule_and_its_stability_after_stage2():
    from entityseg_data.annotation.workflow import Candidate, approval

    order = {1: ["bob", "alice"]}
    rows = [Candidate(1, "alice", "approved", True), Candidate(1, "bob", "pulled", True)]
    # the primary passes now: the approval moves to them ...
    assert approval(rows, order) == {(1, "bob"): "approved", (1, "alice"): "pulled"}
    # ... unless stage 2 was made from the approved masks already
    assert approval(rows, order, keep={1}) == {}
    failing = [Candidate(1, "alice", "approved", False), Candidate(1, "bob", "pulled", True)]
    assert approval(failing, order, keep={1}) == {(1, "bob"): "approved", (1, "alice"): "pulled"}
    assert approval([Candidate(2, "x", "rework", False)], {}) == {}


def test_stage1_approval_stays_once_stage2_is_pushed(flow):
    ws, ids, be, cfg, _ = flow
    a = assignment(ws)
    iid = next(i for i in ids if len(a[i]) > 1)
    primary, partner = a[iid]
    for t in list(be.tasks_by_id.values()):
        empty = t.spec.image_id == iid and t.spec.annotator == primary
        be.submit(
            t.id, t.spec.annotator, replace(t.spec.seed, entities=()) if empty else t.spec.seed
        )
    pull(ws, be, cfg, stages=(1,))
    assert catalog_rows(ws, 1)[(iid, partner)].status == "approved"
    push(ws, be, cfg, stage=2)
    t = be.task_of(primary, iid, 1)
    be.submit(t.id, primary, t.spec.seed)  # the primary's fix arrives after stage 2 was pushed
    pull(ws, be, cfg, stages=(1,))
    rows = catalog_rows(ws, 1)
    assert rows[(iid, partner)].status == "approved" and rows[(iid, primary)].status == "pulled"


def test_backends_follow_the_protocol_and_rework_relabels(tmp_path):
    from entityseg_data.annotation.backend import AnnotationBackend, Feedback
    from entityseg_data.annotation.labelstudio import configs
    from entityseg_data.annotation.labelstudio.backend import (
        LabelStudioBackend,
        relabel_for_rework,
    )

    assert isinstance(InMemoryBackend(), AnnotationBackend)
    assert isinstance(LabelStudioBackend(object(), root=tmp_path), AnnotationBackend)
    results = [
        {"id": "a", "type": "brushlabels", "value": {"rle": [1], "brushlabels": ["brush 2"]}},
        {"id": "a", "type": "textarea", "value": {"text": ["cup"]}},
        {
            "id": "p",
            "type": "polygonlabels",
            "value": {"points": [], "polygonlabels": ["polygon 1"]},
        },
        {"id": "b", "type": "brushlabels", "value": {"rle": [1], "brushlabels": ["brush 3"]}},
    ]
    out = relabel_for_rework(
        results, Feedback(note="x", regions={"a": "needs a name", "p": "tiny"})
    )
    assert out[0]["value"]["brushlabels"] == [configs.FIX_LABEL]
    assert out[0]["meta"] == {"text": ["QA: needs a name"]}
    assert out[1] == results[1]  # the name result is untouched
    assert out[2]["value"]["polygonlabels"] == [configs.FIX_LABEL]
    assert out[3] == results[3] and results[0]["value"]["brushlabels"] == ["brush 2"]  # a copy


def test_a_failed_send_back_is_retried_by_the_next_pull(flow):
    from entityseg_data.errors import LabelStudioError

    ws, ids, be, cfg, _ = flow

    class Flaky(InMemoryBackend):
        fail = True

        def send_back(self, task, info, feedback):
            if self.fail:
                raise LabelStudioError("POST /api/annotations/1/convert-to-draft: HTTP 502")
            return super().send_back(task, info, feedback)

    flaky = Flaky()
    flaky.__dict__.update(be.__dict__)  # the same projects and tasks
    iid = ids[0]
    who = assignment(ws)[iid][0]
    t = flaky.task_of(who, iid, 1)
    flaky.submit(t.id, who, replace(t.spec.seed, entities=()))
    rep = pull(ws, flaky, cfg, stages=(1,))[1]
    assert rep.rejected == 1 and rep.sent_back == 0 and "HTTP 502" in rep.errors[0]["error"]
    assert catalog_rows(ws, 1)[(iid, who)].status == "rejected"
    flaky.fail = False
    again = pull(ws, flaky, cfg, stages=(1,))[1]  # unchanged, but now it goes back
    assert again.unchanged >= 1 and again.sent_back == 1 and again.in_rework == 1
    assert catalog_rows(ws, 1)[(iid, who)].status == "rework"
    assert flaky.tasks_by_id[t.id].data["qa_status"] == "rework"


def test_context_regions_are_marked_and_need_no_name(flow, tmp_path):
    from entityseg_data.annotation.backend import TaskSpec
    from entityseg_data.annotation.labelstudio import configs
    from entityseg_data.annotation.labelstudio.backend import LabelStudioBackend
    from entityseg_data.annotation.workflow import merge_stage2

    _ws, _ids, be, _cfg, _ = flow
    t = next(iter(be.tasks_by_id.values()))
    seed = replace(t.spec.seed, stage=2)
    ctx = seed.entities[1].id
    spec = TaskSpec(
        image_id=seed.image_id,
        stage=2,
        annotator="alice",
        image="images/x.png",
        height=seed.height,
        width=seed.width,
        seed=seed,
        seed_version="stage1:alice",
        context=(ctx,),
    )
    task = LabelStudioBackend(object(), root=tmp_path)._task_json(spec)
    labels = {r["id"]: r["value"]["brushlabels"][0] for r in task["predictions"][0]["result"]}
    assert labels[ctx] == configs.CONTEXT_LABEL
    assert {v for k, v in labels.items() if k != ctx} <= set(configs.MASK_LABELS)
    # the fake marks them too, and the stage-2 merge neither needs a name for them nor keeps them
    (tid,) = be.create_tasks(t.project, [spec])
    named = tuple(replace(e, name=None if e.id == ctx else "x") for e in seed.entities)
    info = be.submit(tid, "alice", replace(seed, entities=named))
    state = next(s for s in be.tasks(t.project) if s.id == tid)
    sub = be.read_submission(state, info, 2)
    merge = merge_stage2(sub.annotation, sub.regions, seed)
    assert merge.unnamed == () and ctx not in [e.id for e in merge.annotation.entities]
