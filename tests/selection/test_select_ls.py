"""`annotate push --selection NAME` against a real Label Studio (labelstudio tier): the
project holds tasks for exactly the selected images, read back from the server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from selection_support import cluster_specs, populate

import entityseg_data as esd
from entityseg_data.cli.main import cli


@pytest.mark.labelstudio
def test_push_selection_through_the_cli(labelstudio):
    ws = esd.Workspace.of(labelstudio.workspace("select", ("annotation.annotators=[selma]",)))
    specs, _ = cluster_specs(seed=6)
    ids = populate(ws, specs)
    run = CliRunner()
    res = run.invoke(cli, ["-w", str(ws.root), "annotate", "users", "selma"])
    assert res.exit_code == 0, res.output
    res = run.invoke(cli, ["-w", str(ws.root), "select", "--n", "4", "--name", "r1", "--json"])
    assert res.exit_code == 0, res.output
    chosen = [it["image_id"] for it in json.loads(res.output)["items"]]
    assert len(chosen) == 4 and set(chosen) <= set(ids)
    res = run.invoke(
        cli,
        ["-w", str(ws.root), "annotate", "push", "--stage", "1", "--selection", "r1", "--json"],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output[res.output.index("{") :])
    assert rep["selection"] == "r1" and rep["images"] == 4 and rep["tasks"] == 4
    # what the server holds: tasks for exactly the selected images, with their pre-annotation
    handle = esd.LabelStudio.connect(ws)
    tasks = list(handle.backend().tasks(rep["projects"]["selma"]))
    assert sorted(t.image_id for t in tasks) == sorted(chosen)
    assert {t.data["seed"] for t in tasks} == {"test:model"}
    (rnd,) = ws.rounds.list(stage=1)
    assert rnd.selection == "r1" and sorted(rnd.images) == sorted(chosen)
    # an unknown selection is one clear error, nothing pushed
    res = run.invoke(
        cli, ["-w", str(ws.root), "annotate", "push", "--stage", "1", "--selection", "nope"]
    )
    assert res.exit_code != 0 and "no selection named 'nope'" in str(res.exception)
    assert len(list(handle.backend().tasks(rep["projects"]["selma"]))) == 4
