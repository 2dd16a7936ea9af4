"""Where a prediction's memory goes: live heap, heap size and resident memory per stage.

The peak RSS of a prediction with the tuned glibc allocator (``runtime.tune_allocator``) is not
what is alive at its worst moment: freed blocks stay in the heap, and PyTorch's aligned
allocations fragment it (glibc 2.36, see ``entityseg_data.model.runtime``), so the heap grows
past the live data. This script samples glibc's ``mallinfo2`` every few milliseconds from a
thread during one prediction and reports, per stage (backbone, pixel decoder, decoder, the
post-processing after it):

- ``live GB``: the most bytes in use (``uordblks``);
- ``heap GB``: the largest heap (``arena``: live + free blocks kept);
- ``RSS GB``: the largest resident set (``/proc/self/statm``).

``RSS - heap`` is what is not in the malloc heap (libraries, Python's own arenas: ~0.43 GB
with this torch build); ``heap - live`` is fragmentation. Only glibc >= 2.33 (``mallinfo2``).
The sampler writes into a preallocated array (no allocation of its own while it runs), but its
thread still changes the timing, so a single run's heap figures move by ~0.1 GB; with more than
one torch thread the allocation order itself varies between runs. Compare several runs.

Usage::

    PYTHONPATH=src python benchmarks/bench_heap.py --preset cropformer_hornet_3x \\
        --size 800 1067 [--threads 1] [--off NAME ...] [--warm-up]

``--off NAME``: a fast-path switch of ``bench_fast_paths.SWITCHES`` turned off for the run.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fast_paths as bfp
import bench_model as bm

#: "pre": before the first backbone call; a stage lasts until the next one starts
STAGES = ("pre", "backbone", "pixel_decoder", "decoder", "post")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo():
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        raise SystemExit("bench_heap needs glibc >= 2.33 (mallinfo2)")
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def measure(
    preset: str,
    size: tuple[int, int],
    threads: int = 1,
    off: list[str] | None = None,
    warm_up: bool = False,
    interval_s: float = 0.005,
) -> dict[str, dict[str, float]]:
    """One prediction of a random-weight ``preset`` on a ``size`` image; returns
    ``{stage: {"live_gb", "heap_gb", "rss_gb"}}`` (maxima over the stage's samples) plus
    ``"before"`` (at the start) and ``"total"``. ``warm_up``: one prediction first."""
    import numpy as np
    import torch

    from entityseg_data.model.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(threads)
    mallinfo = _mallinfo()
    switches = bfp.Switches(off) if off else None
    if switches is not None:
        switches.set(False)
    try:
        seg, rgb = bfp.random_weight_segmenter(preset, size)
        if warm_up:
            seg.predict_arrays([rgb])
        current = [0]  # index into STAGES of the running stage
        samples = np.zeros((1 << 20, 4))  # stage, live, heap, rss: no allocation while sampling
        count = [0]
        lock = threading.Lock()

        def record() -> None:
            m = mallinfo()
            with lock:
                if count[0] < len(samples):
                    samples[count[0]] = (current[0], m.uordblks, m.arena, _rss_bytes())
                    count[0] += 1

        for stage, module in bm.stage_modules(seg.model).items():
            forward = module.forward
            index = STAGES.index(stage)

            def wrapped(*a, _f=forward, _i=index, **k):
                # a sample at each stage's start and end (every stage has some, however
                # short), the thread's in between
                current[0] = _i
                record()
                out = _f(*a, **k)
                record()
                if _i == STAGES.index("decoder"):
                    current[0] = _i + 1  # the post-processing
                return out

            module.forward = wrapped
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                record()
                time.sleep(interval_s)

        m0 = mallinfo()
        before = {
            "live_gb": m0.uordblks / 1e9,
            "heap_gb": m0.arena / 1e9,
            "rss_gb": _rss_bytes() / 1e9,
        }
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            record()  # "pre"
            seg.predict_arrays([rgb])
            record()
        finally:
            stop.set()
            thread.join()
    finally:
        if switches is not None:
            switches.set(True)

    def maxima(sel) -> dict[str, float]:
        live, heap, rss = (float(sel[:, j].max()) / 1e9 for j in (1, 2, 3))
        return {"live_gb": live, "heap_gb": heap, "rss_gb": rss}

    rows: dict[str, dict[str, float]] = {"before": before}
    got = samples[: count[0]]
    for i, stage in enumerate(STAGES):
        sel = got[got[:, 0] == i]
        if len(sel):
            rows[stage] = maxima(sel)
    if len(got):
        rows["total"] = maxima(got)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cropformer_hornet_3x")
    ap.add_argument("--size", type=int, nargs=2, default=[800, 1067])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--off",
        action="append",
        choices=[name for _, name, _ in bfp.SWITCHES],
        help="turn this fast path off for the run (repeatable)",
    )
    ap.add_argument("--warm-up", action="store_true", help="one prediction before the measured one")
    a = ap.parse_args(argv)
    rows = measure(a.preset, (a.size[0], a.size[1]), a.threads, a.off, a.warm_up)
    print(f"{a.preset} {a.size[0]}x{a.size[1]}, {a.threads} thread(s), off: {a.off or '-'}")
    print()
    print("| stage | live GB | heap GB | RSS GB | heap - live GB |")
    print("|---|---:|---:|---:|---:|")
    for stage, r in rows.items():
        live, heap, rss = r["live_gb"], r["heap_gb"], r["rss_gb"]
        print(f"| {stage} | {live:.2f} | {heap:.2f} | {rss:.2f} | {heap - live:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
