"""A round through a real Label Studio (labelstudio tier): the annotator edits the pre-annotation
in their own project as a person would (keeps one region, shrinks one, deletes one, draws a new
one) and submits with a lead time; the pull's edit breakdown equals what they did, the lead time
and Label Studio's times are stored, and `entityseg-data rounds report` shows them.

Seed (tests/annotation_support.py, 40 x 60): entity 1 = rows 0-19 x cols 0-29 (600 px), entity 2
= rows 20-39 (1200 px), entity 3 = rows 0-12 x cols 30-59 (390 px).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from annotation_support import add_test_images
from click.testing import CliRunner

import entityseg_data as esd
from entityseg_data.annotation.labelstudio.format import brush_result
from entityseg_data.annotation.labelstudio.session import (
    annotator_client,
    create_annotators,
    open_backend,
    tasks_for,
)
from entityseg_data.cli.main import cli

pytestmark = pytest.mark.labelstudio
H, W = 40, 60


def test_edit_breakdown_and_lead_time_through_label_studio(labelstudio, tmp_path):
    core = labelstudio.workspace("rounds", ("annotation.annotators=[rhea]",))
    (iid,) = add_test_images(core, [(H, W)])
    create_annotators(core, ["rhea"], admin=labelstudio.admin)
    ws = esd.Workspace.of(core)
    ann = ws.annotation(open_backend(ws, labelstudio.admin))
    rep = ann.push(1)
    assert rep.tasks == 1 and rep.round_id is not None

    rhea = annotator_client(ws, "rhea")
    task = rhea.task(tasks_for(ws, 1, "rhea")[0].ls_task_id)
    seeded = {r["id"]: r for r in task["predictions"][0]["result"]}
    assert set(seeded) == {f"{iid}_1", f"{iid}_2", f"{iid}_3"}
    shrunk = np.zeros((H, W), np.uint8)
    shrunk[20:36, :] = 1  # entity 2 loses its 4 bottom rows: 960 of 1200 px, IoU 0.8
    strip = np.zeros((H, W), np.uint8)
    strip[13:20, 30:] = 1  # a new region in the unlabelled strip (210 px)
    results = [
        seeded[f"{iid}_1"],  # accepted as is
        brush_result(shrunk, region_id=f"{iid}_2", height=H, width=W),
        brush_result(strip, region_id="rita_new", height=H, width=W),
    ]  # entity 3 deleted
    made = rhea.create_annotation(task["id"], results, lead_time=42.5)

    (pulled,) = ann.pull(stages=(1,)).values()
    assert pulled.pulled == 1 and pulled.approved == 1
    (edit,) = ws.rounds.edits(stage=1)
    assert (edit.image_id, edit.annotator, edit.submission) == (iid, "rhea", str(made["id"]))
    assert (edit.n_seed, edit.n_final) == (3, 3)
    assert (edit.unchanged, edit.edited, edit.deleted, edit.added) == (1, 1, 1, 1)
    assert dict(edit.iou_bins) == {"0.50-0.75": 0, "0.75-0.90": 1, "0.90-0.95": 0, "0.95-1.00": 0}
    assert edit.pixels_changed == 240 + 390 + 210 and edit.pixels_total == H * W
    assert edit.lead_time == pytest.approx(42.5) and edit.lead_time_source == "tool"
    assert edit.created_at and edit.updated_at and edit.created_at[:4] == made["created_at"][:4]
    assert edit.seed_version == "source:test" and edit.round_id == rep.round_id
    # the seed against the submission: entity 1 (IoU 1) found at every threshold, entity 2
    # (IoU 0.8) at 0.50-0.80 (7 of 10), entity 3 a false positive
    assert edit.seed_ar == pytest.approx((7 * 2 / 3 + 3 * 1 / 3) / 10)

    out = tmp_path / "report"
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "rounds", "report", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "SIMULATED" not in res.output and "tool" in res.output
    assert "0.71" in res.output  # 42.5 s = 0.71 minutes per image
    data = json.loads((out / "rounds.json").read_text())
    (row,) = data["rounds"]
    assert row["round"]["id"] == rep.round_id and row["minutes_per_entity"] == pytest.approx(
        42.5 / 60 / 3
    )
    assert (out / "rounds_time.png").exists() and (out / "rounds.html").exists()
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "rounds", "list", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)[0]["images"] == [iid]
