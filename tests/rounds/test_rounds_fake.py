"""Rounds recorded at push and pull, and the round report's numbers, on hand-built annotation
histories with known lead times and edits (unit tier: the in-memory backend, the public API;
the history is built by tests/rounds_support.py, whose docstring gives the seed's geometry)."""

from __future__ import annotations

import pytest
from rounds_support import build_history

H, W = 40, 60


@pytest.fixture()
def history(tmp_path):
    return build_history(tmp_path / "ws")


def test_push_records_rounds(history):
    ws, ann, (a, b, c, d), (rep1, rep2) = history
    r1, r2 = ws.rounds.list()
    assert (rep1.round_id, rep2.round_id) == (r1.id, r2.id)
    assert (r1.stage, r1.model_version, r1.selection, r1.images) == (1, "source:test", None, (a, b))
    assert dict(r1.seed_versions) == {"source:test": 2} and r1.n_tasks == 2
    assert (r2.model_version, r2.selection, r2.images) == ("v2", "rand", (c, d))
    assert set(r1.annotators) <= {"alice", "bob"} and r1.created_at <= r2.created_at
    with ws.catalog() as cat:
        assert {r.image_id: r.round_id for r in cat.annotations(stage=1)} == {
            a: r1.id,
            b: r1.id,
            c: r2.id,
            d: r2.id,
        }
    # a push that creates nothing records no round
    assert ann.push(1, image_ids=[a]).round_id is None
    assert len(ws.rounds.list()) == 2


def test_pull_stores_lead_times_seeds_and_edit_breakdowns(history):
    ws, _ann, (a, b, c, d), _ = history
    edits = {(e.image_id, e.lead_time): e for e in ws.rounds.edits(stage=1)}
    assert len(edits) == 5  # B twice: the rejected submission and the fix
    ea, eb0, eb1, ec, ed = (edits[k] for k in ((a, 60), (b, 180), (b, 30), (c, 30), (d, 90)))
    assert (ea.unchanged, ea.edited, ea.deleted, ea.added, ea.pixels_changed) == (3, 0, 0, 0, 0)
    assert ea.seed_version == "source:test" and ea.lead_time_source == "tool"
    assert ea.created_at and ea.updated_at and ea.status == "pulled"
    assert (eb0.status, eb0.n_final, eb0.deleted) == ("rejected", 0, 3)
    assert (eb1.unchanged, eb1.edited, eb1.deleted, eb1.added) == (2, 1, 0, 1)
    assert dict(eb1.iou_bins)["0.95-1.00"] == 1
    assert eb1.pixels_changed == 20 + 210 and eb1.pixels_total == H * W
    assert (ed.unchanged, ed.deleted, ed.pixels_changed) == (2, 1, 390)
    assert ec.seed_version == ed.seed_version == "v2"
    assert ec.simulated and ed.simulated and not eb1.simulated
    # the seed's AP against the submission (the API's pull measures it)
    assert ea.seed_ap == pytest.approx(1.0) and ea.seed_boundary_ap == pytest.approx(1.0)
    assert eb1.seed_ar == pytest.approx(3 / 4) and eb1.seed_ap50 == pytest.approx(76 / 101)


def test_report_numbers_per_round_version_and_selection(history, tmp_path):
    ws, *_ = history
    files = ws.rounds.report(tmp_path / "report")
    rep = files.report
    r1, r2 = (r.summary for r in rep.rounds)
    # round 1: A 60 s, B 180 + 30 s; entities of the latest submissions 3 + 4
    assert (r1.annotations, r1.submissions, r1.rework, r1.timed) == (2, 3, 1, 2)
    assert r1.minutes_per_image == pytest.approx((60 + 210) / 2 / 60)
    assert r1.minutes_per_entity == pytest.approx(270 / 60 / 7)
    assert not r1.simulated
    assert (r1.n_seed, r1.n_final, r1.unchanged, r1.edited, r1.deleted, r1.added) == (
        6,
        7,
        5,
        1,
        0,
        1,
    )
    assert r1.accepted == pytest.approx(5 / 6)
    assert r1.pixels_changed_fraction == pytest.approx(230 / (2 * H * W))
    # the seeds against the approved masks: 6 seed entities, all true positives, of 7
    assert r1.seed.ar == pytest.approx(6 / 7)
    assert r1.seed.ap == pytest.approx(86 / 101)
    # round 2: SIMULATED 30 s and 90 s; 3 + 2 entities
    assert r2.simulated and r2.minutes_per_image == pytest.approx(1.0)
    assert r2.minutes_per_entity == pytest.approx(120 / 60 / 5)
    assert (r2.unchanged, r2.deleted, r2.added) == (5, 1, 0)
    # seeds by score: C's entity 3 (TP), D's deleted entity 3 (FP, same score, later image),
    # then 4 TP: precision 1 up to recall 0.2 (21 of 101 recall points), then 5/6
    assert r2.seed.ar == pytest.approx(1.0)
    assert r2.seed.ap == pytest.approx((21 + 80 * 5 / 6) / 101)
    # per seed version and selected vs not: the same groups here
    assert rep.versions["source:test"].minutes_per_image == r1.minutes_per_image
    assert rep.versions["v2"].deleted == 1
    assert set(rep.selection) == {"no selection", "random selection"}
    assert rep.selection["random selection"].minutes_per_entity == r2.minutes_per_entity
    assert r1.agreement_map is None  # no overlap sample in this workspace

    md = files.paths["markdown"].read_text()
    assert "SIMULATED" in md and "round 2" in md and "random selection" in md
    assert "2.25" in md  # round 1 minutes per image
    html = files.paths["html"].read_text()
    assert "<table>" in html and "SIMULATED" in html
    for kind in ("time", "edits", "seed"):
        png = files.paths[kind]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert files.paths["edits_csv"].read_text().count("\n") == 1 + 5
