"""Whole predictions in one process with the inference fast paths on, then off, alternating.

Single fresh-process runs move by +-1.5 CPU s on a shared host (docs/benchmarks.md, issue 17),
more than most single changes; comparing in one process, old and new interleaved after a
warm-up, is what the issue-17 sections measure. The fast paths that are not bitwise the plain
computation each have a module-level switch; turning them all off gives the computation before
them (session 14's start, ccd7476):

- ``hornet._filter_by_products``: HorNet's global filter as matrix products (spectral.py)
- ``hornet._fold_gate_scale``: the gnconv scale folded into the gate products
- ``transformer._head_major_inputs``: the decoder attention's keys/values copied head-major
- ``decoder._bias_mask``: the attention mask made as a float 0 / -inf mask in place
- ``pixel_decoder._ffn_folded``: the encoder FFN's biases folded
- ``ms_deform_attn._sums_into``: the encoder's skip connection summed into output_proj
- ``hornet._packed_products``: HorNet's 1x1 products with <= 384 inputs as oneDNN calls with
  packed weights, the bias (and the MLP's GELU) in the epilogue
- ``pixel_decoder._packed_ffn``: the encoder FFN as two oneDNN calls (ReLU, biases, residual in
  the epilogues)
- ``ms_deform_attn._packed_projections``: the deformable attention's projections likewise

(the three packed paths are opt-in: they run only with ``ENTITYSEG_ONEDNN_PACKED=1`` in the
environment; without it their "on" is their "off")

Usage::

    PYTHONPATH=src python benchmarks/bench_fast_paths.py --preset cropformer_hornet_3x \\
        --size 800 1067 --rounds 3 [--floor-gflop 8028] [--only NAME ...]

Prints one row per run (CPU s per stage, the 2048^3 matmul rate measured after it), then the
medians, their ratio and, with ``--floor-gflop``, the fraction of the fp32 floor
(GFLOP / matmul rate / CPU s) at the median matmul rate.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_model as bm

#: (module, switch, the switch's "off" replacement)
SWITCHES = [
    ("entityseg_data.model.backbones.hornet", "_filter_by_products", lambda x: False),
    ("entityseg_data.model.backbones.hornet", "_fold_gate_scale", lambda: False),
    ("entityseg_data.model.layers.transformer", "_head_major_inputs", lambda x: False),
    ("entityseg_data.model.decoder", "_bias_mask", lambda x: False),
    ("entityseg_data.model.pixel_decoder", "_ffn_folded", lambda layer, src: False),
    ("entityseg_data.model.layers.ms_deform_attn", "_sums_into", lambda p, r, x: False),
    ("entityseg_data.model.backbones.hornet", "_packed_products", lambda x: False),
    ("entityseg_data.model.pixel_decoder", "_packed_ffn", lambda src: False),
    ("entityseg_data.model.layers.ms_deform_attn", "_packed_projections", lambda p, x: False),
]
STAGES = ("pre", "backbone", "pixel_decoder", "decoder", "post")


class Switches:
    """The fast paths' switches, saved once, set all on or all off."""

    def __init__(self, only: list[str] | None = None) -> None:
        self._on = []
        for mod, name, off in SWITCHES:
            if only and name not in only:
                continue
            module = importlib.import_module(mod)
            self._on.append((module, name, getattr(module, name), off))

    def set(self, on: bool) -> None:
        for module, name, fast, off in self._on:
            setattr(module, name, fast if on else off)


def random_weight_segmenter(preset: str, size: tuple[int, int]):
    """(a CPU fp32 segmenter of ``preset`` with random weights, the benchmark image of
    ``size`` (H, W) as an RGB array), as bench_model.py builds them."""
    args = types.SimpleNamespace(
        weights_dir=None,
        device="cpu",
        checkpoint=None,
        perturb=False,
        tile_budget=None,
        image=None,
        size=list(size),
    )
    return bm._ours_segmenter(args, preset, "fp32"), bm.load_rgb(args)


def compare(
    preset: str,
    size: tuple[int, int],
    rounds: int,
    threads: int = 1,
    only: list[str] | None = None,
) -> dict[str, object]:
    """Run ``rounds`` pairs (after one warm-up of each) and return the per-run records
    ``{"runs": [(name, cpu_s, {stage: cpu_s}, matmul)], "differing_pixels": int}``."""
    import numpy as np
    import torch

    from entityseg_data.model.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(threads)
    seg, rgb = random_weight_segmenter(preset, size)
    clock = bm.StageClock(None)
    for stage, module in bm.stage_modules(seg.model).items():
        clock.wrap(module, "forward", stage, "post" if stage == "decoder" else "gap")
    switches = Switches(only)

    def run(name: str):
        switches.set(name == "on")
        clock.marks = []
        out, res = bm.timed_call(lambda: seg.predict_arrays([rgb]), clock)
        return out, res

    try:
        on, _ = run("on")
        off, _ = run("off")
        differing = int(np.count_nonzero(on[0].label_map != off[0].label_map))
        runs = []
        for r in range(rounds):
            for name in ("off", "on") if r % 2 else ("on", "off"):
                _, res = run(name)
                stages = {k: float(v["cpu_s"]) for k, v in res["stages"].items() if k in STAGES}
                runs.append((name, float(res["cpu_s"]), stages, bm.matmul_rate(threads)))
                torch.set_num_threads(threads)
    finally:
        switches.set(True)
    return {"runs": runs, "differing_pixels": differing}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cropformer_hornet_3x")
    ap.add_argument("--size", type=int, nargs=2, default=[800, 1067])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--floor-gflop", type=float, default=None)
    ap.add_argument(
        "--only",
        action="append",
        choices=[name for _, name, _ in SWITCHES],
        help="flip only this switch (repeatable; default: all of them)",
    )
    a = ap.parse_args(argv)
    res = compare(a.preset, (a.size[0], a.size[1]), a.rounds, a.threads, a.only)
    runs = res["runs"]
    assert isinstance(runs, list)
    print(f"label pixels differing, fast paths on vs off: {res['differing_pixels']}")
    print()
    print("| fast paths | CPU s | " + " | ".join(STAGES) + " | matmul GFLOP/s after |")
    print("|---|---:|" + "---:|" * len(STAGES) + "---:|")
    for name, cpu, stages, rate in runs:
        cells = " | ".join(f"{stages.get(s, 0.0):.2f}" for s in STAGES)
        print(f"| {name} | {cpu:.2f} | {cells} | {rate:.1f} |")
    med = {n: statistics.median(c for m, c, _, _ in runs if m == n) for n in ("on", "off")}
    rate = statistics.median(r for *_, r in runs)
    print()
    ratio = med["on"] / med["off"]
    print(f"median CPU s: on {med['on']:.2f}, off {med['off']:.2f}, on/off {ratio:.3f}")
    if a.floor_gflop:
        floor = a.floor_gflop / rate
        print(
            f"fp32 floor at {rate:.1f} GFLOP/s: {floor:.2f} CPU s; of floor: "
            f"on {floor / med['on']:.1%}, off {floor / med['off']:.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
