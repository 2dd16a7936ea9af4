"""Selection (issue 18): how well each strategy covers an embedding space, side by side.

Synthetic CLIP-like data: N unit vectors in D dimensions around C cluster centres of long-tailed
(Zipf) sizes, so a few clusters hold most images and many are rare. Each image gets a synthetic
uncertainty (a per-cluster difficulty plus noise). For each k, the strategies choose k images:

* random: the seeded baseline (mean and spread over --seeds draws);
* k-center: ``selection.uncertainty_weight=0`` (diversity alone);
* blend 0.25 / blend 0.5: ``uncertainty_weight`` 0.25 (the default) and 0.5;
* uncertainty: ``uncertainty_weight=1`` (uncertainty alone, no diversity).

Measured: max and mean distance of any image to its nearest chosen one (lower = better
covered; max is the k-center objective), clusters with at least one chosen image, mean
uncertainty of the chosen, and the time to choose. Ratios are random / strategy for the
distances (> 1 = better than random) and strategy / random for clusters hit.

    .venv/bin/python benchmarks/bench_select.py                       # N=10000, D=512, C=60
    .venv/bin/python benchmarks/bench_select.py --n 2000 --k 10 50 --seeds 5
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def make_data(n: int, dim: int, clusters: int, seed: int, spread: float):
    """(points (N, D) float32 unit vectors, labels (N,), uncertainty (N,))."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, clusters + 1) ** 1.1  # Zipf-like sizes
    sizes = np.maximum(1, np.round(weights / weights.sum() * n)).astype(int)
    sizes[0] += n - sizes.sum()
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(clusters), sizes)
    pts = centres[labels] + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    pts = pts.astype(np.float32)  # as the CLIP cache stores them
    difficulty = rng.uniform(0.1, 0.9, size=clusters)
    u = np.clip(difficulty[labels] + 0.1 * rng.normal(size=n), 0, 1)
    perm = rng.permutation(n)
    return pts[perm], labels[perm], u[perm]


def main() -> None:
    from entityseg_data.annotation.selection import coverage, k_center_greedy, random_pick

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="images")
    ap.add_argument("--dim", type=int, default=512, help="embedding size (CLIP ViT-B: 512)")
    ap.add_argument("--clusters", type=int, default=60)
    ap.add_argument("--spread", type=float, default=0.6, help="within-cluster noise")
    ap.add_argument("--k", type=int, nargs="+", default=[20, 60, 200])
    ap.add_argument("--seeds", type=int, default=10, help="random draws per k")
    ap.add_argument("--data-seed", type=int, default=0)
    args = ap.parse_args()
    pts, labels, u = make_data(args.n, args.dim, args.clusters, args.data_seed, args.spread)
    ids = np.arange(1, args.n + 1)
    sizes = np.bincount(labels)
    print(
        f"machine: {os.cpu_count()} cores (shared), load {os.getloadavg()[0]:.1f}; "
        f"N={args.n} D={args.dim}, {args.clusters} clusters of {sizes.max()}..{sizes.min()} "
        f"images (Zipf), random over {args.seeds} seeds"
    )
    header = (
        f"{'k':>4}  {'strategy':<12} {'max dist':>9} {'mean dist':>10} {'clusters':>9} "
        f"{'mean u':>7} {'time s':>7}  {'max x':>6} {'mean x':>6} {'clust x':>7}"
    )
    print(header)
    print("-" * len(header))
    for k in args.k:
        rnd = []
        t_rnd = 0.0
        for s in range(args.seeds):
            t0 = time.perf_counter()
            chosen = [i - 1 for i in random_pick(ids.tolist(), k, seed=s)]
            t_rnd += time.perf_counter() - t0
            c = coverage(pts, chosen, labels)
            rnd.append((c.max_distance, c.mean_distance, c.clusters_hit, float(u[chosen].mean())))
        t_rnd /= args.seeds
        r = np.asarray(rnd)
        rm = r.mean(axis=0)
        rs = r.std(axis=0)
        print(
            f"{k:>4}  {'random':<12} {rm[0]:>5.3f}±{rs[0]:.2f} {rm[1]:>6.3f}±{rs[1]:.2f} "
            f"{rm[2]:>5.1f}±{rs[2]:.1f} {rm[3]:>7.3f} {t_rnd:>7.3f}  {'1.00':>6} {'1.00':>6} "
            f"{'1.00':>7}"
        )
        for name, w in (
            ("k-center", 0.0),
            ("blend 0.25", 0.25),
            ("blend 0.5", 0.5),
            ("uncertainty", 1.0),
        ):
            t0 = time.perf_counter()
            res = k_center_greedy(pts, k, ids=ids, uncertainty=u, uncertainty_weight=w)
            dt = time.perf_counter() - t0
            chosen = [p.index for p in res.picks]
            c = coverage(pts, chosen, labels)
            print(
                f"{k:>4}  {name:<12} {c.max_distance:>9.3f} {c.mean_distance:>10.3f} "
                f"{c.clusters_hit:>9d} {float(u[chosen].mean()):>7.3f} {dt:>7.3f}  "
                f"{rm[0] / c.max_distance:>6.2f} {rm[1] / c.mean_distance:>6.2f} "
                f"{c.clusters_hit / rm[2]:>7.2f}"
            )


if __name__ == "__main__":
    main()
