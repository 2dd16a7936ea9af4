"""The catalog as a repository: typed records per table, predictions, the ingest ledger, and
read-only workspaces (probe 9.6)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

from entityseg_data.catalog import (
    AnnotationRecord,
    Catalog,
    DuplicateRecord,
    ImageRecord,
    LedgerItem,
    PredictionRecord,
)
from entityseg_data.catalog.predictions import prediction_relpath
from entityseg_data.errors import CatalogError, DataError
from entityseg_data.workspace import Workspace


def _image(cat: Catalog, i: int, **kw) -> int:
    fields = {
        "sha256": f"{i:064x}",
        "source": "folder",
        "source_id": f"img{i}",
        "width": 8,
        "height": 6,
        "file_path": f"images/{i}.jpg",
        **kw,
    }
    return cat.add_image(**fields)


def test_image_record_path_prefers_the_normalised_copy(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        a = _image(cat, 1)
        b = _image(cat, 2, norm_path="images_norm/2.png", phash="00000000000000ff")
        c = _image(cat, 3, file_path=None)
        ra, rb, rc = cat.image(a), cat.image(b), cat.image(c)
    assert ra.path == "images/1.jpg" and rb.path == "images_norm/2.png"
    with pytest.raises(DataError, match="image 3: no file"):
        _ = rc.path
    with pytest.raises(dataclasses.FrozenInstanceError):
        ra.status = "rejected"  # type: ignore[misc]
    # the deprecated dict-style access still answers, with a warning naming the attribute
    with pytest.deprecated_call(match=r"use ImageRecord\.norm_path"):
        assert rb["norm_path"] == rb.norm_path
    with pytest.deprecated_call(match=r"use ImageRecord\.nope"):
        assert rb.get("nope", 5) == 5


def test_typed_queries(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        ids = [_image(cat, i, phash=f"{i:016x}") for i in range(5)]
        assert cat.set_image_status(ids[1], "rejected")
        assert not cat.set_image_status(ids[1], "duplicate", only_if="accepted")
        cat.set_splits({ids[0]: "train", ids[2]: "val"})
        cat.set_verdict(ids[3], "nsfw", "reject", "score 0.9", 0.9)
        cat.set_verdict(ids[3], "resolution", "pass")
        assert [r.id for r in cat.images()] == [ids[0], ids[2], ids[3], ids[4]]
        assert [r.id for r in cat.images(split="val")] == [ids[2]]
        assert [r.id for r in cat.images(status=None, ids=[ids[4], ids[1]])] == [ids[1], ids[4]]
        assert [r.id for r in cat.images(without_verdict="nsfw")] == [ids[0], ids[2], ids[4]]
        assert cat.phashes(after_id=ids[2]) == [(ids[3], f"{3:016x}"), (ids[4], f"{4:016x}")]
        assert cat.rejecting_filters() == {ids[3]: ["nsfw"]}
        assert [v.passed for v in cat.verdicts(ids[3])] == [False, True]
        assert cat.delete_verdicts("nsfw") == 1 and cat.rejecting_filters() == {}
        assert cat.count_images() == 5 and cat.count_images("accepted") == 4
        cat.set_annotation(ids[0], 1, "alice", status="pulled", qa={"passed": True})
        ann = cat.annotation(ids[0], 1, "alice")
        assert isinstance(ann, AnnotationRecord) and ann.qa_passed and ann.status == "pulled"
        assert cat.annotation(ids[0], 2, "alice") is None
        assert cat.count_annotations(ids[0]) == 1 and cat.count_annotations(ids[1]) == 0
        cat.add_duplicate(ids[0], "urls", "u9", "near", dropped_sha256="ab", distance=3)
        (dup,) = cat.duplicates()
        assert isinstance(dup, DuplicateRecord) and (dup.kind, dup.distance) == ("near", 3)
        assert cat.count_duplicates() == 1 and cat.duplicates("exact") == []


def test_ledger_record_reset_and_counts(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        cat.record_item("urls", "a", "failed", url="http://x/a", error_kind="http_404", attempts=1)
        cat.record_item("urls", "b", "failed", error_kind="too_large", meta={"max_bytes": 10})
        cat.record_item("urls", "c", "done", image_id=None, attempts=1)
        cat.record_item("urls", "a", "failed", error_kind="http_404", attempts=2)
        items = cat.ledger_items("urls", ["a", "b", "zz"])
        assert set(items) == {"a", "b"}
        assert isinstance(items["a"], LedgerItem) and items["a"].attempts == 3
        assert items["b"].meta == {"max_bytes": 10}
        assert cat.failure_counts() == {"http_404": 1, "too_large": 1}
        assert [i.source_id for i in cat.failed_items("too_large")] == ["b"]
        assert len(cat.failed_items(any_kind=True)) == 2
        assert cat.reset_failed("too_large") == 1
        assert cat.ledger_item("urls", "b").state == "pending"
        assert cat.reset_failed() == 1 and cat.failure_counts() == {}
        with pytest.raises(CatalogError, match="ledger state"):
            cat.record_item("urls", "d", "lost")


def test_predictions_write_read_latest(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    with ws.catalog() as cat:
        iid = _image(cat, 1)
    payload = {"image_id": iid, "height": 6, "width": 8, "entities": [{"id": 1}, {"id": 2}]}
    rel = ws.write_prediction(payload, "cropformer:run/3")
    assert (
        rel
        == prediction_relpath("cropformer:run/3", iid)
        == f"predictions/cropformer_run_3/{iid}.json"
    )
    assert json.loads((ws.root / rel).read_text())["model_version"] == "cropformer:run/3"
    ws.write_prediction({**payload, "entities": []}, "baseline")
    rec, data = ws.latest_prediction(iid, "cropformer:run/3")
    assert isinstance(rec, PredictionRecord) and rec.n_entities == 2 and len(data["entities"]) == 2
    newest, _ = ws.latest_prediction(iid)
    assert newest.model_version in ("baseline", "cropformer:run/3")
    assert ws.latest_prediction(iid + 1) is None
    assert ws.predicted_ids("baseline") == {iid}
    (ws.root / rel).unlink()
    assert ws.predicted_ids("cropformer:run/3") == set()  # a row without its file does not count
    with pytest.raises(DataError, match="unreadable"):
        ws.latest_prediction(iid, "cropformer:run/3")


NOCAP = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def _can_drop_caps() -> bool:
    if os.geteuid() != 0:
        return True  # permissions already apply
    return shutil.which("setpriv") is not None


def _read_only_tree(root) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            mode = os.stat(p).st_mode
            os.chmod(p, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    mode = os.stat(root).st_mode
    os.chmod(root, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable_tree(root) -> None:
    os.chmod(root, os.stat(root).st_mode | stat.S_IWUSR)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)


@pytest.mark.skipif(not _can_drop_caps(), reason="needs setpriv to drop root's DAC override")
def test_probe_9_6_read_only_workspace_can_be_read(tmp_path):
    """probe 9.6: `chmod -R a-w` on a workspace made `status` (and every reader) fail with
    'attempt to write a readonly database'. Now the catalog opens read-only: reads work, the
    catalog bytes are unchanged, a write names the problem."""
    ws = Workspace.create(tmp_path / "ro")
    with ws.catalog() as cat:
        _image(cat, 1)
        _image(cat, 2)
    before = ws.catalog_path.read_bytes()
    _read_only_tree(ws.root)
    # one child without root's DAC override: the catalog read, then the `status` command
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from entityseg_data.cli.main import main
        from entityseg_data.workspace import Workspace
        from entityseg_data.errors import CatalogError
        ws = Workspace.open({str(ws.root)!r})
        with ws.catalog() as cat:
            out = {{"ro": cat.read_only, "n": len(cat.images()), "s": cat.summary()["images"]}}
            try:
                cat.set_image_status(1, "rejected")
                out["write"] = "allowed"
            except CatalogError as exc:
                out["write"] = str(exc)
        shown = io.StringIO()
        try:
            with contextlib.redirect_stdout(shown):
                main(["-w", {str(ws.root)!r}, "status"])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        out["status"] = [code, shown.getvalue()]
        print(json.dumps(out))
    """)
    prefix = NOCAP if os.geteuid() == 0 else []
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
    finally:
        _writable_tree(ws.root)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ro"] is True and out["n"] == 2 and out["s"] == 2
    assert "read-only" in out["write"] and "needs write access" in out["write"]
    status_code, status_out = out["status"]
    assert status_code == 0, proc.stderr
    assert "images: 2" in status_out
    assert ws.catalog_path.read_bytes() == before


def test_read_only_catalog_refuses_to_migrate(tmp_path):
    from entityseg_data.catalog import MIGRATIONS, Migration

    db = tmp_path / "c.sqlite"
    Catalog(db).close()
    extra = Migration(MIGRATIONS[-1].version + 1, "x", "ALTER TABLE images ADD COLUMN q REAL;")
    with pytest.raises(CatalogError, match="needs an upgrade"):
        Catalog(db, migrations=(*MIGRATIONS, extra), read_only=True)
    with Catalog(db, read_only=True) as cat:
        assert cat.read_only and cat.images() == []
        with pytest.raises(CatalogError, match="read-only"):
            _image(cat, 1)


def test_records_are_plain_data(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        iid = _image(cat, 1, domain_tags=["a"], extra={"k": [1, 2]})
        rec = cat.image(iid)
    d = rec.to_dict()
    assert d["domain_tags"] == ["a"] and d["extra"] == {"k": [1, 2]}
    json.dumps(d)
    assert ImageRecord.from_row(d) == rec


@pytest.mark.slow
@pytest.mark.skipif(not _can_drop_caps(), reason="needs setpriv to drop root's DAC override")
def test_probe_9_6_read_only_workspace_status_stats_export_validate(tmp_path):
    """probe 9.6: `status`, `stats --out` elsewhere, `export entityseg --out` elsewhere and
    `data validate` on a `chmod -R a-w` workspace all failed with 'attempt to write a readonly
    database'. They run now, and the workspace (catalog bytes) is unchanged."""
    from entityseg_data.ingest.importers import import_label_maps
    from entityseg_data.synthetic import write_dataset

    root = tmp_path / "syn"
    write_dataset(root, 3, seed=3, sizes=[(120, 160)], image_format="png", label_maps=True)
    ws = Workspace.create(tmp_path / "ro")
    import_label_maps(ws, root / "images", root / "label_maps")
    before = ws.catalog_path.read_bytes()
    _read_only_tree(ws.root)
    prefix = NOCAP if os.geteuid() == 0 else []
    base = [*prefix, sys.executable, "-m", "entityseg_data", "-w", str(ws.root)]
    runs = {}
    try:
        for name, args in {
            "status": ["status"],
            "stats": ["stats", "--out", str(tmp_path / "stats"), "--no-plots"],
            "export": ["export", "entityseg", "--out", str(tmp_path / "rel"), "--no-lr", "--copy"],
            "validate": ["data", "validate"],
        }.items():
            runs[name] = subprocess.run([*base, *args], capture_output=True, text=True, timeout=300)
    finally:
        _writable_tree(ws.root)
    for name, proc in runs.items():
        assert proc.returncode == 0, (name, proc.stderr)
        assert "readonly" not in proc.stderr, (name, proc.stderr)
    assert "images: 3" in runs["status"].stdout
    assert (tmp_path / "stats" / "stats.json").is_file()
    assert (tmp_path / "rel" / "export.json").is_file()
    assert "read-only" in runs["export"].stderr  # the new splits are not recorded, and it says so
    assert ws.catalog_path.read_bytes() == before


def test_predictions_as_image_masks(tmp_path):
    """A Segmenter's ImageMasks is written as a prediction file and read back equal; a corrupt
    RLE in the file is one error naming the file (strict decoder)."""
    import numpy as np

    from entityseg_data.masks.types import ImageMasks

    ws = Workspace.create(tmp_path / "ws")
    with ws.catalog() as cat:
        iid = _image(cat, 1)
    lm = np.zeros((6, 8), np.uint16)
    lm[:3, :5] = 1
    lm[3:, 2:] = 2
    masks = ImageMasks.from_label_map(lm, image_id=iid, scores=[0.9, 0.4])
    rel = ws.write_prediction(masks, "seg:v1")
    rec, back = ws.prediction_masks(iid, "seg:v1")
    assert rec.path == rel and rec.n_entities == 2
    assert np.array_equal(back.label_map(), lm)
    assert [e.score for e in back] == [0.9, 0.4] and [e.id for e in back] == [1, 2]
    _, payload = ws.latest_prediction(iid, "seg:v1")
    assert "image_id" not in payload["entities"][0] and payload["model_version"] == "seg:v1"
    payload["entities"][1]["segmentation"]["counts"] = payload["entities"][1]["segmentation"][
        "counts"
    ][:-1]
    (ws.root / rel).write_text(json.dumps(payload))
    with pytest.raises(DataError, match=rel.split("/")[-1]):
        ws.prediction_masks(iid, "seg:v1")
    with pytest.raises(DataError, match="no image_id"):
        ws.write_prediction(ImageMasks.from_label_map(lm), "seg:v1")
