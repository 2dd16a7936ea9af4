"""Two ingests of one workspace at the same time de-duplicate like one after the other
(probe 4.3: concurrently they accepted 30 where a sequential run accepts 15 and rejects 15
near duplicates, because each loaded the pHash index once at its start)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from entityseg_data.config.ingest import IngestConfig
from entityseg_data.ingest.pipeline import ingest
from entityseg_data.ingest.sources import FolderSource
from entityseg_data.ingest.sources.base import Item, Source
from entityseg_data.workspace import Workspace

N = 15
CFG = IngestConfig(nsfw_enabled=False, workers=2)


@pytest.fixture()
def pairs(tmp_path, images):
    """N originals and their re-encodings at JPEG quality 60 (near duplicates), in two folders."""
    orig, copies = tmp_path / "orig", tmp_path / "copies"
    orig.mkdir()
    copies.mkdir()
    for i in range(N):
        px = images.smooth_rgb(320, 240, seed=4500 + i)
        (orig / f"ok{i}.jpg").write_bytes(images.encode(px, "JPEG", quality=92))
        (copies / f"re{i}.jpg").write_bytes(images.encode(px, "JPEG", quality=60))
    return orig, copies


def _accepted_pairs(ws: Workspace) -> list[int]:
    """For each accepted image, the index of its pair (from its file name)."""
    with ws.catalog() as cat:
        names = [os.path.basename(r.source_id) for r in cat.images()]
    return sorted(int(n[2:].split(".")[0]) for n in names)


def _near(ws: Workspace) -> int:
    with ws.catalog() as cat:
        return len(cat.duplicates("near"))


class GatedSource(Source):
    """A folder source that yields nothing until ``gate`` is set (the test decides when).
    ``started`` is set when the ingest asks it for items: the run is set up by then (catalog
    open, near-duplicate index loaded)."""

    kind = "folder"

    def __init__(self, inner: FolderSource, gate: threading.Event) -> None:
        super().__init__(label=inner.label)
        self.inner, self.gate = inner, gate
        self.started = threading.Event()

    def items(self) -> Iterator[Item]:
        self.started.set()
        if not self.gate.wait(timeout=300):
            raise RuntimeError("gate never opened")
        yield from self.inner.items()


def test_probe_4_3_interleaved_ingests_keep_one_of_each_near_pair(tmp_path, pairs):
    """probe 4.3, deterministic interleaving: ingest A starts and is set up (catalog open,
    index loaded: it asked its source for items), then ingest B commits all the copies, then A
    goes on with the originals.
    A must see B's images: the accepted set equals the sequential run B-then-A."""
    orig, copies = pairs
    seq = Workspace.create(tmp_path / "seq")
    ingest(seq, [FolderSource(root=copies)], CFG)
    ingest(seq, [FolderSource(root=orig)], CFG)
    assert _accepted_pairs(seq) == list(range(N)) and _near(seq) == N

    con = Workspace.create(tmp_path / "con")
    gate = threading.Event()
    gated = GatedSource(FolderSource(root=orig), gate)
    result: dict = {}

    def run_a() -> None:
        try:
            result["a"] = ingest(con, [gated], CFG)
        except BaseException as exc:  # surfaced below
            result["error"] = exc
        finally:
            gated.started.set()  # (an early failure must not leave the wait below hanging)

    a = threading.Thread(target=run_a)
    a.start()
    try:
        # B runs only once A is set up: A's start-up view of the catalog holds none of B's images
        assert gated.started.wait(timeout=300), "ingest A never asked for its items"
        assert "error" not in result, result.get("error")
        result["b"] = ingest(con, [FolderSource(root=copies)], CFG)
    finally:
        gate.set()
        a.join()
    assert "error" not in result, result.get("error")
    assert result["b"].totals().accepted == N
    assert result["a"].totals().accepted == 0
    assert dict(result["a"].totals().duplicates) == {"near": N}
    with con.catalog() as cat, seq.catalog() as ref:
        got = {r.sha256 for r in cat.images()}
        want = {r.sha256 for r in ref.images()}
    assert got == want  # the same accepted set as sequentially
    assert _near(con) == N


@pytest.mark.slow
def test_probe_4_3_two_cli_processes_at_once(tmp_path, pairs):
    """probe 4.3 as the user ran it: two `entityseg-data ingest` processes started together on
    one workspace. Whatever the interleaving, every pair keeps exactly one image and the other
    is recorded as a near duplicate (the count of a sequential run: 15 and 15)."""
    orig, copies = pairs
    ws = Workspace.create(tmp_path / "ws")
    cmd = [sys.executable, "-m", "entityseg_data", "-w", str(ws.root), "ingest", "--no-nsfw"]
    procs = [
        subprocess.Popen(
            [*cmd, f"folder:{folder}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for folder in (orig, copies)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert _accepted_pairs(ws) == list(range(N))
    assert _near(ws) == N
    with ws.catalog() as cat:
        assert cat.count_images() == N  # near duplicates are not stored as images
