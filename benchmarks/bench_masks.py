"""The mask core (masks.runs / masks.rle / masks.brush) against pycocotools and the per-mask
paths it replaced, side by side in one run, on a 12 MP Voronoi label map.

    .venv/bin/python benchmarks/bench_masks.py                  # 3000x4000, 125 entities
    .venv/bin/python benchmarks/bench_masks.py --size 1500x2000 --entities 40 --repeat 5

Every row checks that both sides give the same result, then prints the median time of
``--repeat`` runs and the ratio (peer / core; > 1 = the core is faster). Our decoder validates
every RLE (alphabet, truncation, sums) before use; pycocotools does not.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    from bench_brush import timed, voronoi_label_map
    from pycocotools import mask as mu

    from entityseg_data.masks import brush, rle

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="3000x4000")
    ap.add_argument("--entities", type=int, default=125)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    n = args.entities
    lm = voronoi_label_map(h, w, n, 0)
    ids = [int(i) for i in np.unique(lm) if i]
    print(
        f"machine: {os.cpu_count()} cores (shared), load {os.getloadavg()[0]:.1f}; "
        f"{h}x{w} label map, {len(ids)} entities; median of {args.repeat}"
    )
    rows = []

    def b(r):
        return {"size": r["size"], "counts": r["counts"].encode()}

    # label map -> RLEs
    t_core, rles = timed(lambda: rle.label_map_to_rles(lm), args.repeat)
    t_peer, ref = timed(
        lambda: {i: mu.encode(np.asfortranarray((lm == i).astype(np.uint8))) for i in ids}, 1
    )
    assert all(rles[i]["counts"] == ref[i]["counts"].decode() for i in ids)
    rows.append(("label map -> RLEs (one pass vs per-id pycocotools)", t_core, t_peer))
    rl = [rles[i] for i in ids]

    # RLEs -> label map
    def per_mask():
        out = np.zeros((h, w), np.uint16)
        for i, r in zip(ids, rl):
            out[mu.decode(b(r)).astype(bool)] = i
        return out

    t_core, got = timed(lambda: rle.rles_to_label_map(rl, h, w, ids=ids), args.repeat)
    t_peer, ref_lm = timed(per_mask, 1)
    assert np.array_equal(got, ref_lm) and np.array_equal(got, lm)
    rows.append(("RLEs -> label map (runs vs per-mask decode)", t_core, t_peer))

    # areas (pycocotools fails from 256 RLEs on: compare on at most 255)
    sub = rl[:255]
    t_core, a = timed(lambda: rle.areas(sub), args.repeat)
    t_peer, a_ref = timed(lambda: mu.area([b(r) for r in sub]), args.repeat)
    assert np.array_equal(a, a_ref.astype(np.int64))
    rows.append((f"areas of {len(sub)} RLEs (validated vs not)", t_core, t_peer))

    # union / overlap
    t_core, ov = timed(lambda: rle.overlap_pixels(sub), args.repeat)
    t_peer, ov_ref = timed(
        lambda: (
            int(mu.area([b(r) for r in sub]).astype(np.int64).sum())
            - int(mu.area(mu.merge([b(r) for r in sub])))
        ),
        args.repeat,
    )
    assert ov == ov_ref
    rows.append((f"overlap pixels of {len(sub)} RLEs", t_core, t_peer))

    # one mask: decode / encode
    big = max(rl, key=lambda r: len(r["counts"]))
    t_core, m = timed(lambda: rle.decode(big), args.repeat)
    t_peer, m_ref = timed(lambda: np.ascontiguousarray(mu.decode(b(big))), args.repeat)
    assert np.array_equal(m, m_ref)
    rows.append(("decode one mask to C order", t_core, t_peer))
    t_core, e = timed(lambda: rle.encode(m), args.repeat)
    t_peer, e_ref = timed(lambda: mu.encode(np.asfortranarray(m)), args.repeat)
    assert e["counts"] == e_ref["counts"].decode()
    rows.append(("encode one C-order mask", t_core, t_peer))

    # one small RLE at a time (stats, QA, tiling: short strings, decoded in plain Python)
    small = list(rle.label_map_to_rles(voronoi_label_map(120, 160, 40, 1)).values()) * 25
    t_core, a = timed(lambda: [rle.area(r) for r in small], args.repeat)
    t_peer, a_ref = timed(lambda: [int(mu.area(b(r))) for r in small], args.repeat)
    assert a == a_ref
    chars = int(np.median([len(r["counts"]) for r in small]))
    rows.append(
        (f"area of {len(small)} 120x160 RLEs, one call each ({chars} chars)", t_core, t_peer)
    )

    # COCO -> brush for 20 regions (push / to_label_studio)
    k = min(20, len(rl))
    t_core, br = timed(lambda: brush.brush_rles_of_rles(rl[:k], h, w), args.repeat)
    t_peer, br_ref = timed(lambda: [brush.encode_brush(rle.decode(r)) for r in rl[:k]], 1)
    assert br == br_ref
    rows.append((f"{k} COCO RLEs -> brush (one label map vs per mask)", t_core, t_peer))

    print(f"{'operation':55s} {'core s':>8s} {'peer s':>8s} {'ratio':>7s}")
    for name, tc, tp in rows:
        print(f"{name:55s} {tc:8.3f} {tp:8.3f} {tp / tc:7.2f}")


if __name__ == "__main__":
    main()
