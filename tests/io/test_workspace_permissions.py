"""Probe 8.5 / issue 15: a workspace written under umask 022 is readable by another account
(files 0644, folders 0755), while credentials are 0600 and unreadable by it."""

from __future__ import annotations

import stat

from entityseg_data.io import file_mode


def test_probe_8_5_workspace_written_with_umask_022_is_readable_by_others(
    shared_dir, umask_022, as_other_user
):
    from entityseg_data.annotation.labelstudio.accounts import save_credentials
    from entityseg_data.annotation.labelstudio.session import credentials_path
    from entityseg_data.config.export import ExportConfig
    from entityseg_data.config.ingest import IngestConfig
    from entityseg_data.export.entityseg import export_entityseg
    from entityseg_data.ingest import ingest
    from entityseg_data.ingest.sources import parse_source
    from entityseg_data.stats.engine import compute_stats
    from entityseg_data.stats.report import write_report
    from entityseg_data.synthetic import write_dataset
    from entityseg_data.workspace import Workspace

    data = shared_dir / "data"
    ann = write_dataset(data, 3, sizes=[(120, 160)], image_format="png")
    ws = Workspace.create(shared_dir / "ws")
    # images, normalised copies, pre-annotation files, catalog
    report = ingest(
        ws, [parse_source(f"coco:{ann}:{data / 'images'}")], IngestConfig(nsfw_enabled=False)
    )
    assert report.totals().accepted == 3
    # the lr copy at 120 px instead of the official 800 (an 800x1067 PNG encode per image):
    # the same writer, a smaller file
    export_entityseg(
        ann,
        ws.root / "exports" / "release",
        images_dir=data / "images",
        link=False,
        config=ExportConfig(lr_short_side=120, lr_max_side=160),
    )
    write_report([compute_stats(ann, name="syn")], ws.root / "exports" / "stats", plots=False)
    creds = credentials_path(ws)
    save_credentials(creds, {"admin": {"token": "s3cr3t-token"}})

    files = sorted(p for p in ws.root.rglob("*") if p.is_file())
    dirs = sorted(p for p in ws.root.rglob("*") if p.is_dir())
    kinds = {p.relative_to(ws.root).parts[0] for p in files}
    assert {"images", "predictions", "exports"} <= kinds, kinds
    assert len([p for p in files if "images_lr" in p.parts]) == 3  # the lr copy is checked too
    wrong = {
        str(p.relative_to(ws.root)): oct(file_mode(p))
        for p in files
        if p != creds and file_mode(p) & 0o044 != 0o044
    }
    assert not wrong, f"files others cannot read: {wrong}"
    assert all(file_mode(d) & 0o055 == 0o055 for d in dirs)
    assert file_mode(creds) == 0o600
    if as_other_user is None:
        return  # not root: the permission bits above are the check
    # the real check: another account reads every file but the credentials
    readable = [str(p) for p in files if p != creds and stat.S_ISREG(p.stat().st_mode)]
    res = as_other_user("cat", *readable)
    assert res.returncode == 0, res.stderr.decode()[-500:]
    denied = as_other_user("cat", str(creds))
    assert denied.returncode != 0 and b"s3cr3t" not in denied.stdout
