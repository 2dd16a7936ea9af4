"""What an annotator waits for in Label Studio's editor: per-action latency and renderer memory at
1, 3, 6 and 12 MP with 10 and 40 pre-annotated regions, whole image vs tiled (issue 13).

    .venv/bin/python benchmarks/bench_annotation_ui.py                     # the full grid
    .venv/bin/python benchmarks/bench_annotation_ui.py --sizes 3 12 --regions 10 --out ui.json
    .venv/bin/python benchmarks/bench_annotation_ui.py --sizes 3 12 --whole-sizes 3 --tiled-sizes 12

A Label Studio data dir is copied from the test template (tests/labelstudio_support.py; built on
first use) and started on a free loopback port; one workspace gets a synthetic scene per size
(JPEG, the pre-annotation cut into exactly N regions covering the image) and is pushed to one
annotator, once whole (``tile_min_pixels=-1``) and once tiled (the workspace defaults:
``tile_size``/``tile_margin``; the tile shown is the one with the most regions). For every
configuration a fresh browser context of Debian's Chromium (Playwright, 1600x1000 viewport,
headless, software rendering) logs in and opens the task, then, with real mouse and keyboard
events (tests/browser/lsui.py):

* ``select``: click a region in the Regions panel (median of 3);
* ``stroke``: a 200-screen-pixel brush stroke on the selected region (median of 3);
* ``vertex``: a polygon vertex click (median of 5; the closing click not counted);
* ``submit``: Submit until the server answered and the page is idle again.

Each figure is the wall time from the first input event until the page's main thread has run
everything queued and painted a frame (double requestAnimationFrame + a task), so it includes
every freeze the action caused; ``block`` is the longest main-thread task seen meanwhile (long-task
observer). ``renderer MB`` is the resident memory of Chromium's renderer processes (pids from
DevTools SystemInfo, RSS from /proc) after the actions, the peak of the checks. The load average
of the machine is printed with every row: compare rows of one run, as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = {1: (866, 1155), 3: (1500, 2000), 6: (2121, 2828), 12: (3000, 4000)}  # MP -> (H, W)
WHO = "uibench"


@dataclass
class Row:
    mp: int
    regions: int
    mode: str
    tiles: int
    task_pixels: int
    task_regions: int
    open_s: float = 0.0
    select_s: float = 0.0
    stroke_s: float = 0.0
    vertex_s: float = 0.0
    submit_s: float = 0.0
    block_s: float = 0.0
    renderer_mb: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    raw: dict[str, list[float]] = field(default_factory=dict)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def measure_task(browser: Any, url: str, creds: dict, project: int, task: int) -> dict[str, Any]:
    from lsui import Editor, renderer_rss_mb

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        ed = Editor(context.new_page(), url)
        ed.login(creds["email"], creds["password"])
        t0 = time.perf_counter()
        ed.open_task(project, task, timeout=900)
        opened = time.perf_counter() - t0
        peak = renderer_rss_mb(browser)
        ids = ed.region_ids()
        box = ed.stable_box()
        w, h = box.natural_width, box.natural_height
        step = 200.0 / box.scale  # 200 screen pixels in image pixels
        for k in range(3):
            ed.select_region(ids[(k * 3) % len(ids)])
        peak = max(peak, renderer_rss_mb(browser))
        ed.press("b")
        for k in range(3):
            y = h * (0.3 + 0.2 * k)
            x = w * 0.2
            ed.stroke([(x, y), (min(w - 1.0, x + step), y + 5.0)])
        peak = max(peak, renderer_rss_mb(browser))
        ed.unselect()
        ed.press("9")  # polygon
        cx, cy, rad = w * 0.55, h * 0.5, min(w, h) * 0.15
        pts = [
            (cx + rad * float(c), cy + rad * float(s))
            for c, s in [(1, 0), (0.5, 0.87), (-0.5, 0.87), (-1, 0), (-0.5, -0.87), (0.5, -0.87)]
        ]
        ed.polygon(pts)
        peak = max(peak, renderer_rss_mb(browser))
        ed.unselect()
        ed.submit(task)
        peak = max(peak, renderer_rss_mb(browser))
        by: dict[str, list[float]] = {}
        blocks: list[float] = []
        for t in ed.timings:
            by.setdefault(t.action, []).append(t.seconds)
            if t.action in ("select", "stroke", "vertex", "submit"):
                blocks.append(t.longest_block)
        return {
            "open": opened,
            "select": by.get("select", []),
            "stroke": by.get("stroke", []),
            "vertex": by.get("vertex", [])[:5],
            "submit": by.get("submit", []),
            "block": max(blocks, default=0.0),
            "renderer_mb": peak,
            "errors": ed.console_errors,
        }
    finally:
        context.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 6, 12], choices=sorted(SIZES))
    ap.add_argument("--regions", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--tiled-sizes", type=int, nargs="*", default=[6, 12])
    ap.add_argument(
        "--whole-sizes", type=int, nargs="*", default=None, help="sizes run whole (default: all)"
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="workspace config overrides")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from labelstudio_support import ensure_template
    from lsui import chromium_executable, launch, missing_browser_reason
    from playwright.sync_api import sync_playwright
    from scene import add_scene_image

    from entityseg_data.annotation.labelstudio.client import LabelStudioClient
    from entityseg_data.annotation.labelstudio.server import LabelStudioServer, copy_data_dir
    from entityseg_data.annotation.labelstudio.session import (
        create_annotators,
        open_backend,
        read_credentials,
        tasks_for,
        write_credentials,
    )
    from entityseg_data.annotation.push import push
    from entityseg_data.config import WorkspaceConfig, apply_overrides
    from entityseg_data.workspace import Workspace

    reason = missing_browser_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    template, meta = ensure_template()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_"))
    server = LabelStudioServer(
        data_dir=copy_data_dir(template, tmp / "ls"), document_root=tmp, port=0
    ).start(timeout=300)
    rows: list[Row] = []
    try:
        admin = LabelStudioClient(url=server.url, token=meta["token"])
        workspaces = {}
        for mode in ("whole", "tiled"):
            cfg = apply_overrides(
                WorkspaceConfig(name=f"ui-{mode}"),
                [
                    f"labelstudio.document_root={tmp}",
                    f"labelstudio.url={server.url}",
                    f"annotation.annotators=[{WHO}]",
                    f"labelstudio.email_domain={mode}{uuid.uuid4().hex[:4]}.local",
                    "annotation.max_uncovered_fraction=1.0",
                    *(["annotation.tile_min_pixels=-1"] if mode == "whole" else []),
                    *args.set,
                ],
            )
            ws = Workspace.create(tmp / f"ws-{mode}", cfg)
            write_credentials(
                ws, {"url": server.url, "admin": {"token": meta["token"]}, "annotators": {}}
            )
            create_annotators(ws, [WHO], admin=admin)
            workspaces[mode] = ws
        plan = []
        for mp in args.sizes:
            for n in args.regions:
                if args.whole_sizes is None or mp in args.whole_sizes:
                    plan.append((mp, n, "whole"))
                if mp in args.tiled_sizes:
                    plan.append((mp, n, "tiled"))
        with sync_playwright() as pw:
            browser = launch(pw, str(chromium_executable()))
            try:
                for mp, n, mode in plan:
                    ws = workspaces[mode]
                    h, w = SIZES[mp]
                    img = add_scene_image(ws, seed=mp * 100 + n, height=h, width=w, n_regions=n)
                    backend, acfg = open_backend(ws, admin), ws.config().annotation
                    push(ws, backend, acfg, stage=1, image_ids=[img.image_id])
                    (rec,) = [r for r in tasks_for(ws, 1, WHO) if r.image_id == img.image_id]
                    project = int(rec.ls_project_id)
                    tasks = [
                        t
                        for t in admin.iter_tasks(project, fields="all")
                        if t["data"].get("image_id") == img.image_id
                    ]
                    sizes = {}
                    for t in tasks:
                        full = admin.task(int(t["id"]))
                        preds = full.get("predictions") or [{}]
                        sizes[int(t["id"])] = (
                            len(preds[0].get("result") or []),
                            int(full["data"]["height"]) * int(full["data"]["width"]),
                        )
                    task_id = max(sizes, key=lambda k: sizes[k])  # the busiest tile
                    creds = read_credentials(ws)["annotators"][WHO]
                    load0 = os.getloadavg()[0]
                    res = measure_task(browser, server.url, creds, project, task_id)
                    row = Row(
                        mp=mp,
                        regions=n,
                        mode=mode,
                        tiles=len(tasks),
                        task_pixels=sizes[task_id][1],
                        task_regions=sizes[task_id][0],
                        open_s=res["open"],
                        select_s=_median(res["select"]),
                        stroke_s=_median(res["stroke"]),
                        vertex_s=_median(res["vertex"]),
                        submit_s=_median(res["submit"]),
                        block_s=res["block"],
                        renderer_mb=res["renderer_mb"],
                        load=(load0, os.getloadavg()[0]),
                        raw={k: res[k] for k in ("select", "stroke", "vertex", "submit")},
                    )
                    rows.append(row)
                    print_row(row, header=len(rows) == 1)
                    if res["errors"]:
                        print(f"  page errors: {res['errors'][:3]}", flush=True)
            finally:
                browser.close()
    finally:
        server.stop()
    print_ratios(rows)
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in rows], indent=1))


COLS = (
    "MP regions mode tiles task_MP task_regions open select stroke vertex submit block "
    "renderer_MB load"
)


def print_row(r: Row, header: bool = False) -> None:
    if header:
        print("| " + " | ".join(COLS.split()) + " |")
        print("|" + "---|" * len(COLS.split()))
    cells = [
        r.mp,
        r.regions,
        r.mode,
        r.tiles,
        f"{r.task_pixels / 1e6:.1f}",
        r.task_regions,
        f"{r.open_s:.2f}",
        f"{r.select_s:.2f}",
        f"{r.stroke_s:.2f}",
        f"{r.vertex_s:.2f}",
        f"{r.submit_s:.2f}",
        f"{r.block_s:.2f}",
        f"{r.renderer_mb:.0f}",
        f"{r.load[0]:.1f}-{r.load[1]:.1f}",
    ]
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def print_ratios(rows: list[Row]) -> None:
    """Tiled 12 MP against whole 3 MP (the acceptance bar: every ratio <= 1.5)."""
    by = {(r.mp, r.regions, r.mode): r for r in rows}
    keys = ("select_s", "stroke_s", "vertex_s", "submit_s", "renderer_mb")
    lines = []
    for n in sorted({r.regions for r in rows}):
        a, b = by.get((12, n, "tiled")), by.get((3, n, "whole"))
        if a is None or b is None:
            continue
        ratios = [getattr(a, k) / max(getattr(b, k), 1e-9) for k in keys]
        lines.append(
            f"| {n} | " + " | ".join(f"{x:.2f}" for x in ratios) + f" | {max(ratios) <= 1.5} |"
        )
    if lines:
        print("\ntiled 12 MP / whole 3 MP")
        print("| regions | select | stroke | vertex | submit | renderer MB | all <= 1.5 |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
