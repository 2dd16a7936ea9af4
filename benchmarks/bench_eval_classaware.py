"""Benchmark: class-aware evaluation (``eval --task instance|panoptic|semantic``) at 12 MP,
memory bound.

Writes N synthetic 3000x4000 scenes (``synthetic.make_scene``: stuff bands, things, thin poles)
as COCO instances (one RLE per entity, scores 1 - index / 1000 for the predictions), as COCO
panoptic PNGs + JSON and as semantic label PNGs (classes = entity index mod 12), the predictions
being the GT shifted by 7 px. Each evaluation runs in its own subprocess with 1 and
with N images so its peak RSS is measured alone: a streaming evaluator's peak must not grow with
the number of images. Prints a table (seconds per image, peak RSS MB).

Usage::

    .venv/bin/python benchmarks/bench_eval_classaware.py [--images 3] [--height 3000]
        [--width 4000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from entityseg_data.evaluation.instance_eval import evaluate_instance_files
from entityseg_data.evaluation.panoptic_eval import evaluate_panoptic_files
from entityseg_data.evaluation.semantic_eval import evaluate_semantic_files
root, task, n = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
if task == "instance":
    m = evaluate_instance_files(f"{root}/inst{n}.json", f"{root}/instpred{n}.json")
    value = m["segm"]["AP"]
elif task == "panoptic":
    m = evaluate_panoptic_files(f"{root}/gt{n}.json", f"{root}/pred{n}.json",
                                gt_folder=f"{root}/gt", pred_folder=f"{root}/pred")
    value = m["All"]["PQ"]
else:
    m = evaluate_semantic_files(f"{root}/sem{n}.json", f"{root}/sempred")
    value = m["mIoU"]
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "peak_mb": peak, "value": value}))
"""


REPEAT = 16


def _rgb(ids: np.ndarray) -> np.ndarray:
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1).astype(np.uint8)


def write_data(root: Path, n: int, h: int, w: int) -> None:
    from PIL import Image

    from entityseg_data.masks import rle as rle_utils
    from entityseg_data.synthetic import make_scene

    for d in ("gt", "pred", "sem", "sempred"):
        (root / d).mkdir(parents=True, exist_ok=True)
    anns, pred_anns, files = [], [], {}
    images, inst, inst_pred = [], [], []
    cats = [{"id": c, "name": f"c{c}", "isthing": int(c < 6)} for c in range(12)]
    for i in range(n):
        _, lm, info = make_scene(100 + i, h, w)
        ne = len(info["entities"])
        cat = np.arange(ne + 1) % 12
        shifted = np.roll(lm, 7, axis=1)
        Image.fromarray(_rgb(lm)).save(root / "gt" / f"{i}.png")
        Image.fromarray(_rgb(shifted)).save(root / "pred" / f"{i}.png")
        segs = [{"id": k, "category_id": int(cat[k]), "iscrowd": 0} for k in np.unique(lm) if k]
        psegs = [{"id": k, "category_id": int(cat[k])} for k in np.unique(shifted) if k]
        for s in segs:
            s["id"] = int(s["id"])
        for s in psegs:
            s["id"] = int(s["id"])
        anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": segs})
        pred_anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": psegs})
        Image.fromarray(cat[lm].astype(np.uint8)).save(root / "sem" / f"{i}.png")
        Image.fromarray(cat[shifted].astype(np.uint8)).save(root / "sempred" / f"{i}.png")
        files[i] = f"sem/{i}.png"
        images.append({"id": i, "file_name": f"{i}.jpg", "height": h, "width": w})
        for label_map, out in ((lm, inst), (shifted, inst_pred)):
            labels = [int(k) for k in np.unique(label_map) if k]
            for k, r in rle_utils.label_map_to_rles(label_map, ids=labels).items():
                a = {"image_id": i, "category_id": int(cat[k]) + 1, "segmentation": r}
                if out is inst:
                    a.update(id=len(inst) + 1, iscrowd=0, area=rle_utils.area(r))
                else:
                    a["score"] = 1.0 - k / 1000
                out.append(a)
    inst_cats = [{"id": c + 1, "name": f"c{c}"} for c in range(12)]
    # instances also for 16 x the images (the N scenes repeated under new ids): the GT JSON is
    # read whole, so its decoding must stay bounded as the file grows
    rep = range(REPEAT)
    big = {
        "images": [dict(im, id=im["id"] + r * n) for r in rep for im in images],
        "annotations": [
            dict(a, id=a["id"] + r * len(inst), image_id=a["image_id"] + r * n)
            for r in rep
            for a in inst
        ],
        "categories": inst_cats,
    }
    (root / f"inst{REPEAT * n}.json").write_text(json.dumps(big))
    big_pred = [dict(a, image_id=a["image_id"] + r * n) for r in rep for a in inst_pred]
    (root / f"instpred{REPEAT * n}.json").write_text(json.dumps(big_pred))
    for k in (1, n):
        (root / f"inst{k}.json").write_text(
            json.dumps(
                {
                    "images": images[:k],
                    "annotations": [a for a in inst if a["image_id"] < k],
                    "categories": inst_cats,
                }
            )
        )
        (root / f"instpred{k}.json").write_text(
            json.dumps([a for a in inst_pred if a["image_id"] < k])
        )
        (root / f"gt{k}.json").write_text(json.dumps({"annotations": anns[:k], "categories": cats}))
        (root / f"pred{k}.json").write_text(
            json.dumps({"annotations": pred_anns[:k], "categories": cats})
        )
        classes = [{"index": c, "name": f"c{c}"} for c in range(12)]
        (root / f"sem{k}.json").write_text(
            json.dumps(
                {
                    "classes": classes,
                    "ignore_value": 255,
                    "files": {str(j): files[j] for j in range(k)},
                }
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--width", type=int, default=4000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # in a child: a forked process starts with its parent's peak RSS, so the parent that
        # launches the measured children must stay small
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); import bench_eval_classaware as b; "
                "b.write_data(__import__('pathlib').Path(sys.argv[2]), *map(int, sys.argv[3:]))",
                str(Path(__file__).parent),
                str(root),
                str(args.images),
                str(args.height),
                str(args.width),
            ],
            check=True,
        )
        print(f"| task | images | s / image | peak RSS MB | value | ({args.height}x{args.width})")
        print("|---|---|---|---|---|")
        for task in ("instance", "panoptic", "semantic"):
            sizes = (1, args.images) + ((REPEAT * args.images,) if task == "instance" else ())
            for n in sizes:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(root), task, str(n)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(
                    f"| {task} | {n} | {r['seconds'] / n:.2f} | {r['peak_mb']:.0f} | "
                    f"{r['value']:.4f} |"
                )


if __name__ == "__main__":
    main()
