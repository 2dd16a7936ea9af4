"""Benchmark of the dataset I/O layer: reading and validating a large COCO file.

Writes (once, into --workdir) a COCO instances JSON with --n annotations (random rectangles as
compressed RLEs, --per-image annotations per 480x640 image; no image files), then times, each
in a fresh subprocess (peak RSS per run):

- ``json.load``: parsing only (the floor every reader pays);
- ``pycocotools COCO()`` (peer): index building, no validation, masks not decoded;
- ``pycocotools + decode``: COCO() then ``annToRLE`` + ``area`` of every annotation (what a peer
  needs to touch every mask once; it does not check truncated or garbage strings);
- ``io.coco.read_coco``: the toolkit's strict reader (every record checked, every RLE decoded by
  the strict decoder, typed records);
- ``evaluation load_gt``: read_coco + the evaluation view (crowd flags, areas);
- ``data validate``: the lenient reader + empty/area/overlap checks (no images).

Prints seconds, peak RSS and the ratio to ``pycocotools + decode``.

    .venv/bin/python benchmarks/bench_io.py --n 60000 --workdir /tmp/bench_io
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RUNNERS = {
    "json.load": "import json; json.load(open(PATH))",
    "pycocotools COCO()": "from pycocotools.coco import COCO; COCO(PATH)",
    "pycocotools + decode": (
        "from pycocotools.coco import COCO; from pycocotools import mask as M\n"
        "c = COCO(PATH)\n"
        "for a in c.dataset['annotations']: M.area(c.annToRLE(a))"
    ),
    "io.coco.read_coco": "from entityseg_data.io.coco import read_coco; read_coco(PATH)",
    "evaluation load_gt": ("from entityseg_data.evaluation.coco_io import load_gt; load_gt(PATH)"),
    "data validate": (
        "from entityseg_data.stats.validate import validate_coco; validate_coco(PATH)"
    ),
}

WRAPPER = r"""
import time, sys
PATH = sys.argv[1]
t = time.perf_counter()
{code}
dt = time.perf_counter() - t
peak = 0.0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 1024
print(dt, peak)
"""


def write_gt(path: Path, n: int, per_image: int, seed: int = 0) -> None:
    import numpy as np
    from pycocotools import mask as M

    rng = np.random.default_rng(seed)
    h, w = 480, 640
    n_images = (n + per_image - 1) // per_image
    images = [
        {"id": i + 1, "file_name": f"{i + 1:06d}.jpg", "height": h, "width": w}
        for i in range(n_images)
    ]
    anns = []
    for k in range(n):
        y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        y1, x1 = y0 + int(rng.integers(4, 60)), x0 + int(rng.integers(4, 80))
        m = np.zeros((h, w), np.uint8, order="F")
        m[y0:y1, x0:x1] = 1
        r = M.encode(m)
        anns.append(
            {
                "id": k + 1,
                "image_id": k // per_image + 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": r["counts"].decode()},
                "area": int(M.area(r)),
                "bbox": [float(v) for v in M.toBbox(r)],
            }
        )
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "entity"}]}
    path.write_text(json.dumps(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60000, help="annotations")
    ap.add_argument("--per-image", type=int, default=100)
    ap.add_argument("--workdir", default="/tmp/bench_io")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"gt_{args.n}_{args.per_image}.json"
    if not path.exists():
        t = time.perf_counter()
        write_gt(path, args.n, args.per_image)
        mb, dt = path.stat().st_size / 1e6, time.perf_counter() - t
        print(f"wrote {path} ({mb:.1f} MB) in {dt:.1f} s")
    rows = []
    for name, code in RUNNERS.items():
        out = subprocess.run(
            [sys.executable, "-c", WRAPPER.format(code=code), str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        dt, peak = (float(v) for v in out.stdout.split()[-2:])
        rows.append((name, dt, peak))
    ref = dict((n, t) for n, t, _ in rows)["pycocotools + decode"]
    print(f"\n{args.n} annotations, {args.per_image} per 480x640 image\n")
    print("| reader | seconds | peak RSS (MB) | time / pycocotools + decode |")
    print("|---|---:|---:|---:|")
    for name, dt, peak in rows:
        print(f"| {name} | {dt:.2f} | {peak:.0f} | {dt / ref:.2f} |")


if __name__ == "__main__":
    main()
