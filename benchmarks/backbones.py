"""Backbone CPU fast paths: time and max abs error of each variant vs the official-ops baseline.

Usage: .venv/bin/python benchmarks/backbones.py [--size 800 1088] [--views 1] [--threads 2]
       [--backbones swin_tiny hornet_large_gf] [--repeat 2]

Random weights (seeded), one forward under ``torch.inference_mode``; the baseline of every row
group is the literal official computation in fp32 (Swin: explicit softmax attention). Variants:
``sdpa`` (Swin fused attention), ``channels_last`` (NHWC memory format for the convolutions),
``bf16`` (``torch.autocast("cpu", dtype=torch.bfloat16)``; its error is reported separately and it
is not a parity path). Prints one table: best wall and process-CPU seconds over ``--repeat``
interleaved runs; the ratio is CPU time / baseline CPU time (more stable than wall time on a
shared machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from entityseg_data.model.backbones import BACKBONE_PRESETS, build_backbone


def _once(model, x, *, channels_last: bool, bf16: bool):
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return seconds, {k: v.float() for k, v in out.items()}


def _max_err(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=(800, 1088))
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--backbones", nargs="+", default=["swin_tiny", "hornet_large_gf"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.views, 3, *args.size)
    rows = []
    for name in args.backbones:
        cfg = BACKBONE_PRESETS[name]
        is_swin = name.startswith("swin")
        base_cfg = dataclasses.replace(cfg, fused_attention=False) if is_swin else cfg
        torch.manual_seed(0)
        model = build_backbone(base_cfg).eval()
        variants = [("official ops (baseline)", model, False, False)]
        if is_swin:
            fused = build_backbone(dataclasses.replace(cfg, fused_attention=True)).eval()
            fused.load_state_dict(model.state_dict())
            variants.append(("sdpa", fused, False, False))
        variants.append(("channels_last", model, True, False))
        variants.append(("bf16 autocast (no parity)", model, False, True))
        best = [(float("inf"), float("inf"))] * len(variants)
        outs: list[dict] = [{}] * len(variants)
        for _ in range(args.repeat):  # interleaved, so load drift hits every variant alike
            for i, (_label, m, cl, bf) in enumerate(variants):
                seconds, outs[i] = _once(m, x, channels_last=cl, bf16=bf)
                best[i] = (min(best[i][0], seconds[0]), min(best[i][1], seconds[1]))
        for i, (label, *_rest) in enumerate(variants):
            wall, cpu = best[i]
            row = (name, label, wall, cpu, cpu / best[0][1], _max_err(outs[i], outs[0]))
            rows.append(row)
            print(_fmt(row), file=sys.stderr, flush=True)  # progress
    print(f"input {args.views}x3x{args.size[0]}x{args.size[1]}, threads {args.threads}")
    print(
        f"{'backbone':<20} {'variant':<26} {'wall s':>8} {'cpu s':>8} {'cpu ratio':>9} "
        f"{'max abs err':>12}"
    )
    for row in rows:
        print(_fmt(row))


def _fmt(row: tuple) -> str:
    name, label, wall, cpu, ratio, err = row
    return f"{name:<20} {label:<26} {wall:8.2f} {cpu:8.2f} {ratio:9.2f} {err:12.3g}"


if __name__ == "__main__":
    main()
