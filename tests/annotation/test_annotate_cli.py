"""The ``annotate`` command group: help texts, status, vocab, and push/pull against the real
Label Studio of the session; ``annotate server`` machinery on a copied data dir."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from annotation_support import add_test_images
from click.testing import CliRunner

from entityseg_data.cli.main import cli
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity, ImageAnnotation, save_annotation

SUBCOMMANDS = ("server", "users", "push", "pull", "status", "vocab", "backend")


def test_help_has_examples_and_stays_light():
    code = (
        "import sys; from entityseg_data.cli.main import main\n"
        f"for sub in {SUBCOMMANDS!r}:\n"
        "    try:\n        main(['annotate', sub, '--help'])\n"
        "    except SystemExit:\n        pass\n"
        "print('HEAVY', [m for m in ('torch', 'label_studio_sdk', 'nltk') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert out.stdout.count("Example") >= len(SUBCOMMANDS)


@pytest.mark.slow
def test_vocab_and_status_commands(workspace):
    h, w = 8, 8
    names = ["Dogs", "dog", "sky", "Couch", "unknown"]
    with workspace.catalog() as cat:
        for k, name in enumerate(names):
            iid = cat.add_image(sha256=f"{k:064x}", source="t", source_id=str(k), width=w, height=h)
            m = np.zeros((h, w), np.uint8)
            m[:4] = 1
            ann = ImageAnnotation(
                image_id=iid,
                height=h,
                width=w,
                stage=2,
                annotator="alice",
                entities=(Entity(id="r1", rle=rle_utils.encode(m), name=name),),
            )
            path = save_annotation(workspace.root, ann)
            cat.set_annotation(
                iid,
                2,
                "alice",
                status="approved",
                mask_path=workspace.relpath(path),
                n_entities=1,
                qa={"passed": True, "findings": [{"check": "tiny"}]},
            )
    runner = CliRunner()
    res = runner.invoke(cli, ["-w", str(workspace.root), "annotate", "vocab"])
    assert res.exit_code == 0, res.output
    assert "5 names -> 4 classes" in res.output
    classes = (workspace.root / "exports" / "vocab" / "classes.csv").read_text()
    assert "dog,dog.n.01,thing,1,2" in classes and "sky,sky.n.01,stuff,0,1" in classes
    res = runner.invoke(cli, ["-w", str(workspace.root), "annotate", "status", "--json"])
    rows = json.loads(res.output)
    assert rows == [
        {
            "stage": 2,
            "annotator": "alice",
            "pushed": 0,
            "pulled": 0,
            "rework": 0,
            "rejected": 0,
            "approved": 5,
            "qa:tiny": 5,
        }
    ]
    with workspace.catalog() as cat:  # a task sent back for rework is counted as such
        cat.set_annotation(1, 2, "alice", status="rework")
    res = runner.invoke(cli, ["-w", str(workspace.root), "annotate", "status"])
    header, line = res.output.splitlines()[:2]
    assert header.split()[:7] == [
        "stage",
        "annotator",
        "pushed",
        "pulled",
        "rework",
        "rejected",
        "approved",
    ]
    assert line.split()[:7] == ["2", "alice", "0", "0", "1", "0", "4"]


@pytest.mark.labelstudio
def test_push_pull_through_the_cli(labelstudio):
    ws = labelstudio.workspace("cli", ("annotation.annotators=[frank]",))
    (iid,) = add_test_images(ws, [(30, 40)])
    runner = CliRunner()
    base = ["-w", str(ws.root), "annotate"]
    res = runner.invoke(cli, [*base, "users", "frank"])
    assert res.exit_code == 0 and "frank@entityseg.local" in res.output, res.output
    # one config for the connection and the workflow: a --set labelstudio.* reaches the tasks
    base_url = "http://static.invalid/ws"
    res = runner.invoke(
        cli,
        [
            *base,
            "push",
            "--stage",
            "1",
            "--json",
            "--set",
            f"labelstudio.image_base_url={base_url}",
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output[res.output.index("{") :])
    assert rep["tasks"] == 1 and rep["projects"]["frank"]
    from entityseg_data.annotation.labelstudio.session import annotator_client, tasks_for

    frank = annotator_client(ws, "frank")
    task = frank.task(tasks_for(ws, 1, "frank")[0].ls_task_id)
    assert task["data"]["image"].startswith(base_url + "/images/")
    frank.create_annotation(task["id"], task["predictions"][0]["result"])  # accept as is
    res = runner.invoke(cli, [*base, "pull", "--stage", "1", "--report", str(ws.root / "r.json")])
    assert res.exit_code == 0, res.output
    assert "1 pulled (0 rejected" in res.output and "1 approved" in res.output
    report = json.loads((ws.root / "r.json").read_text())
    assert report["1"]["per_task"][0]["image_id"] == iid
    assert report["1"]["per_task"][0]["status"] == "approved"  # what the catalog says


@pytest.mark.labelstudio
def test_start_local_server_on_a_copied_data_dir(labelstudio, tmp_path):
    """The `annotate server` code path (start, token reuse, stop) without a 30-70 s first boot."""
    from entityseg_data.annotation.labelstudio import session

    ws, meta = _seeded_workspace(tmp_path)
    srv, client = session.start_local_server(ws, port=0)
    try:
        assert client.whoami()["email"] == meta["email"]
        assert srv.url.startswith("http://127.0.0.1:")
        creds = session.read_credentials(ws)
        assert creds["url"] == srv.url
        assert (session.credentials_path(ws).stat().st_mode & 0o777) == 0o600
        assert "LABEL_STUDIO_PASSWORD" in srv.environment()
    finally:
        srv.stop()
    assert srv.process is None


def _seeded_workspace(tmp_path):
    """A workspace whose Label Studio data dir is a copy of the migrated template."""
    from labelstudio_support import ensure_template

    from entityseg_data.annotation.labelstudio import session
    from entityseg_data.workspace import Workspace

    template, meta = ensure_template()
    ws = Workspace.create(tmp_path / "ws")
    shutil.copytree(template, ws.root / "labelstudio", dirs_exist_ok=True)
    session.write_credentials(
        ws,
        {"admin": {"email": meta["email"], "password": meta["password"], "token": meta["token"]}},
    )
    return ws, meta
