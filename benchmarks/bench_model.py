"""CropFormer / Mask2Former prediction on one image, per stage, ours and (when installed) the
official code side by side.

Usage:
  .venv/bin/python benchmarks/bench_model.py --presets cropformer_hornet_3x --threads 1
      [--impl ours official] [--variants fp32 bf16 int8 int8_backbone] [--alloc tuned default]
      [--image PATH | --size 800 1067 | --size 3000 4000] [--repeat 2] [--device cuda]
      [--official-python PY --cropformer-dir DIR] [--json results.jsonl] [--products-alone]
  .venv/bin/python benchmarks/bench_model.py --folder 4 --size 3000 4000 --presets ...
      (images per hour of ``run_predictions`` over a folder of photos, outputs written)

Every measured call runs in its own fresh process (the peak RSS belongs to it alone) and the
runs are interleaved (ours, official, ours, official, ...). The timed region is one
prediction call with the image already decoded: ``EntitySegmenter.predict_arrays([rgb])``
(views, normalise/pad, forward, tiled fusion, scores) for ours, the official demo predictor
(``CropFormerPredictor`` / detectron2 ``DefaultPredictor``) for the official code. Stages are
marked by wrapping the instances' ``backbone.forward``, the pixel decoder's forward and the
transformer decoder's forward: ``pre`` = before the backbone, ``post`` = after the decoder.

Per stage: wall s, CPU s (user + sys, getrusage), sys s, minor page faults, GFLOP
(``torch.utils.flop_counter`` on the meta device, same input size; a multiply-add = 2 FLOPs;
grid_sample, FFT and elementwise ops count 0) and the fraction of the fp32 floor = GFLOP /
(this machine's fp32 matmul rate at the same thread count, measured first; measured again after
the runs and printed, since a shared host's rate moves) / CPU s. Peak RSS
is the kernel's VmHWM, reset just before the call (libraries and weights included).

Weights: random (``torch.manual_seed(0)``), or ``--checkpoint`` (ours only: a checkpoint of the
preset, e.g. the oracle models of ../shared/oracle), unless ``--weights-dir`` holds the official
perturbed weights written by the official runner (``w_<preset>.pth``) and our conversion of
them (``ours_<preset>/``): then both implementations run the same weights and their outputs are
compared (query-id map pixels, scores). How to build the official environment:
docs/benchmarks.md ("Official code side by side").

``--products-alone`` adds a table: per stage, the forward's FLOP-counted calls (matrix products,
convolutions, attention) replayed alone at their own shapes (``products_alone``), their rate, and
the rest of the stage's CPU s (everything else: elementwise ops, copies, norms, FFTs, gathers).

The script runs unchanged on a GPU (``--device cuda``; CPU time is then host time and the
floor column is left empty).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRESETS_DEFAULT = ["cropformer_hornet_3x"]
STAGES = ("pre", "backbone", "pixel_decoder", "decoder", "post")


# ----------------------------------------------------------------------------- measurement kit
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    """Reset VmHWM (the kernel's peak RSS) so it measures only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class StageClock:
    """Ordered marks; ``mark(label)`` closes the open stage and opens ``label``. A stage entered
    several times (view chunks) accumulates."""

    def __init__(self, sync=None) -> None:
        self.marks: list[tuple[str, float, float, float, int, int]] = []
        self.sync = sync

    def mark(self, label: str) -> None:
        if self.sync is not None:
            self.sync()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        hwm = _status_kb("VmHWM:") * 1024
        self.marks.append((label, time.perf_counter(), ru.ru_utime, ru.ru_stime, ru.ru_minflt, hwm))

    def wrap(self, obj, name: str, label: str, after: str) -> None:
        orig = getattr(obj, name)

        def wrapper(*a, **k):
            self.mark(label)
            out = orig(*a, **k)
            self.mark(after)
            return out

        setattr(obj, name, wrapper)

    def table(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for a, b in zip(self.marks[:-1], self.marks[1:]):
            row = out.setdefault(
                a[0], {"wall_s": 0.0, "user_s": 0.0, "sys_s": 0.0, "minflt": 0, "peak_gb": 0.0}
            )
            row["peak_gb"] = max(row["peak_gb"], b[5] / 1e9)  # process peak when it ends
            row["wall_s"] += b[1] - a[1]
            row["user_s"] += b[2] - a[2]
            row["sys_s"] += b[3] - a[3]
            row["minflt"] += b[4] - a[4]
        for row in out.values():
            row["cpu_s"] = row["user_s"] + row["sys_s"]
        return out


def timed_call(fn, clock: StageClock) -> tuple[object, dict]:
    rss0 = _status_kb("VmRSS:") * 1024
    hwm = reset_peak()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    clock.mark("pre")
    out = fn()
    clock.mark("END")
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    stages = clock.table()
    stages.pop("gap", None)
    res = {
        "wall_s": clock.marks[-1][1] - clock.marks[0][1],
        "user_s": ru1.ru_utime - ru0.ru_utime,
        "sys_s": ru1.ru_stime - ru0.ru_stime,
        "minflt": ru1.ru_minflt - ru0.ru_minflt,
        "rss_before_gb": rss0 / 1e9,
        "peak_rss_gb": (_status_kb("VmHWM:") * 1024 if hwm else ru1.ru_maxrss * 1024) / 1e9,
        "stages": stages,
    }
    res["cpu_s"] = res["user_s"] + res["sys_s"]
    return out, res


def make_image(size: tuple[int, int]):
    """skimage's coffee photo (400x600) resized (PIL bicubic) and centre-cropped to ``size``
    (H, W), keeping its aspect ratio: a natural image at any resolution."""
    import numpy as np
    from PIL import Image
    from skimage import data

    h, w = size
    img = Image.fromarray(data.coffee())
    scale = max(h / img.height, w / img.width)
    sw, sh = round(img.width * scale), round(img.height * scale)
    img = img.resize((sw, sh), Image.BICUBIC)
    left, top = (sw - w) // 2, (sh - h) // 2
    return np.asarray(img.crop((left, top, left + w, top + h)).convert("RGB")).copy()


def load_rgb(args):
    if args.image:
        from entityseg_data.model.inference.images import as_rgb_array

        return as_rgb_array(args.image)[0]
    return make_image(tuple(args.size))


def matmul_rate(threads: int, device: str = "cpu", reps: int = 5) -> float:
    """Sustained fp32 matmul rate (2048^3, best of ``reps``) in GFLOP per CPU second (process
    CPU time, so it is the rate of one core even on a loaded machine; on a GPU per wall second)."""
    import torch

    torch.set_num_threads(threads)
    n = 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = a @ b
    best = float("inf")
    cuda = device.startswith("cuda")
    clock = time.perf_counter if cuda else time.process_time
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize()
        t0 = clock()
        torch.mm(a, b, out=c)
        if cuda:
            torch.cuda.synchronize()
        best = min(best, clock() - t0)
    return 2 * n**3 / best / 1e9


# ----------------------------------------------------------------------------- ours
def _precision(variant: str) -> dict:
    """Segmenter keyword for a variant; ``int8_backbone`` is measured here only (fp32
    segmenter, then the backbone's Linear layers quantized: see :func:`_ours_segmenter`)."""
    return {} if variant in ("fp32", "int8_backbone") else {"precision": variant}


def _ours_segmenter(args, preset: str, variant: str):
    import torch

    from entityseg_data.model.inference.predictor import EntitySegmenter

    conv = Path(args.weights_dir or "", f"ours_{preset}")
    if getattr(args, "checkpoint", None):  # e.g. an oracle model: weights.npz + its preset
        seg = EntitySegmenter.from_pretrained(
            args.checkpoint,
            preset=preset,
            device=args.device,
            score_mode="reference",
            **_precision(variant),
        )
    elif args.weights_dir and conv.is_dir():
        seg = EntitySegmenter.from_pretrained(
            str(conv), device=args.device, score_mode="reference", **_precision(variant)
        )
    else:
        from entityseg_data.model.loading import build_model
        from entityseg_data.model.presets import PRESETS

        torch.manual_seed(0)
        cfg = PRESETS[preset]
        model = build_model(cfg).eval().to(args.device)
        if getattr(args, "perturb", False):
            # the official init leaves HorNet's layer scales at 1e-6 (its blocks ~identity):
            # perturbed weights make every layer count, as in the oracle models
            model.load_state_dict(perturbed(model.state_dict()))
        seg = EntitySegmenter(model=model, config=cfg, device=args.device, **_precision(variant))
        seg = seg.with_options(score_mode="reference")
    if getattr(args, "tile_budget", None):
        seg = seg.with_options(tile_budget_mb=args.tile_budget)
    if variant == "int8_backbone":  # dynamic int8 Linear layers in the backbone only
        from entityseg_data.model.inference.predictor import quantize_linear_int8

        quantize_linear_int8(seg.model.backbone)
    return seg


def run_ours(args, preset: str, variant: str) -> dict:
    import numpy as np
    import torch

    from entityseg_data.model.runtime import tune_allocator

    if args.alloc == "tuned":
        alloc = tune_allocator()
    else:
        os.environ["ENTITYSEG_MALLOC"] = "default"
        alloc = tune_allocator()
    torch.set_num_threads(args.threads)
    seg = _ours_segmenter(args, preset, variant)
    rgb = load_rgb(args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    clock = StageClock(sync)
    model = seg.model
    for stage, module in stage_modules(model).items():
        clock.wrap(module, "forward", stage, "post" if stage == "decoder" else "gap")
    load = list(os.getloadavg())
    results, res = timed_call(lambda: seg.predict_arrays([rgb]), clock)
    r = results[0]
    res.update(
        impl="ours",
        preset=preset,
        variant=variant,
        alloc=f"{alloc.allocator}{'+tuned' if alloc.applied else ''}",
        threads=torch.get_num_threads(),
        image_hw=list(rgb.shape[:2]),
        entities=len(r),
        load_before=load,
        load_after=list(os.getloadavg()),
    )
    if args.save_output:
        np.savez_compressed(
            args.save_output,
            label_map=r.label_map,
            scores=r.scores,
            query_index=r.query_index,
        )
    return res


# ----------------------------------------------------------------------------- official
def _official_imports(cropformer_dir: str) -> None:
    """The official tree on sys.path, nothing edited. Two modules are stubbed: the compiled
    deformable-attention op (absent, so the official pure-PyTorch fallback runs, as in the
    oracle) and ``mmcv`` (imported by a dataset helper that inference never calls)."""
    sys.path.insert(0, cropformer_dir)
    sys.path.insert(0, os.path.join(cropformer_dir, "demo_cropformer"))
    sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")
    sys.modules["mmcv"] = types.ModuleType("mmcv")


def _official_predictor(args, preset: str):
    from detectron2.config import get_cfg
    from detectron2.engine.defaults import DefaultPredictor
    from detectron2.projects.deeplab import add_deeplab_config
    from mask2former import add_maskformer2_config
    from predictor import CropFormerPredictor

    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.merge_from_file(
        os.path.join(args.cropformer_dir, "configs/entityv2/entity_segmentation", preset + ".yaml")
    )
    cfg.merge_from_list(["MODEL.DEVICE", args.device, "MODEL.WEIGHTS", ""])
    cfg.freeze()
    if cfg.MODEL.META_ARCHITECTURE == "CropFormer":
        return CropFormerPredictor(cfg), True
    return DefaultPredictor(cfg), False


def perturbed(state_dict):
    """Random weights with non-trivial statistics: every float tensor + N(0, sigma), sigma =
    0.3 x its std (0.1 for near-constant tensors), generator seed 1234."""
    import torch

    g = torch.Generator().manual_seed(1234)
    out = {}
    for k, v in state_dict.items():
        if v.is_floating_point() and not k.endswith(("pixel_mean", "pixel_std")):
            vf = v.float()
            std = float(vf.std()) if v.numel() > 1 else 0.0
            v = (vf + (0.1 if std < 1e-3 else 0.3 * std) * torch.randn(v.shape, generator=g)).to(
                v.dtype
            )
        out[k] = v.contiguous()
    return out


def run_official(args, preset: str) -> dict:
    import numpy as np
    import torch

    _official_imports(args.cropformer_dir)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pred, is_crop = _official_predictor(args, preset)
    model = pred.model
    wpath = Path(args.weights_dir, f"w_{preset}.pth") if args.weights_dir else None
    if args.save_weights:
        torch.save({"model": perturbed(model.state_dict())}, args.save_weights)
        return {"saved": args.save_weights}
    if wpath is not None and wpath.exists():
        sd = torch.load(wpath, map_location="cpu", weights_only=True)["model"]
        model.load_state_dict(sd, strict=True)
        del sd
    rgb = load_rgb(args)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    clock = StageClock(sync)
    clock.wrap(model.backbone, "forward", "backbone", "gap")
    clock.wrap(model.sem_seg_head.pixel_decoder, "forward_features", "pixel_decoder", "gap")
    captured = {}
    orig = model.sem_seg_head.predictor.forward

    def dec(*a, **k):
        clock.mark("decoder")
        out = orig(*a, **k)
        clock.mark("post")
        captured["dec"] = out
        return out

    model.sem_seg_head.predictor.forward = dec
    load = list(os.getloadavg())
    out, res = timed_call(lambda: pred(bgr), clock)
    inst = out["instances"]
    res.update(
        impl="official",
        preset=preset,
        variant="fp32",
        alloc="glibc",
        threads=torch.get_num_threads(),
        image_hw=list(rgb.shape[:2]),
        entities=int((inst.scores > 0).sum()),
        load_before=load,
        load_after=list(os.getloadavg()),
    )
    if args.save_output:
        # per-pixel query index (official rows are queries sorted by descending class score)
        d = captured["dec"]
        logits = (d[1] if is_crop else d)["pred_logits"][0].float()
        cls = logits.softmax(-1)[:, 0]
        cand = torch.arange(cls.numel()) if is_crop else cls.topk(min(100, cls.numel())).indices
        rows = cand[torch.sort(cls[cand], stable=True).indices.flip(0)]
        qmap = np.zeros(rgb.shape[:2], np.int32)
        masks = inst.pred_masks.numpy() > 0.5
        for i in range(masks.shape[0]):
            qmap[masks[i]] = int(rows[i]) + 1
        qs = np.zeros(cls.numel(), np.float32)
        qs[rows.numpy()] = inst.scores.float().numpy()
        np.savez_compressed(args.save_output, qmap=qmap, query_scores=qs)
    return res


# ----------------------------------------------------------------------------- FLOPs
def stage_modules(model) -> dict:
    """Our model's measured stages in order: ``{"backbone", "pixel_decoder", "decoder"}`` ->
    the module whose forward is that stage."""
    return {
        "backbone": model.backbone,
        "pixel_decoder": model.sem_seg_head.pixel_decoder,
        "decoder": model.sem_seg_head.predictor,
    }


def meta_model(preset: str, hw: tuple[int, int]):
    """(config, model, input) on the meta device for an ``hw`` image: the views of the preset
    at their padded size, (1, V, 3, Hp, Wp)."""
    import torch

    from entityseg_data.model.inference.preprocess import padded_size
    from entityseg_data.model.inference.views import view_geometry
    from entityseg_data.model.loading import build_model
    from entityseg_data.model.presets import PRESETS

    cfg = PRESETS[preset]
    geo = view_geometry(
        *hw,
        min_size=cfg.views.min_size,
        max_size=cfg.views.max_size,
        side_ratio=cfg.views.crop_side_ratio,
        stride_ratio=cfg.views.crop_stride_ratio,
        crops=cfg.batch_level,
    )
    hp, wp = padded_size(geo.resized_hw, cfg.size_divisibility)
    model = build_model(cfg, device="meta").to_empty(device="meta").eval().requires_grad_(False)
    return cfg, model, torch.zeros(1, geo.num_views, 3, hp, wp, device="meta")


def stage_gflops(preset: str, hw: tuple[int, int]) -> dict[str, float]:
    """GFLOP per stage of one forward at the padded view size of an ``hw`` image (meta device,
    no memory, no time)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    _, model, x = meta_model(preset, hw)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, aux=False)
    counts = counter.get_flop_counts()

    def total(key: str) -> float:
        return sum(counts.get(key, {}).values()) / 1e9

    root = type(model).__name__
    return {
        "backbone": total(f"{root}.backbone"),
        "pixel_decoder": total(f"{root}.sem_seg_head.pixel_decoder"),
        "decoder": total(f"{root}.sem_seg_head.predictor"),
        "total": total("Global"),
    }


def products_alone(preset: str, hw: tuple[int, int], threads: int) -> dict[str, dict]:
    """CPU s per stage of the forward's FLOP-counted calls (matrix products, convolutions,
    attention: the ops ``FlopCounterMode`` counts) **run alone** on this machine at their own
    shapes: the forward is traced on the meta device (views one at a time, as the CPU predictor
    runs them), each distinct call (op, shapes, strides, arguments) is replayed on CPU with
    random inputs, best of 3 after one warm-up, times its count. The remainder of a stage's
    measured CPU s is everything else (elementwise ops, copies, norms, FFTs, gathers, softmax,
    Python); the products' own rate (stage GFLOP / products alone) says how far the model's
    shapes are from the 2048^3 matmul rate of the floor column."""
    import collections

    import torch
    from torch.utils import _pytree as pytree
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    from entityseg_data.model.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(threads)
    cfg, model, x = meta_model(preset, hw)
    current = ["other"]
    for name, mod in stage_modules(model).items():
        mod.register_forward_pre_hook(lambda *_, n=name: current.__setitem__(0, n))
        mod.register_forward_hook(lambda *_: current.__setitem__(0, "other"))

    def spec(x):
        if isinstance(x, torch.Tensor):
            return ("T", tuple(x.shape), tuple(x.stride()), x.dtype)
        return tuple(x) if isinstance(x, list) else x

    calls: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[tuple, tuple] = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func.overloadpacket in flop_registry:
                a, k = pytree.tree_map(spec, (args, kwargs))
                key = (str(func), repr(a), repr(k))
                calls[current[0]][key] += 1
                examples[key] = (func, args, kwargs)
            return func(*args, **kwargs)

    with torch.no_grad(), Record():
        model(x, aux=False, view_chunk=1, image_masks=not cfg.batch_level)

    def real(t):
        if not isinstance(t, torch.Tensor):
            return t
        # the storage the shape and strides reach (expanded inputs have stride 0), filled
        numel = 0 if 0 in t.shape else 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
        base = torch.empty(numel, dtype=t.dtype)
        base = base.normal_() if base.is_floating_point() else base.zero_()
        return base.as_strided(tuple(t.shape), tuple(t.stride()))

    seconds: dict[tuple, float] = {}
    result: dict[str, dict] = {}
    with torch.no_grad():
        for stage, counter in calls.items():
            total = 0.0
            for key, n in counter.items():
                if key not in seconds:
                    func, args, kwargs = examples[key]
                    ra, rk = pytree.tree_map(real, (args, kwargs))
                    func(*ra, **rk)
                    best = float("inf")
                    for _ in range(3):
                        t0 = time.process_time()
                        func(*ra, **rk)
                        best = min(best, time.process_time() - t0)
                    seconds[key] = best
                total += n * seconds[key]
            result[stage] = {
                "cpu_s": total,
                "calls": sum(counter.values()),
                "distinct": len(counter),
            }
    return result


def fmt_products(rows: list[dict], gflops: dict[str, dict], alone: dict) -> str:
    """Per stage: the FLOP-counted calls run alone (:func:`products_alone`) against the stage's
    measured CPU s (the fp32 row with the best total at that thread count)."""
    lines = [
        "| preset | threads | stage | GFLOP | products alone CPU s | their rate GFLOP/s | "
        "stage CPU s | products alone / stage | rest CPU s |",
        "|" + "---|" * 9,
    ]
    for (preset, t), stages in alone.items():
        cands = [
            r
            for r in rows
            if r["preset"] == preset
            and r["threads"] == t
            and r["impl"] == "ours"
            and r["variant"] == "fp32"
        ]
        best = min(cands, key=lambda r: r["cpu_s"]) if cands else None
        g = gflops.get(preset, {})
        for stage in ("backbone", "pixel_decoder", "decoder", "total"):
            if stage == "total":
                p = sum(v["cpu_s"] for v in stages.values())
                measured = best["cpu_s"] if best else None
            else:
                if stage not in stages:
                    continue
                p = stages[stage]["cpu_s"]
                st = best["stages"].get(stage) if best else None
                measured = st["cpu_s"] if st else None
            gf = g.get(stage)
            rate = f"{gf / p:.0f}" if gf and p else ""
            frac = f"{100 * p / measured:.0f} %" if measured else ""
            rest = f"{measured - p:.2f}" if measured else ""
            meas = f"{measured:.2f}" if measured else ""
            gtxt = f"{gf:.0f}" if gf else ""
            lines.append(
                f"| {preset} | {t} | {stage} | {gtxt} | {p:.2f} | {rate} | "
                f"{meas} | {frac} | {rest} |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- folder mode
def run_folder(args, preset: str, variant: str) -> dict:
    """Images per hour of ``run_predictions`` (decode, predict, write png + json) over
    ``args.folder`` photos of ``args.size``."""
    import torch
    from PIL import Image

    from entityseg_data.model.inference.batch import Job, run_predictions
    from entityseg_data.model.inference.inputs import InputItem
    from entityseg_data.model.runtime import release_memory, tune_allocator

    if args.alloc != "tuned":
        os.environ["ENTITYSEG_MALLOC"] = "default"
    tune_allocator()
    torch.set_num_threads(args.threads)
    seg = _ours_segmenter(args, preset, variant)
    tmp = Path(tempfile.mkdtemp(prefix="bench_folder_"))
    base = make_image(tuple(args.size))
    jobs = []
    for i in range(args.folder):
        p = tmp / "in" / f"img{i:03d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(base[:, ::-1] if i % 2 else base).save(p, quality=92)
        jobs.append(Job(InputItem(p, p.parent)))
    # the photo made for the files and its encoder's buffers are not part of a folder run (a
    # user's `predict` process starts from the loaded model): freed and given back first
    del base
    release_memory()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    hwm = reset_peak()
    load = list(os.getloadavg())
    summary = run_predictions(
        seg,
        jobs,
        output=str(tmp / "out"),
        formats=("png", "json"),
        prefetch=args.prefetch,
        release_memory_between=not args.keep_heap,
    )
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
    return {
        "impl": "ours-folder",
        "preset": preset,
        "variant": variant,
        "threads": args.threads,
        "prefetch": args.prefetch,
        "keep_heap": bool(args.keep_heap),
        "images": summary.done,
        "image_hw": list(args.size),
        "wall_s": summary.seconds,
        "cpu_s": cpu,
        "sys_s": ru1.ru_stime - ru0.ru_stime,
        "minflt": ru1.ru_minflt - ru0.ru_minflt,
        "images_per_hour": 3600 * summary.done / summary.seconds if summary.seconds else 0.0,
        "peak_rss_gb": (_status_kb("VmHWM:") * 1024 if hwm else ru1.ru_maxrss * 1024) / 1e9,
        "load_before": load,
        "load_after": list(os.getloadavg()),
    }


# ----------------------------------------------------------------------------- driver
def _child(args, extra: list[str], python: str | None = None, env: dict | None = None) -> dict:
    cmd = [python or sys.executable, str(Path(__file__).resolve()), *extra]
    for flag in (
        "threads",
        "device",
        "alloc",
        "cropformer_dir",
        "weights_dir",
        "image",
        "checkpoint",
        "tile_budget",
    ):
        if flag == "threads" and "--threads" in extra:
            continue
        val = getattr(args, flag)
        if val is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(val)]
    cmd += ["--size", *map(str, args.size)]
    if getattr(args, "perturb", False):
        cmd.append("--perturb")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_outputs(ours_npz: str, official_npz: str) -> dict:
    """Query-id map differences and score differences of the same weights in both codes."""
    import numpy as np

    a = np.load(ours_npz)
    b = np.load(official_npz)
    lut = np.zeros(len(a["scores"]) + 1, np.int32)
    lut[1:] = a["query_index"] + 1
    q_ours = lut[a["label_map"]]
    q_off = b["qmap"]
    qs = np.zeros_like(b["query_scores"])
    qs[a["query_index"]] = a["scores"]
    return {
        "differing_pixels": int((q_ours != q_off).sum()),
        "pixels": int(q_off.size),
        "max_score_diff": float(np.abs(qs - b["query_scores"]).max()),
    }


def agreement_with_fp32(fp32_npz: str, other_npz: str) -> dict:
    """Agreement of a faster variant's output with the fp32 output of the same weights and
    image: per fp32 entity the best mask IoU with any variant entity (mean, median, min,
    share >= 0.9), and the class-agnostic mask AP^e (this project's COCO evaluator) of the
    variant's entities and scores with the fp32 entities as ground truth. Agreement on random
    weights says nothing about accuracy with trained weights."""
    import numpy as np

    from entityseg_data.evaluation.evaluator import Evaluator

    a = np.load(fp32_npz)
    b = np.load(other_npz)
    gt, dt = a["label_map"].astype(np.int64), b["label_map"].astype(np.int64)
    ng, nd = int(gt.max()), int(dt.max())
    inter = np.bincount((gt * (nd + 1) + dt).ravel(), minlength=(ng + 1) * (nd + 1))
    inter = inter.reshape(ng + 1, nd + 1)[1:, 1:].astype(np.float64)
    area_g = np.bincount(gt.ravel(), minlength=ng + 1)[1:].astype(np.float64)
    area_d = np.bincount(dt.ravel(), minlength=nd + 1)[1:].astype(np.float64)
    union = area_g[:, None] + area_d[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    best = iou.max(1) if nd else np.zeros(ng)
    ev = Evaluator(boundary=False)
    scores = np.zeros(nd + 1)
    scores[1:] = b["scores"][:nd]
    ev.process({"image_id": 0, "label_map": gt}, {"label_map": dt, "scores": scores})
    ap = ev.evaluate()["segm"]
    return {
        "entities_fp32": ng,
        "entities": nd,
        "iou_mean": float(best.mean()) if ng else None,
        "iou_median": float(np.median(best)) if ng else None,
        "iou_min": float(best.min()) if ng else None,
        "iou_ge_0.9": float((best >= 0.9).mean()) if ng else None,
        "AP_e": ap["AP"],
        "AP50_e": ap["AP50"],
        "AP75_e": ap["AP75"],
    }


def fmt_table(rows: list[dict], gflops: dict[str, dict], rates: dict[int, float | None]) -> str:
    """Per-stage table; the floor of a row uses the matmul rate at the row's thread count."""
    head = (
        "| preset | impl | variant | alloc | threads | stage | wall s | CPU s | sys s | "
        "minor faults | GFLOP | floor s | of floor | peak RSS GB (at stage end) | load |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        g = gflops.get(r["preset"], {})
        rate = rates.get(r["threads"])
        for stage in (*STAGES, "total"):
            st = r if stage == "total" else r["stages"].get(stage)
            if st is None:
                continue
            gf = g.get(stage) if stage != "total" else g.get("total")
            floor = gf / rate if (gf and rate) else None
            frac = f"{100 * floor / st['cpu_s']:.0f} %" if floor and st["cpu_s"] else ""
            peak = f"{r['peak_rss_gb'] if stage == 'total' else st.get('peak_gb', 0.0):.2f}"
            lines.append(
                f"| {r['preset']} | {r['impl']} | {r['variant']} | {r['alloc']} | "
                f"{r['threads']} | {stage} | "
                f"{st['wall_s']:.2f} | {st['cpu_s']:.2f} | {st['sys_s']:.2f} | "
                f"{st['minflt'] / 1e6:.2f} M | {'' if gf is None else f'{gf:.0f}'} | "
                f"{'' if floor is None else f'{floor:.1f}'} | {frac} | "
                f"{peak} | {r['load_before'][0]:.1f} |"
            )
    return "\n".join(lines)


def fmt_scaling(rows: list[dict], thread_counts: list[int]) -> str:
    """Per-stage wall time at each thread count (the repeat with the best total) and the
    speed-up over the smallest count (wall at the smallest / wall at that count), stage by
    stage."""
    thread_counts = sorted(thread_counts)
    base = thread_counts[0]
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        key = (r["preset"], r["impl"], r["variant"])
        best = groups.setdefault(key, {}).get(r["threads"])
        if best is None or r["wall_s"] < best["wall_s"]:
            groups[key][r["threads"]] = r
    cols = " | ".join(f"wall s at {t}" for t in thread_counts)
    ratios = " | ".join(f"speed-up {base}->{t}" for t in thread_counts[1:])
    lines = [
        f"| preset | impl | variant | stage | {cols} | {ratios} | load at {base} / others |",
        "|" + "---|" * (4 + 2 * len(thread_counts)),
    ]
    for (preset, impl, variant), by_t in groups.items():
        if base not in by_t:
            continue
        for stage in (*STAGES, "total"):
            walls = []
            for t in thread_counts:
                r = by_t.get(t)
                st = None if r is None else (r if stage == "total" else r["stages"].get(stage))
                walls.append(None if st is None else st["wall_s"])
            if walls[0] is None:
                continue
            loads = " / ".join(
                f"{by_t[t]['load_before'][0]:.1f}" if t in by_t else "-" for t in thread_counts
            )
            lines.append(
                f"| {preset} | {impl} | {variant} | {stage} | "
                + " | ".join("" if w is None else f"{w:.2f}" for w in walls)
                + " | "
                + " | ".join(
                    "" if (w is None or not w) else f"{walls[0] / w:.2f}x" for w in walls[1:]
                )
                + f" | {loads} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=PRESETS_DEFAULT)
    ap.add_argument("--impl", nargs="+", default=["ours", "official"])
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["fp32"],
        help="fp32, bf16, fp16, int8 (the --precision options), int8_backbone (bench only)",
    )
    ap.add_argument("--alloc", default="tuned", choices=["tuned", "default"])
    ap.add_argument("--size", type=int, nargs=2, default=(800, 1067), metavar=("H", "W"))
    ap.add_argument("--image", default=None)
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="thread counts; with two or more, a per-stage scaling table (wall ratios) follows",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--weights-dir", default=None)
    ap.add_argument(
        "--checkpoint",
        default=None,
        help="ours only: this checkpoint (file or converted folder) of --presets instead of "
        "random weights, e.g. an oracle model: /work/shared/oracle/tiny_hornet/weights.npz",
    )
    ap.add_argument("--official-python", default=os.environ.get("OFFICIAL_PYTHON"))
    ap.add_argument("--cropformer-dir", default=os.environ.get("CROPFORMER_DIR"))
    ap.add_argument("--folder", type=int, default=0, help="folder mode: N images")
    ap.add_argument(
        "--perturb",
        action="store_true",
        help="ours, random weights: add the oracle models' noise to every tensor (perturbed())",
    )
    ap.add_argument(
        "--tile-budget",
        type=float,
        default=None,
        help="ours: the fusion's tile_budget_mb (default: the segmenter's)",
    )
    ap.add_argument("--prefetch", type=int, default=1, help="folder mode: images decoded ahead")
    ap.add_argument(
        "--keep-heap",
        action="store_true",
        help="folder mode: do not release the heap's free pages between images",
    )
    ap.add_argument("--json", default=None, help="append every result to this JSON-lines file")
    ap.add_argument(
        "--products-alone",
        action="store_true",
        help="also time the forward's matrix products, convolutions and attention calls alone "
        "at their shapes (per stage; ~1 min per thread count)",
    )
    # child modes
    ap.add_argument("--one", nargs=3, metavar=("IMPL", "PRESET", "VARIANT"), help=argparse.SUPPRESS)
    ap.add_argument("--gflops", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rate", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--products", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save-output", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save-weights", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    thread_counts = args.threads
    args.threads = thread_counts[0]  # a child runs at one count

    if args.one:
        impl, preset, variant = args.one
        if impl == "official":
            res = run_official(args, preset)
        elif impl == "folder":
            res = run_folder(args, preset, variant)
        else:
            res = run_ours(args, preset, variant)
        print(json.dumps(res))
        return
    if args.gflops:
        print(json.dumps(stage_gflops(args.gflops, tuple(args.size))))
        return
    if args.rate:
        print(json.dumps({"gflops": matmul_rate(args.threads, args.device)}))
        return
    if args.products:
        print(json.dumps(products_alone(args.products, tuple(args.size), args.threads)))
        return

    official = (
        "official" in args.impl and args.official_python and args.cropformer_dir and not args.folder
    )
    if "official" in args.impl and not official and not args.folder:
        print("official code not configured (--official-python/--cropformer-dir): ours only")
    rates: dict[int, float | None] = {}
    for t in thread_counts:
        cuda = args.device.startswith("cuda")
        rates[t] = None if cuda else _child(args, ["--rate", "--threads", str(t)])["gflops"]
        rate = rates[t]
        print(f"fp32 matmul rate at {t} thread(s): {rate and round(rate, 1)} GFLOP per CPU s")
    rows: list[dict] = []
    gflops: dict[str, dict] = {}
    alone: dict[tuple[str, int], dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_model_"))
    for preset in args.presets:
        if args.folder:
            for variant in args.variants:
                for t in thread_counts:
                    r = _child(
                        args,
                        [
                            "--one",
                            "folder",
                            preset,
                            variant,
                            "--folder",
                            str(args.folder),
                            "--prefetch",
                            str(args.prefetch),
                            "--threads",
                            str(t),
                            *(["--keep-heap"] if args.keep_heap else []),
                        ],
                    )
                    print(json.dumps(r), flush=True)
                    rows.append(r)
            continue
        gflops[preset] = _child(args, ["--gflops", preset])
        if args.products_alone and not args.device.startswith("cuda"):
            for t in thread_counts:
                alone[(preset, t)] = _child(args, ["--products", preset, "--threads", str(t)])
                print(f"{preset}, {t} thread(s), FLOP-counted calls alone: {alone[(preset, t)]}")
        if official and args.weights_dir and not Path(args.weights_dir, f"w_{preset}.pth").exists():
            _prepare_weights(args, preset)
        for rep in range(args.repeat):
            for t in thread_counts:
                tt = ["--threads", str(t)]
                for variant in args.variants:
                    out_ours = tmp / f"{preset}_{variant}_{rep}_{t}_ours.npz"
                    r = _child(
                        args,
                        ["--one", "ours", preset, variant, "--save-output", str(out_ours), *tt],
                    )
                    if variant != "fp32" and "fp32" in args.variants:
                        r["agreement_fp32"] = agreement_with_fp32(
                            str(tmp / f"{preset}_fp32_{rep}_{t}_ours.npz"), str(out_ours)
                        )
                    rows.append(r)
                    print(json.dumps(r), flush=True)
                if official:
                    out_off = tmp / f"{preset}_{rep}_{t}_official.npz"
                    r = _child(
                        args,
                        ["--one", "official", preset, "fp32", "--save-output", str(out_off), *tt],
                        python=args.official_python,
                    )
                    if args.weights_dir and "fp32" in args.variants:
                        r["agreement"] = compare_outputs(
                            str(tmp / f"{preset}_fp32_{rep}_{t}_ours.npz"), str(out_off)
                        )
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    # the rate again after the runs: on a shared host it moves within the hour, and the floor
    # fractions move with it (a fraction against the "after" rate = the table's x before/after)
    rates_after: dict[int, float | None] = {}
    if not args.folder and not args.device.startswith("cuda"):
        for t in thread_counts:
            rates_after[t] = after = _child(args, ["--rate", "--threads", str(t)])["gflops"]
            before = rates[t]
            print(
                f"fp32 matmul rate at {t} thread(s) after the runs: {after:.1f} GFLOP per CPU s "
                f"(before: {before:.1f}; fractions of the floor against it: x{before / after:.2f})"
            )
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                rec = {
                    **r,
                    "gflops": gflops.get(r["preset"]),
                    "rate": rates.get(r["threads"]),
                    "rate_after": rates_after.get(r["threads"]),
                }
                f.write(json.dumps(rec) + "\n")
    if args.folder:
        print(
            "\n| preset | variant | threads | prefetch | heap | images | image | wall s | CPU s | "
            "images/hour | peak RSS GB | load |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            heap = "kept" if r.get("keep_heap") else "released"
            print(
                f"| {r['preset']} | {r['variant']} | {r['threads']} | {r['prefetch']} | {heap} | "
                f"{r['images']} | {r['image_hw'][0]}x{r['image_hw'][1]} | {r['wall_s']:.1f} | "
                f"{r['cpu_s']:.1f} | {r['images_per_hour']:.1f} | {r['peak_rss_gb']:.2f} | "
                f"{r['load_before'][0]:.1f} |"
            )
        return
    print()
    print(fmt_table(rows, gflops, rates))
    if alone:
        print()
        print(fmt_products(rows, gflops, alone))
    for r in rows:
        if "agreement" in r:
            print(f"{r['preset']}: ours vs official: {r['agreement']}")
        if "agreement_fp32" in r:
            print(f"{r['preset']} {r['variant']} vs fp32: {r['agreement_fp32']}")
    if len(thread_counts) > 1:
        print()
        print(fmt_scaling(rows, thread_counts))


def _prepare_weights(args, preset: str) -> None:
    """Official perturbed weights -> ``w_<preset>.pth`` and our conversion ``ours_<preset>/``."""
    wdir = Path(args.weights_dir)
    wdir.mkdir(parents=True, exist_ok=True)
    w = wdir / f"w_{preset}.pth"
    _child(
        args,
        ["--one", "official", preset, "fp32", "--save-weights", str(w)],
        python=args.official_python,
    )
    from entityseg_data.model.convert import convert_file

    convert_file(str(w), str(wdir / f"ours_{preset}"), preset=preset)


if __name__ == "__main__":
    main()
