"""The prediction's "pre" stage alone (what ``EntitySegmenter.predict_arrays`` runs before the
backbone: view geometry, views cut and resized, normalised and padded into the input tensor),
at several thread counts, cold and warm.

Usage:
  PYTHONPATH=src .venv/bin/python benchmarks/bench_preprocess.py [--threads 2 1] [--repeat 3]
      [--size 800 1067] [--calls 15] [--paths input stack predictor] [--preset NAME]

Each run is a fresh process (runs interleaved: 2, 1, 2, 1, ...) with the predictor's allocator
tuning applied and torch's thread pool started. ``cold`` = the first call of the process (its
input tensor's pages are touched for the first time: minor page faults, as in
``bench_model.py``'s one-call-per-process "pre" row); ``warm`` = the best and the median of the
next ``--calls`` calls (what every image after the first of a folder pays). The image is
skimage's coffee photo resized to ``--size``. Paths: ``input`` = ``views_input`` (what the
predictor runs: each view cut, resized and normalised into its slot in one threaded pass),
``stack`` = ``build_views`` (threaded) then ``stack_views`` (torch ops), the path before it;
``predictor`` = ``EntitySegmenter.predict_arrays`` of a random-weight ``--preset`` model built
first (as in ``bench_model.py``), each call stopped where the backbone's forward begins: exactly
``bench_model.py``'s "pre" row (geometry, views, eval mode, inference mode), after a model build.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


class _AtBackbone(Exception):
    """Raised by the backbone stand-in: the predictor's call stops where its forward begins."""


def _predictor_pre(threads: int, size: tuple[int, int], preset: str):
    """The predictor of ``bench_model.py`` (random weights, ``preset``) whose calls stop where the
    backbone starts: the call then times exactly bench_model's "pre" row."""
    import types

    from bench_model import _ours_segmenter, load_rgb

    opts = types.SimpleNamespace(
        threads=threads, size=size, image=None, device="cpu", checkpoint=None, weights_dir=None
    )
    seg = _ours_segmenter(opts, preset, "fp32")

    def stop(*_a, **_k):
        raise _AtBackbone

    seg.model.backbone.forward = stop
    rgb = load_rgb(opts)

    def call() -> None:
        try:
            seg.predict_arrays([rgb])
        except _AtBackbone:
            return
        raise AssertionError("the backbone was not reached")

    return call


def one_run(threads: int, size: tuple[int, int], calls: int, path: str, preset: str = "") -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    from entityseg_data.model.inference.preprocess import stack_views, views_input
    from entityseg_data.model.inference.views import build_views, view_geometry
    from entityseg_data.model.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(threads)
    torch.randn(512, 512).sum()  # the intra-op thread pool is up, as after building a model
    h, w = size
    rgb = np.asarray(Image.fromarray(data.coffee()).resize((w, h), Image.Resampling.BILINEAR))
    predictor = _predictor_pre(threads, size, preset) if path == "predictor" else None

    def call() -> tuple[float, int]:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        if predictor is not None:
            predictor()
            return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        geo = view_geometry(h, w)
        if path == "input":
            x, _ = views_input([rgb], [geo], workers=torch.get_num_threads())
        else:
            x, _ = stack_views([build_views(rgb, geo, workers=torch.get_num_threads())])
        dt = time.perf_counter() - t0
        del x
        return dt, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

    cold, cold_faults = call()
    warm = [call()[0] for _ in range(calls)]
    return {
        "threads": threads,
        "path": path,
        "cold_s": cold,
        "cold_minflt": cold_faults,
        "warm_best_s": min(warm),
        "warm_median_s": statistics.median(warm),
        "load_before": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, nargs=2, default=(800, 1067), metavar=("H", "W"))
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument(
        "--paths", nargs="+", choices=["input", "stack", "predictor"], default=["input", "stack"]
    )
    ap.add_argument("--preset", default="cropformer_hornet_3x", help="model of the predictor path")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", default="input", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, tuple(args.size), args.calls, args.path, args.preset)))
        return
    keys = [(p, t) for p in args.paths for t in args.threads]
    rows: dict[tuple[str, int], list[dict]] = {k: [] for k in keys}
    for _ in range(args.repeat):
        for p, t in keys:
            cmd = [sys.executable, __file__, "--one", str(t), "--calls", str(args.calls)]
            cmd += ["--size", *map(str, args.size), "--path", p, "--preset", args.preset]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows[(p, t)].append(json.loads(out.strip().splitlines()[-1]))
    print(f"pre stage, {args.size[0]}x{args.size[1]} image, {args.repeat} processes per row")
    print(
        "| path | threads | cold s (each process) | cold minor faults | warm best s"
        " | warm median s |"
    )
    print("|---|---|---|---:|---:|---:|")
    best: dict[tuple[str, int], dict[str, float]] = {}
    for (p, t), rs in rows.items():
        b = best[(p, t)] = {
            "cold": min(r["cold_s"] for r in rs),
            "warm": min(r["warm_best_s"] for r in rs),
            "median": statistics.median(r["warm_median_s"] for r in rs),
        }
        colds = ", ".join(f"{r['cold_s']:.3f}" for r in rs)
        faults = max(r["cold_minflt"] for r in rs)
        print(f"| {p} | {t} | {colds} | {faults} | {b['warm']:.4f} | {b['median']:.4f} |")
    for (p, t), b in best.items():
        one = best.get((p, 1))
        if t == 1 or one is None:
            continue
        print(
            f"{p}: speed-up {t} threads vs 1: cold best/best {one['cold'] / b['cold']:.2f}x,"
            f" warm best/best {one['warm'] / b['warm']:.2f}x,"
            f" warm median/median {one['median'] / b['median']:.2f}x"
        )
    loads = [r["load_before"] for rs in rows.values() for r in rs]
    print(f"load average before the runs: {min(loads):.2f}-{max(loads):.2f}")


if __name__ == "__main__":
    main()
