"""Kill a URL ingest (SIGKILL, in a subprocess) mid-run, rerun it, and compare the catalog with
an uninterrupted run: nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entityseg_data.workspace import Workspace

N_UNIQUE = 36
N_DUP = 6


def _cli(ws: Path, url_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "entityseg_data",
        "-q",
        "-w",
        str(ws),
        "ingest",
        f"urls:{url_file}",
        "--no-nsfw",
        "--workers",
        "2",
        "--set",
        "ingest.per_host_rps=0",
    ]


def _count_items(ws: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{ws / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _snapshot(ws: Path) -> dict:
    w = Workspace.open(ws)
    with w.catalog() as cat:
        items = {
            r["source_id"]: (r["state"], r["image_id"] is not None)
            for r in cat.query("SELECT * FROM items")
        }
        images = {
            r["source_id"]: (r["sha256"], r["status"], r["file_path"])
            for r in cat.query("SELECT * FROM images")
        }
        dups = sorted(
            (r["dropped_source_id"], r["kind"]) for r in cat.query("SELECT * FROM duplicates")
        )
        n_items = cat.scalar("SELECT COUNT(*) FROM items")
        n_images = cat.scalar("SELECT COUNT(*) FROM images")
    files = {
        p.relative_to(ws).as_posix()
        for p in (ws / "images").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    return {
        "items": items,
        "images": images,
        "dups": dups,
        "n_items": n_items,
        "n_images": n_images,
        "files": files,
    }


@pytest.mark.slow
def test_kill_and_resume_url_ingest(tmp_path, server, images):
    urls = []
    bodies = [images.jpeg(240, 180, seed=100 + i) for i in range(N_UNIQUE)]
    for i, body in enumerate(bodies):
        urls.append(server.route(f"/img{i}.jpg", "ok", body, "image/jpeg"))
        if i % 6 == 5:  # the same bytes again under another name, later in the list
            urls.append(server.route(f"/copy{i}.jpg", "ok", body, "image/jpeg"))
    assert len(urls) == N_UNIQUE + N_DUP
    url_file = tmp_path / "urls.txt"
    url_file.write_text("\n".join(urls) + "\n")

    reference = tmp_path / "reference"
    Workspace.create(reference)
    done = subprocess.run(_cli(reference, url_file), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    ws = tmp_path / "ws"
    Workspace.create(ws)
    # the server answers 14 more requests, then holds the rest: the run cannot finish before it
    # is killed, however late this process gets the CPU
    server.state.hold_after = len(server.state.log) + 14
    proc = subprocess.Popen(
        _cli(ws, url_file), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and _count_items(ws) < 10:
        time.sleep(0.05)
    assert proc.poll() is None, f"the ingest ended before it was killed: {proc.returncode}"
    assert _count_items(ws) >= 10, "10 items were not committed within 300 s"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    server.state.release.set()
    assert proc.returncode == -signal.SIGKILL
    partial = _snapshot(ws)
    assert 10 <= partial["n_items"] <= 14 < len(urls)

    hits_before = sum(server.state.hits.values())
    rerun = subprocess.run(_cli(ws, url_file), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    final = _snapshot(ws)
    ref = _snapshot(reference)
    # nothing lost, nothing duplicated: the same catalog as an uninterrupted run
    assert final["n_items"] == len(urls) and final["n_images"] == N_UNIQUE
    assert final["items"] == ref["items"]
    assert {k: v[:2] for k, v in final["images"].items()} == {
        k: v[:2] for k, v in ref["images"].items()
    }
    assert final["dups"] == ref["dups"] and len(final["dups"]) == N_DUP
    assert final["files"] == {v[2] for v in final["images"].values()}
    # committed items were not fetched again: the rerun fetched exactly the uncommitted ones
    assert sum(server.state.hits.values()) - hits_before == len(urls) - partial["n_items"]
