"""Benchmark: class-agnostic mask AP and boundary AP on 12 MP images, side by side.

Generates N deterministic EntitySeg-like images (default 10 x 2700x4000, 18 disjoint GT entities,
100 disjoint predictions each), writes GT and results JSON, then runs each tool in its own
subprocess (so its peak RSS is measured alone) and prints times, ratios, peak memory and whether
the numbers agree:

    pycocotools segm | faster-coco-eval segm | faster-coco-eval boundary |
    entityseg-data segm | entityseg-data boundary (1 process) | entityseg-data boundary (2 workers)

Usage::

    .venv/bin/python benchmarks/bench_eval.py [--images 10] [--height 2700] [--width 4000]
        [--skip-fce-boundary] [--out bench_eval.json]

faster-coco-eval's boundary mode takes about a minute per 12 MP image: ~10 minutes for 10 images.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def _voronoi(rng, h, w, n, scale, jitter):
    """(h, w) int32 labels 1..n of a noisy Voronoi partition computed at 1/scale, upsampled."""
    hs, ws = -(-h // scale), -(-w // scale)
    pts = rng.random((n, 2)) * [hs, ws]
    yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float32)
    best = np.full((hs, ws), np.inf, np.float32)
    lab = np.zeros((hs, ws), np.int32)
    noise = rng.random((hs, ws)).astype(np.float32) * jitter
    for k, (py, px) in enumerate(pts):
        d = (yy - py) ** 2 + (xx - px) ** 2 + noise * (k % 3)
        better = d < best
        best[better] = d[better]
        lab[better] = k + 1
    return np.repeat(np.repeat(lab, scale, 0), scale, 1)[:h, :w]


def make_data(n_images: int, h: int, w: int, seed: int = 0):
    from entityseg_data.masks import rle as rle_utils

    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    aid = 1
    for i in range(n_images):
        iid = i + 1
        images.append({"id": iid, "height": h, "width": w, "file_name": f"bench_{iid}.jpg"})
        gt = _voronoi(rng, h, w, 18, 4, 40.0)
        rles = rle_utils.label_map_to_rles(gt, range(1, 19))

        for k in range(1, 19):
            r = rles[k]
            anns.append(
                {
                    "id": aid,
                    "image_id": iid,
                    "category_id": 1,
                    "segmentation": r,
                    "area": float(rle_utils.area(r)),
                    "bbox": rle_utils.bbox(r),
                    "iscrowd": 0,
                }
            )
            aid += 1
        # predictions: the GT shifted by a few px, cut by a second partition into pieces; the
        # 100 largest pieces are kept (disjoint), with random scores
        dy, dx = (int(v) for v in rng.integers(-12, 13, 2))
        shifted = np.roll(np.roll(gt, dy, 0), dx, 1)
        cut = _voronoi(rng, h, w, 40, 8, 80.0)
        region = np.zeros((h, w), bool)  # fragments only inside three random windows
        for _ in range(3):
            y0, x0 = int(rng.integers(0, h - h // 3)), int(rng.integers(0, w - w // 3))
            region[y0 : y0 + h // 3, x0 : x0 + w // 3] = True
        pieces = shifted.astype(np.int64) * 64 + np.where(region, cut, 0)
        uniq, inv, cnt = np.unique(pieces.reshape(-1), return_inverse=True, return_counts=True)
        keep = np.argsort(-cnt, kind="stable")[:100]
        relabel = np.zeros(uniq.size, np.int32)
        relabel[keep] = np.arange(1, keep.size + 1)
        plm = relabel[inv].reshape(h, w)
        prles = rle_utils.label_map_to_rles(plm, range(1, keep.size + 1))
        scores = rng.random(keep.size)
        for k in range(1, keep.size + 1):
            results.append(
                {
                    "image_id": iid,
                    "category_id": 1,
                    "segmentation": prles[k],
                    "score": float(scores[k - 1]),
                }
            )
    gt_json = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "entity"}],
    }
    return gt_json, results


def run_tool(tool: str, gt_path: str, res_path: str) -> dict:
    """Run inside a fresh process: returns {"seconds", "import_seconds", "stats"}; ``seconds``
    counts loading the JSON files and evaluating, not importing the library."""
    t_imp = time.perf_counter()
    if tool.startswith("pycocotools"):
        import pycocotools.cocoeval  # noqa: F401
    elif tool.startswith("fce-"):
        import faster_coco_eval  # noqa: F401
    else:
        import entityseg_data.evaluation.evaluator  # noqa: F401
    import_seconds = time.perf_counter() - t_imp
    t0 = time.perf_counter()
    if tool == "pycocotools-segm":
        import contextlib
        import io

        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            cg = COCO(gt_path)
            cd = cg.loadRes(res_path)
            ev = COCOeval(cg, cd, "segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [float(v) for v in ev.stats]
    elif tool.startswith("fce-"):
        from faster_coco_eval import COCO, COCOeval_faster

        cg = COCO(gt_path)
        cd = cg.loadRes(res_path)
        ev = COCOeval_faster(cg, cd, iouType=tool[4:], print_function=lambda *a: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        stats = [float(v) for v in ev.stats[:12]]
    elif tool.startswith("ours-"):
        from entityseg_data.evaluation import evaluate_files

        kind = tool.split("-")[1]
        workers = 2 if tool.endswith("-w2") else 0
        m = evaluate_files(gt_path, res_path, boundary=kind == "boundary", workers=workers)
        s = m[kind]
        stats = [float(s[k]) for k in KEYS]
    else:
        raise SystemExit(f"unknown tool {tool}")
    return {
        "seconds": time.perf_counter() - t0,
        "import_seconds": import_seconds,
        "stats": stats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--height", type=int, default=2700)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--skip-fce-boundary", action="store_true")
    ap.add_argument("--out", default=None, help="write the raw results as JSON")
    ap.add_argument("--_run", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._run:
        out = run_tool(*args._run)
        # VmHWM: this process's own peak RSS (ru_maxrss would include the parent's at fork)
        hwm = [ln for ln in Path("/proc/self/status").read_text().splitlines() if "VmHWM" in ln]
        out["peak_rss_mb"] = (
            int(hwm[0].split()[1]) / 1024
            if hwm
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        gt, res = make_data(args.images, args.height, args.width)
        gt_path, res_path = str(Path(tmp) / "gt.json"), str(Path(tmp) / "res.json")
        Path(gt_path).write_text(json.dumps(gt))
        Path(res_path).write_text(json.dumps(res))
        del gt, res
        print(
            f"data: {args.images} images {args.height}x{args.width}, 18 GT + 100 predictions "
            f"each (generated in {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        tools = ["pycocotools-segm", "fce-segm", "ours-segm", "ours-boundary", "ours-boundary-w2"]
        if not args.skip_fce_boundary:
            tools.append("fce-boundary")
        rows = {}
        for tool in tools:
            p = subprocess.run(
                [sys.executable, __file__, "--_run", tool, gt_path, res_path],
                capture_output=True,
                text=True,
                check=False,
            )
            if p.returncode != 0:
                print(f"{tool} failed:\n{p.stderr[-2000:]}", flush=True)
                continue
            rows[tool] = json.loads(p.stdout.strip().splitlines()[-1])
            r = rows[tool]
            print(
                f"  {tool:18s} {r['seconds']:8.2f} s  peak {r['peak_rss_mb']:7.0f} MB", flush=True
            )
    print()
    print(
        f"{'tool':20s} {'seconds':>9s} {'s/image':>8s} {'peak MB':>8s} {'AP':>8s} "
        f"{'max |diff|':>11s}"
    )
    ref = {
        "segm": rows.get("pycocotools-segm", rows.get("fce-segm")),
        "boundary": rows.get("fce-boundary"),
    }
    for tool, r in rows.items():
        kind = "boundary" if "boundary" in tool else "segm"
        diff = "-"
        if ref[kind] is not None:
            diff = f"{np.max(np.abs(np.subtract(r['stats'], ref[kind]['stats']))):.1e}"
        print(
            f"{tool:20s} {r['seconds']:9.2f} {r['seconds'] / args.images:8.2f} "
            f"{r['peak_rss_mb']:8.0f} {100 * r['stats'][0]:8.3f} {diff:>11s}"
        )
    print()
    if "fce-boundary" in rows:
        for ours in ("ours-boundary", "ours-boundary-w2"):
            if ours in rows:
                ratio = rows["fce-boundary"]["seconds"] / rows[ours]["seconds"]
                print(f"speed-up {ours} vs faster-coco-eval boundary: {ratio:.1f}x")
    if "pycocotools-segm" in rows and "ours-segm" in rows:
        ratio = rows["pycocotools-segm"]["seconds"] / rows["ours-segm"]["seconds"]
        print(f"speed-up ours-segm vs pycocotools segm: {ratio:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
