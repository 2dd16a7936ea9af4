"""Backbone CPU fast paths: time and max abs error of each variant vs the official-ops baseline.

Usage: .venv/bin/python benchmarks/backbones.py [--size 800 1088] [--views 1] [--threads 2]
       [--backbones swin_tiny hornet_large_gf] [--repeat 2]

Random weights (seeded), one forward under ``torch.inference_mode``; the baseline of every row
group is the literal official computation in fp32 (Swin: explicit softmax attention). Variants:
``sdpa`` (Swin fused attention), ``channels_last`` (NHWC memory format for the convolutions),
``bf16`` (``torch.autocast("cpu", dtype=torch.bfloat16)``; its error is reported separately and it
is not a parity path). Prints one table; ratios are time / baseline time.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from entityseg_data.model.backbones import BACKBONE_PRESETS, build_backbone


def _run(model, x, *, channels_last: bool, bf16: bool, repeat: int):
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        best = min(best, time.perf_counter() - t0)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return best, {k: v.float() for k, v in out.items()}


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
        base_cfg = dataclasses.replace(cfg, fused_attention=False) if name.startswith("swin") else cfg
        torch.manual_seed(0)
        model = build_backbone(base_cfg).eval()
        variants = [("official ops (baseline)", model, False, False)]
        if name.startswith("swin"):
            fused = build_backbone(cfg).eval()
            fused.load_state_dict(model.state_dict())
            variants.append(("sdpa", fused, False, False))
            variants.append(("sdpa + channels_last", fused, True, False))
            variants.append(("sdpa + bf16 autocast", fused, False, True))
        else:
            variants.append(("channels_last", model, True, False))
            variants.append(("bf16 autocast", model, False, True))
        base_t, base_out = None, None
        for label, m, cl, bf in variants:
            t, out = _run(m, x, channels_last=cl, bf16=bf, repeat=args.repeat)
            if base_out is None:
                base_t, base_out = t, out
            rows.append((name, label, t, t / base_t, _max_err(out, base_out)))
    print(f"input {args.views}x3x{args.size[0]}x{args.size[1]}, threads {args.threads}")
    print(f"{'backbone':<20} {'variant':<26} {'seconds':>8} {'ratio':>6} {'max abs err':>12}")
    for name, label, t, r, e in rows:
        print(f"{name:<20} {label:<26} {t:8.2f} {r:6.2f} {e:12.3g}")


if __name__ == "__main__":
    main()
