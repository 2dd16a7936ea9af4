"""Brush RLE codec (ours vs label-studio-sdk) and a full pull of N 12 MP images from a real
Label Studio.

    .venv/bin/python benchmarks/bench_brush.py                 # codec + pull of 100 images
    .venv/bin/python benchmarks/bench_brush.py --images 10     # quicker pull
    .venv/bin/python benchmarks/bench_brush.py --no-pull --speckle

Codec: every mask is encoded/decoded by both implementations, outputs are compared (bit-exact),
times are the median of ``--repeat`` runs. Pull: a Label Studio data dir is copied from the test
template (``tests/annotation/conftest.py``; built on first use), ``N`` tasks of HxW images with
``--entities`` brush regions each are pushed with predictions, one annotator accepts each
prediction as its annotation, then ``entityseg_data.annotation.pull.pull`` runs in a fresh
process (time and peak RSS of that process) and its masks are checked against the truth.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def blob_mask(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sh, sw = h // 4, w // 4
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    f = np.zeros((sh, sw), np.float32)
    for _ in range(5):
        cy, cx, r = rng.uniform(0, sh), rng.uniform(0, sw), rng.uniform(0.08, 0.25) * sh
        f += np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
    f += 0.08 * np.sin(xx / 3.0) * np.cos(yy / 2.0)
    small = f > 0.5
    return np.repeat(np.repeat(small, 4, 0), 4, 1)[:h, :w].astype(np.uint8)


def speckle_mask(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 1, w // 8 + 1)) < 0.5
    return np.repeat(np.repeat(small, 8, 0), 8, 1)[:h, :w].astype(np.uint8)


def voronoi_label_map(h: int, w: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sh, sw = h // 4, w // 4
    pts = rng.uniform(0, 1, (n, 2)) * [sh, sw]
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    best = np.full((sh, sw), np.inf, np.float32)
    lm = np.zeros((sh, sw), np.uint16)
    wig = 3.0 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    for i, (py, px) in enumerate(pts):
        d = (yy - py) ** 2 + (xx - px) ** 2 + wig * (i % 3)
        better = d < best
        best[better] = d[better]
        lm[better] = i + 1
    return np.repeat(np.repeat(lm, 4, 0), 4, 1)[:h, :w]


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_codec(h: int, w: int, repeat: int, speckle: bool) -> list[dict]:
    from label_studio_sdk.converter import brush as sdk

    from entityseg_data.masks.brush import decode_brush, encode_brush

    masks = {"blob (wiggly boundary)": blob_mask(h, w, 1)}
    lm = voronoi_label_map(h, w, 20, 2)
    masks["voronoi region (1 of 20)"] = (lm == 7).astype(np.uint8)
    if speckle:
        masks["8-px speckle (worst case)"] = speckle_mask(h, w, 3)
    rows = []
    for name, m in masks.items():
        rep = 1 if "speckle" in name else repeat
        t_sdk_enc, ref = timed(lambda m=m: sdk.mask2rle(m * 255), rep)
        t_enc, ours = timed(lambda m=m: encode_brush(m), rep)
        assert ours == ref, f"{name}: encodings differ"
        t_sdk_dec, alpha = timed(lambda ref=ref: sdk.decode_rle(ref), rep)
        t_dec, back = timed(lambda ref=ref: decode_brush(ref, h, w), rep)
        assert np.array_equal(back, m) and np.array_equal(alpha[3::4].reshape(h, w) > 0, m > 0)
        rows.append(
            {
                "mask": name,
                "bytes": len(ref),
                "sdk_enc": t_sdk_enc,
                "enc": t_enc,
                "sdk_dec": t_sdk_dec,
                "dec": t_dec,
            }
        )
    return rows


PULL_CHILD = r"""
import json, resource, sys, time
from entityseg_data.workspace import Workspace
from entityseg_data.annotation.labelstudio.client import LabelStudioClient
from entityseg_data.annotation.pull import pull
from entityseg_data.annotation.labelstudio.session import open_backend
ws = Workspace.open(sys.argv[1]); url, token = sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
backend = open_backend(ws, LabelStudioClient(url=url, token=token))
rep = pull(ws, backend, ws.config().annotation, stages=(1,))[1]
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "pulled": rep.pulled, "rejected": rep.rejected,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_pull(n_images: int, h: int, w: int, n_entities: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "tests" / "annotation"))
    try:
        from labelstudio_support import build_template as _build_template
        from labelstudio_support import template_dir as _template_dir
    except ImportError:
        from conftest import _build_template, _template_dir

    from entityseg_data.annotation.labelstudio.accounts import signup_user
    from entityseg_data.annotation.labelstudio.server import LabelStudioServer, copy_data_dir
    from entityseg_data.annotation.labelstudio.session import write_credentials
    from entityseg_data.catalog.predictions import write_prediction
    from entityseg_data.config import WorkspaceConfig, apply_overrides
    from entityseg_data.masks import rle as rle_utils
    from entityseg_data.masks.store import load_annotation
    from entityseg_data.workspace import Workspace

    template = _template_dir()
    meta = (
        json.loads((template / "template.json").read_text())
        if (template / "template.json").exists()
        else _build_template(template)
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench_pull_"))
    data = copy_data_dir(template, tmp / "ls")
    server = LabelStudioServer(data_dir=data, document_root=tmp, port=0).start(timeout=300)
    try:
        from entityseg_data.annotation.labelstudio.client import LabelStudioClient
        from entityseg_data.annotation.push import push

        admin = LabelStudioClient(url=server.url, token=meta["token"])
        cfg = apply_overrides(
            WorkspaceConfig(name="bench"),
            [
                f"labelstudio.document_root={tmp}",
                "annotation.annotators=[dora]",
                "annotation.push_batch=10",
                "annotation.max_uncovered_fraction=1.0",
            ],
        )
        ws = Workspace.create(tmp / "ws", cfg)
        tok = signup_user(server.url, meta["token"], "dora@entityseg.local", "dora-pw-12345")
        write_credentials(
            ws,
            {
                "url": server.url,
                "admin": {"token": meta["token"]},
                "annotators": {"dora": {"token": tok}},
            },
        )
        from PIL import Image

        img = ws.images_dir / "blank.jpg"
        Image.new("RGB", (w, h), (90, 120, 150)).save(img, quality=50)
        truth = {}
        t0 = time.perf_counter()
        with ws.catalog() as cat:
            for k in range(n_images):
                iid = cat.add_image(
                    sha256=f"{k:064x}",
                    source="bench",
                    source_id=str(k),
                    width=w,
                    height=h,
                    file_path=ws.relpath(img),
                )
                lm = voronoi_label_map(h, w, n_entities, seed=k)
                rles = rle_utils.label_map_to_rles(lm)
                truth[iid] = rles
                payload = {
                    "image_id": iid,
                    "height": h,
                    "width": w,
                    "entities": [
                        {"id": str(i), "segmentation": r, "score": 0.9} for i, r in rles.items()
                    ],
                }
                write_prediction(ws.root, cat, payload, "bench")
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        from entityseg_data.annotation.labelstudio.session import open_backend

        rep = push(ws, open_backend(ws, admin), ws.config().annotation, stage=1)
        t_push = time.perf_counter() - t0
        dora = LabelStudioClient(url=server.url, token=tok)
        t0 = time.perf_counter()
        with ws.catalog() as cat:
            rows = cat.annotations(stage=1)
        for r in rows:
            task = dora.task(r["ls_task_id"])
            dora.create_annotation(task["id"], task["predictions"][0]["result"])
        t_annotate = time.perf_counter() - t0
        out = subprocess.run(
            [sys.executable, "-c", PULL_CHILD, str(ws.root), server.url, meta["token"]],
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        # every pulled mask equals the truth, bit for bit
        for iid, rles in truth.items():
            ann = load_annotation(ws.root, 1, "dora", iid)
            got = {e.id: e.segmentation for e in ann.entities}
            assert len(got) == len(rles)
            for i, r in rles.items():
                assert got[f"{iid}_{i}"]["counts"] == r["counts"], (iid, i)
        res.update(
            {
                "images": n_images,
                "entities": n_entities,
                "tasks": rep.tasks,
                "make_s": t_make,
                "push_s": t_push,
                "annotate_s": t_annotate,
            }
        )
        return res
    finally:
        server.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="3000x4000", help="HxW of the masks/images")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--entities", type=int, default=20)
    ap.add_argument("--speckle", action="store_true", help="include the 8-px speckle worst case")
    ap.add_argument("--no-pull", action="store_true")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    print(f"machine: {os.cpu_count()} cores (shared), python {sys.version.split()[0]}")
    print(f"\nbrush codec at {h}x{w} (median of {args.repeat}; seconds; ratio = SDK / ours)")
    print(
        f"{'mask':28s} {'RLE bytes':>10s} {'SDK enc':>8s} {'ours':>8s} {'ratio':>6s} "
        f"{'SDK dec':>8s} {'ours':>8s} {'ratio':>6s}"
    )
    for r in bench_codec(h, w, args.repeat, args.speckle):
        print(
            f"{r['mask']:28s} {r['bytes']:10d} {r['sdk_enc']:8.3f} {r['enc']:8.3f} "
            f"{r['sdk_enc'] / r['enc']:6.1f} {r['sdk_dec']:8.3f} {r['dec']:8.3f} "
            f"{r['sdk_dec'] / r['dec']:6.1f}"
        )
    if args.no_pull:
        return
    print(
        f"\nfull pull: {args.images} images of {h}x{w}, {args.entities} brush regions each, "
        "from a real Label Studio"
    )
    res = bench_pull(args.images, h, w, args.entities)
    print(json.dumps(res, indent=1))
    print(
        f"pull: {res['seconds']:.1f} s ({res['seconds'] / res['images']:.2f} s/image), "
        f"peak RSS of the pulling process {res['maxrss_mb']:.0f} MB; masks bit-exact"
    )
    _ = resource  # keep the import used on every platform


if __name__ == "__main__":
    main()
