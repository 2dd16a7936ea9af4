"""One forward of the real-size CropFormer / Mask2Former presets on CPU, random weights.

Usage:
  .venv/bin/python benchmarks/bench_model.py [--presets cropformer_swin_tiny_3x ...]
      [--variants fp32 inference_mode fused channels_last bf16] [--size 800 1344] [--threads 2]

Each (preset, variant) runs in its own subprocess so that the peak RSS (psutil, sampled every
20 ms, and ru_maxrss) belongs to that run alone. CropFormer presets get 5 views, Mask2Former 1.
Weights are seeded (torch.manual_seed(0)), the input is seeded random normal data, padded size
800x1344 (an 800x1333 view padded to a multiple of 32). FLOPs come from
torch.utils.flop_counter.FlopCounterMode in a separate forward. Variants:
  fp32            torch.no_grad, the official computation
  inference_mode  torch.inference_mode
  fused           inference_mode + fused attention in the decoder (SDPA; need_weights=False)
  channels_last   inference_mode + fused + NHWC memory format for model and input
  bf16            inference_mode + fused + torch.autocast("cpu", bfloat16) (the pixel decoder
                  stays fp32 as in the official code); its error vs fp32 is reported separately
Ratios are time / fp32 time of the same preset.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

ALL = [
    "cropformer_swin_tiny_3x",
    "mask2former_swin_tiny_3x",
    "mask2former_hornet_3x",
    "cropformer_hornet_3x",
    "mask2former_swin_large_3x",
    "cropformer_swin_large_3x",
]
VARIANTS = ["fp32", "inference_mode", "fused", "channels_last", "bf16"]


def _peak_sampler(stop: threading.Event, out: list[int]) -> None:
    import psutil

    proc = psutil.Process()
    while not stop.is_set():
        out[0] = max(out[0], proc.memory_info().rss)
        time.sleep(0.02)


def run_one(preset: str, variant: str, size: tuple[int, int], threads: int, ref: str | None):
    import torch

    from entityseg_data.model.loading import build_model
    from entityseg_data.model.presets import PRESETS

    torch.set_num_threads(threads)
    cfg = PRESETS[preset]
    views = 5 if cfg.batch_level else 1
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.manual_seed(1)
    x = torch.randn(1, views, 3, *size)
    if variant in ("fused", "channels_last", "bf16"):
        model.set_fused_attention(True)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    rss0 = __import__("psutil").Process().memory_info().rss
    peak = [rss0]
    stop = threading.Event()
    th = threading.Thread(target=_peak_sampler, args=(stop, peak), daemon=True)
    th.start()
    ctx = torch.no_grad() if variant == "fp32" else torch.inference_mode()
    t0 = time.perf_counter()
    with ctx, torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16"):
        if variant == "channels_last":
            b, v = x.shape[:2]
            xin = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(b, v, 3, *size)
        else:
            xin = x
        out = model(xin)
    seconds = time.perf_counter() - t0
    stop.set()
    th.join()
    level = out.batch_level if out.batch_level is not None else out.image_level
    logits = level.final.pred_logits.float()
    masks = level.final.pred_masks.float()
    result = {
        "preset": preset,
        "variant": variant,
        "views": views,
        "seconds": seconds,
        "peak_rss_gb": peak[0] / 1e9,
        "ru_maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "model_rss_gb": rss0 / 1e9,
    }
    if ref and os.path.exists(ref):
        base = torch.load(ref, weights_only=True)
        result["max_err_logits"] = float((logits - base["logits"]).abs().max())
        result["max_err_masks"] = float((masks - base["masks"]).abs().max())
        result["mask_sign_flips"] = int(((masks > 0) != (base["masks"] > 0)).sum())
    elif ref:
        torch.save({"logits": logits, "masks": masks}, ref)
    return result


def count_flops(preset: str, size: tuple[int, int], threads: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from entityseg_data.model.loading import build_model
    from entityseg_data.model.presets import PRESETS

    torch.set_num_threads(threads)
    cfg = PRESETS[preset]
    views = 5 if cfg.batch_level else 1
    model = build_model(cfg, device="meta")
    model = model.to_empty(device="meta").eval().requires_grad_(False)
    x = torch.zeros(1, views, 3, *size, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=ALL[:3])
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--size", type=int, nargs=2, default=(800, 1344))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("PRESET", "VARIANT"), help=argparse.SUPPRESS)
    ap.add_argument("--ref", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--flops", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = tuple(args.size)
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], size, args.threads, args.ref)))
        return
    if args.flops:
        print(json.dumps({"flops": count_flops(args.flops, size, args.threads)}))
        return
    rows = []
    tmp = tempfile.mkdtemp(prefix="bench_model_")
    for preset in args.presets:
        base_cmd = [
            sys.executable,
            __file__,
            "--size",
            *map(str, size),
            "--threads",
            str(args.threads),
        ]
        fl = subprocess.run([*base_cmd, "--flops", preset], capture_output=True, text=True)
        flops = (
            json.loads(fl.stdout.strip().splitlines()[-1])["flops"] if fl.returncode == 0 else None
        )
        if fl.returncode:
            print(fl.stderr[-2000:], file=sys.stderr)
        ref = os.path.join(tmp, f"{preset}.pt")
        base_time = None
        for variant in args.variants:
            proc = subprocess.run(
                [*base_cmd, "--one", preset, variant, "--ref", ref], capture_output=True, text=True
            )
            if proc.returncode:
                print(f"{preset} {variant} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["gflops"] = flops / 1e9 if flops else None
            if variant == args.variants[0]:
                base_time = r["seconds"]
            r["ratio"] = r["seconds"] / base_time if base_time else None
            rows.append(r)
            print(json.dumps(r), flush=True)
    cols = [
        "preset",
        "variant",
        "views",
        "seconds",
        "ratio",
        "peak_rss_gb",
        "gflops",
        "max_err_logits",
        "max_err_masks",
        "mask_sign_flips",
    ]
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:.3g}" if isinstance(v, float) else ("" if v is None else str(v)))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
