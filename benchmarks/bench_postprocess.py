"""Post-processing memory and time: the tiled fusion vs the official-style full-resolution one.

Synthetic mask logits stand in for the model (no model needed): Q queries x V = 5 views (full +
4 corner crops) at 1/4 of the padded input, as CropFormer's batch-level decoder emits them for a
W x H photo resized to 800/1333. Each query is an elliptic blob (positive logits inside) of a
log-uniform size, seen consistently by every view that covers it; 30 % of the queries are
"no-object" (all logits negative), as a trained model's are. Class logits are random.

Each measurement runs in a fresh subprocess; peak memory = peak RSS during the step (sampled
every 5 ms, and the kernel's ru_maxrss high-water mark) minus the RSS just before it (inputs
already built). The official-style reference needs ~Q x H x W x 4 bytes several times (tens of
GB at 12 MP); where it does not fit, it is measured at smaller sizes and extrapolated linearly
in the pixel count (its memory and time are affine in H x W at fixed view size).

Usage::

    python benchmarks/bench_postprocess.py                 # the full table (several minutes)
    python benchmarks/bench_postprocess.py --one ours --size 3000x4000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

import numpy as np


def synthetic(h: int, w: int, q: int, seed: int = 0):
    import torch

    from entityseg_data.model.inference.preprocess import padded_size
    from entityseg_data.model.inference.views import view_geometry

    geo = view_geometry(h, w)
    hp, wp = padded_size(geo.resized_hw)
    h4, w4 = hp // 4, wp // 4
    rng = np.random.default_rng(seed)
    masks = torch.empty((q, geo.num_views, h4, w4), dtype=torch.float32)
    cy, cx = rng.uniform(0, h, q), rng.uniform(0, w, q)
    scale = np.exp(rng.uniform(np.log(0.02), np.log(0.45), q))
    ry, rx = scale * h * rng.uniform(0.6, 1.4, q), scale * w * rng.uniform(0.6, 1.4, q)
    dead = rng.random(q) < 0.3
    for v in range(geo.num_views):
        x0, y0, x1, y1 = geo.regions[v]
        hv, wv = geo.resized_hw[v]
        # original-frame coordinates of the low-res cells of this view
        ys = y0 + (np.arange(h4) * 4 + 2) * (y1 - y0) / hv
        xs = x0 + (np.arange(w4) * 4 + 2) * (x1 - x0) / wv
        for k in range(q):
            d = ((ys[:, None] - cy[k]) / ry[k]) ** 2 + ((xs[None, :] - cx[k]) / rx[k]) ** 2
            logit = np.clip(6.0 * (1.0 - d), -8, 8) - (12.0 if dead[k] else 0.0)
            masks[k, v] = torch.from_numpy(logit.astype(np.float32))
    masks += torch.from_numpy(rng.normal(0, 0.5, masks.shape).astype(np.float32))
    logits = torch.from_numpy(rng.normal(0, 1.5, (q, 2)).astype(np.float32))
    return logits, masks, geo


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_one(kind: str, h: int, w: int, q: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from entityseg_data.model.inference.postprocess import PostprocessOptions, postprocess_single
    from entityseg_data.model.inference.reference import reference_postprocess

    logits, masks, geo = synthetic(h, w, q)
    base = _rss()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    c0 = time.process_time()
    extra = {}
    if kind == "ours":
        res = postprocess_single(
            logits, masks, geo, PostprocessOptions(score_mode="reference", max_entities=None)
        )
        t1 = time.perf_counter()
        coco = res.to_coco()
        extra = {"entities": len(res), "rle_seconds": round(time.perf_counter() - t1, 3)}
        _ = coco
    else:
        ref = reference_postprocess(logits, masks, geo)
        extra = {"entities": int(ref.masks.reshape(len(ref.masks), -1).any(1).sum())}
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    stop.set()
    t.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "kind": kind,
        "h": h,
        "w": w,
        "queries": q,
        "views": geo.num_views,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "peak_gb": round((max(peak[0], maxrss) - base) / 2**30, 3),
        **extra,
    }


def run_sub(kind: str, h: int, w: int, q: int, threads: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        kind,
        "--size",
        f"{h}x{w}",
        "--queries",
        str(q),
        "--threads",
        str(threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"kind": kind, "h": h, "w": w, "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", choices=["ours", "reference"])
    ap.add_argument("--size", default="3000x4000", help="HxW of the original image")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--reference-sizes",
        default="600x800,900x1200",
        help="sizes at which the reference is run to extrapolate (HxW,HxW)",
    )
    ap.add_argument(
        "--reference-full",
        action="store_true",
        help="also run the reference at --size (needs ~30+ GB at 12 MP)",
    )
    a = ap.parse_args()
    h, w = (int(v) for v in a.size.split("x"))
    if a.one:
        print(json.dumps(measure_one(a.one, h, w, a.queries, a.threads)))
        return
    rows = []
    small = [tuple(int(v) for v in s.split("x")) for s in a.reference_sizes.split(",")]
    for sh, sw in small:
        rows.append(run_sub("ours", sh, sw, a.queries, a.threads))
        rows.append(run_sub("reference", sh, sw, a.queries, a.threads))
    rows.append(run_sub("ours", h, w, a.queries, a.threads))
    if a.reference_full:
        rows.append(run_sub("reference", h, w, a.queries, a.threads))
    refs = [r for r in rows if r["kind"] == "reference" and "error" not in r]
    if len(refs) >= 2 and not a.reference_full:
        (p0, p1) = (refs[0]["h"] * refs[0]["w"], refs[1]["h"] * refs[1]["w"])
        px = h * w

        def lin(key):
            slope = (refs[1][key] - refs[0][key]) / (p1 - p0)
            return round(refs[0][key] + slope * (px - p0), 2)

        rows.append(
            {
                "kind": "reference (extrapolated)",
                "h": h,
                "w": w,
                "queries": a.queries,
                "views": 5,
                "seconds": lin("seconds"),
                "cpu_seconds": lin("cpu_seconds"),
                "peak_gb": lin("peak_gb"),
            }
        )
    cols = [
        "kind",
        "h",
        "w",
        "queries",
        "views",
        "seconds",
        "cpu_seconds",
        "peak_gb",
        "entities",
        "rle_seconds",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
        if "error" in r:
            print(f"  error: {r['error']}")
    by = {(r["kind"], r["h"], r["w"]): r for r in rows}
    print()
    for sh, sw in [*small, (h, w)]:
        o = by.get(("ours", sh, sw))
        f = by.get(("reference", sh, sw)) or by.get(("reference (extrapolated)", sh, sw))
        if o and f and "error" not in o and "error" not in f:
            print(
                f"{sh}x{sw}: reference/ours wall time "
                f"{f['seconds'] / max(o['seconds'], 1e-9):.1f}x,"
                f" CPU time {f['cpu_seconds'] / max(o['cpu_seconds'], 1e-9):.1f}x,"
                f" peak memory {f['peak_gb'] / max(o['peak_gb'], 1e-9):.1f}x"
            )


if __name__ == "__main__":
    main()
