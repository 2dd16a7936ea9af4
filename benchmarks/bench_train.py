"""Training step time and peak memory of CropFormer presets on this machine (CPU).

Each configuration runs in its own subprocess (so peak RSS is its own): build the model, map one
synthetic image with the CropFormer training mapper (full view + 1 corner crop, V = 2) at the
given short side, then time ``steps`` full optimizer steps (forward, matching + losses over all
heads, backward, clipping, AdamW). The first step is a warm-up and not timed.

    .venv/bin/python benchmarks/bench_train.py                 # default table
    .venv/bin/python benchmarks/bench_train.py --steps 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time


def run_one(preset: str, short: int, amp: str, steps: int, threads: int, points: int) -> dict:
    import resource

    import torch

    torch.set_num_threads(threads)
    from entityseg_data.model.training.config import DataConfig, load_train_config
    from entityseg_data.model.training.data import (
        EntityCropMapper,
        collate,
        load_records,
        sample_rng,
    )
    from entityseg_data.model.training.trainer import Trainer
    from entityseg_data.synthetic import write_dataset

    tmp = tempfile.mkdtemp()
    js = write_dataset(tmp, 1, sizes=((1500, 2000),), image_format="png")
    cfg = load_train_config(
        None,
        [
            f"model={preset}",
            f"amp={amp}",
            f"loss.num_points={points}",
            "ims_per_batch=1",
            "tensorboard=false",
            f"out_dir={tmp}/run",
            f"data.train_json={js}",
            f"data.image_root={tmp}/images",
        ],
    )
    records = load_records(js, f"{tmp}/images")
    mapper = EntityCropMapper(config=DataConfig(min_sizes=(short,), max_size=int(short * 1.667)))
    batch = collate([mapper(records[0], *sample_rng(0, 0))])
    trainer = Trainer(config=cfg, records=records)
    times, cpu = [], []
    for i in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.step([batch])
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return {
        "preset": preset,
        "views": "x".join(str(s) for s in batch.images.shape[1:]),
        "entities": int(batch.targets[0].valid.shape[0]),
        "amp": amp,
        "params_M": round(n_params / 1e6, 1),
        "step_s": round(sum(times) / len(times), 2),
        "cpu_s": round(sum(cpu) / len(cpu), 2),
        "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=4, metavar=("PRESET", "SHORT", "AMP", "POINTS"))
    ap.add_argument(
        "--configs",
        default="tiny_cpu:256:fp32:12544,tiny_cpu:256:bf16:12544,"
        "cropformer_swin_tiny_3x:384:fp32:12544,cropformer_swin_tiny_3x:384:bf16:12544",
        help="comma-separated PRESET:SHORT:AMP:POINTS",
    )
    args = ap.parse_args()
    if args.one:
        p, s, a, n = args.one
        print(json.dumps(run_one(p, int(s), a, args.steps, args.threads, int(n))))
        return
    rows = []
    for spec in args.configs.split(","):
        p, s, a, n = spec.split(":")
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                p,
                s,
                a,
                n,
                "--steps",
                str(args.steps),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            rows.append({"preset": p, "views": s, "amp": a, "error": out.stderr.strip()[-200:]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = {}
    cols = [
        "preset",
        "views",
        "entities",
        "amp",
        "params_M",
        "step_s",
        "cpu_s",
        "peak_rss_GB",
        "vs_fp32",
    ]
    for r in rows:
        if r.get("amp") == "fp32" and "step_s" in r:
            base[r["preset"]] = r["cpu_s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        if "step_s" in r and r["preset"] in base:
            r["vs_fp32"] = f"{r['cpu_s'] / base[r['preset']]:.2f}x (cpu)"
        print("| " + " | ".join(str(r.get(c, r.get("error", ""))) for c in cols) + " |")


if __name__ == "__main__":
    main()
