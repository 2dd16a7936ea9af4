"""Benchmark of ``entityseg-data stats`` on synthetic 12 MP annotations.

Generates (once, cached in --workdir) N synthetic 3000x4000 scenes as an EntitySeg JSON (no image
files: statistics never decode pixels when the JSON has the sizes), then runs, each in a fresh
subprocess so peak memory (max RSS) is per run:

- ``stats``: the toolkit's command (label map from RLE runs, Crofton perimeter, row-extent hull)
  over all N images, with --workers 0 and optionally 2;
- ``per-mask skimage`` (peer baseline, on the first --baseline-n images): decode every mask with
  pycocotools, ``skimage.measure.perimeter_crofton`` + ``skimage.morphology.convex_hull_image``
  on the mask's bounding-box crop. Simplicity uses the same perimeter, so it must agree exactly;
  skimage's convex hull counts the *pixels* whose centres fall in the hull of the pixel squares,
  while ours is the hull's area, so its complexity (solidity) is slightly higher.

Prints a table (seconds, seconds per image, peak RSS) and the speed ratio per image.

    .venv/bin/python benchmarks/bench_stats.py --n 200 --workdir /tmp/bench_stats
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BASELINE = r"""
import json, sys, time
def peak_mb():
    # VmHWM: peak RSS of this process image (ru_maxrss would include the parent's peak,
    # since Linux keeps it across fork + exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
import numpy as np
from pycocotools import mask as M
from skimage.measure import perimeter_crofton
from skimage.morphology import convex_hull_image
data = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
ids = [im["id"] for im in data["images"][:n]]
t = time.perf_counter()
conv, simp = [], []
for a in data["annotations"]:
    if a["image_id"] not in ids:
        continue
    m = M.decode({"size": a["segmentation"]["size"],
                  "counts": a["segmentation"]["counts"].encode()})
    ys, xs = np.nonzero(m)
    crop = m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    area = int(crop.sum())
    hull = convex_hull_image(crop).sum()
    p = perimeter_crofton(np.pad(crop, 1), directions=4)
    conv.append(area / hull)
    simp.append(np.sqrt(4 * np.pi * area) / p)
print(json.dumps({"seconds": time.perf_counter() - t, "entities": len(conv),
                  "complexity": float(np.mean(conv)), "simplicity": float(np.mean(simp)),
                  "peak_mb": peak_mb()}))
"""

OURS = r"""
import json, sys, time
def peak_mb():
    # VmHWM: peak RSS of this process image (ru_maxrss would include the parent's peak,
    # since Linux keeps it across fork + exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
from entityseg_data.config.stats import StatsConfig
from entityseg_data.stats.engine import compute_stats
from entityseg_data.stats.table import table_row
t = time.perf_counter()
s = compute_stats(sys.argv[1], config=StatsConfig(workers=int(sys.argv[3])), limit=int(sys.argv[2]))
dt = time.perf_counter() - t
row = table_row(s)
print(json.dumps({"seconds": dt, "entities": s.n_entities, "complexity": row["complexity"],
                  "simplicity": row["simplicity"],
                  "peak_mb": peak_mb()}))
"""

CLI_CODE = r"""
import json, sys, time
def peak_mb():
    # VmHWM: peak RSS of this process image (ru_maxrss would include the parent's peak,
    # since Linux keeps it across fork + exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
from entityseg_data.cli.main import main
t = time.perf_counter()
try:
    main(["-q", "stats", *sys.argv[1:]])
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_mb": peak_mb()}))
"""


def child(args: list[str]) -> dict:
    """Run a child that prints one JSON line (seconds, peak_mb = its own max RSS)."""
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--baseline-n", type=int, default=5)
    ap.add_argument("--workers2", action="store_true", help="Also run with 2 worker processes.")
    ap.add_argument("--workdir", default="/tmp/bench_stats")
    a = ap.parse_args()

    from entityseg_data.synthetic import write_dataset

    work = Path(a.workdir)
    js = work / f"synthetic_{a.n}_{a.height}x{a.width}.json"
    if not js.exists():
        t = time.perf_counter()
        write_dataset(
            work,
            a.n,
            seed=1,
            sizes=[(a.height, a.width)],
            sources=["a", "b", "c"],
            json_name=js.name,
            write_images=False,
        )
        print(f"generated {a.n} scenes in {time.perf_counter() - t:.1f} s -> {js}")
    data = json.loads(js.read_text())
    n_ent = len(data["annotations"])
    size_mb = js.stat().st_size / 1e6
    print(f"{a.n} images {a.height}x{a.width}, {n_ent} entities, JSON {size_mb:.1f} MB")
    del data

    rows = []
    # the CLI end to end (Table 2, CSVs, class counts, plots) over all images
    cli = child([sys.executable, "-c", CLI_CODE, str(js), "--out", str(work / "out")])
    rows.append(("stats CLI (all outputs)", a.n, cli, None))
    res = child([sys.executable, "-c", OURS, str(js), str(a.n), "0"])
    rows.append(("compute_stats, 1 process", a.n, res, res))
    if a.workers2:
        res2 = child([sys.executable, "-c", OURS, str(js), str(a.n), "2"])
        rows.append(("compute_stats, 2 workers", a.n, res2, res2))
    ours_small = child([sys.executable, "-c", OURS, str(js), str(a.baseline_n), "0"])
    rows.append((f"compute_stats, first {a.baseline_n}", a.baseline_n, ours_small, ours_small))
    base = child([sys.executable, "-c", BASELINE, str(js), str(a.baseline_n)])
    rows.append((f"per-mask skimage, first {a.baseline_n}", a.baseline_n, base, base))

    print(
        f"\n{'run':34s} {'images':>6s} {'seconds':>9s} {'s/image':>8s} {'peak MB':>8s}"
        f" {'complexity':>10s} {'simplicity':>10s}"
    )
    for name, n, t, r in rows:
        c = f"{r['complexity']:10.4f}" if r else f"{'':10s}"
        sm = f"{r['simplicity']:10.4f}" if r else f"{'':10s}"
        sec = t["seconds"]
        print(f"{name:34s} {n:6d} {sec:9.1f} {sec / n:8.3f} {t['peak_mb']:8.0f} {c} {sm}")
    ratio = base["seconds"] / ours_small["seconds"]
    print(f"\nper-image speed-up over the per-mask skimage baseline: {ratio:.1f}x")
    print("peak MB = VmHWM (peak RSS) of that run's process (with 2 workers: the parent only).")


if __name__ == "__main__":
    main()
