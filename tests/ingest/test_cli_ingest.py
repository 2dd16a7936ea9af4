"""``entityseg-data ingest`` end to end (in-process click runner and one subprocess)."""

from __future__ import annotations

import json

import cli_support
from click.testing import CliRunner

from entityseg_data.cli.main import cli
from entityseg_data.workspace import Workspace


def _photos(tmp_path, images, n=4):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(n):
        (d / f"{i}.jpg").write_bytes(images.jpeg(120 + 40 * i, 100, seed=300 + i))
    return d


def test_cli_ingest_report_refilter_and_nsfw(tmp_path, images, tiny_clip_dir):
    ws = Workspace.create(tmp_path / "ws")
    photos = _photos(tmp_path, images)
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "-w",
            str(ws.root),
            "ingest",
            f"folder:{photos}",
            "--json",
            "--no-nsfw",
            "--max-aspect",
            "2.0",
            "--tag",
            "indoor",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    src = report["sources"][f"folder:{photos}"]
    assert src["seen"] == 4 and src["accepted"] == 3  # 240x100 is too wide for max 2.0
    assert src["filtered"] == {"aspect": 1}
    with ws.catalog() as cat:
        assert all("indoor" in r.domain_tags for r in cat.images(status=None))

    res = runner.invoke(
        cli,
        ["-w", str(ws.root), "ingest", "--refilter", "--min-side", "5000", "--no-nsfw", "--json"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["refilter"]["status"] == {"rejected": 4}

    # NSFW through the CLI with locally provided weights (a local-dir folder); the aspect limit
    # was a one-off flag, so the 240x100 image is accepted again
    res = runner.invoke(
        cli,
        [
            "-w",
            str(ws.root),
            "ingest",
            "--refilter",
            "--min-side",
            "0",
            "--json",
            "--set",
            f"ingest.clip_model=local-dir:{tiny_clip_dir}",
            "--nsfw-threshold",
            "1.0",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)["refilter"]
    assert out["nsfw_model"].startswith("localdir-")
    assert out["status"] == {"accepted": 4}
    with ws.catalog() as cat:
        assert cat.scalar("SELECT COUNT(*) FROM verdicts WHERE filter = 'nsfw'") == 4


def test_cli_errors(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    run = ["-w", str(ws.root), "ingest"]
    usage = cli_support.run_cli(*run)
    assert usage.returncode == 2 and "SOURCE" in usage.stderr
    bad = cli_support.run_cli(*run, "bogus:thing")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: source 'bogus:thing'") and "Traceback" not in bad.stderr
    missing = cli_support.run_cli(*run, "urls:/no/such.txt")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_cli_errors_listing(tmp_path, server, images):
    ws = Workspace.create(tmp_path / "ws")
    urls = tmp_path / "u.txt"
    urls.write_text(server.url("/gone.jpg") + "\n")
    res = CliRunner().invoke(
        cli,
        [
            "-w",
            str(ws.root),
            "ingest",
            f"urls:{urls}",
            "--no-nsfw",
            "--errors",
            "--set",
            "ingest.per_host_rps=0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "http_404: 1" in res.output and "/gone.jpg: " in res.output
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "ingest", "--errors", "--json"])
    assert json.loads(res.output)["failures"]["http_404"]["count"] == 1


def test_cli_table_output(tmp_path, images):
    ws = Workspace.create(tmp_path / "ws")
    photos = _photos(tmp_path, images, n=2)
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "ingest", str(photos), "--no-nsfw"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = next(line for line in lines if line.startswith("source"))
    for col in ("seen", "skipped", "fetched", "failed", "duplicates", "filtered", "accepted"):
        assert col in header
    assert any(line.startswith("TOTAL") and line.split()[-1] == "2" for line in lines)
