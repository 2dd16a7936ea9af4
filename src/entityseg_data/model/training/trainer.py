"""The training loop: AMP, gradient accumulation, DDP, clipping, poly schedule, checkpoints,
exact resume, periodic evaluation, JSONL (+ TensorBoard) metrics.

One optimizer step consumes ``ims_per_batch`` images = world_size x grad_accum micro-batches of
``micro_batch`` images. Stream positions, hence augmentations and the loss's random points, are
fixed by the iteration number, so resuming from a checkpoint replays exactly the samples (and, on
the same hardware and thread count, the losses) an uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from entityseg_data.config import to_dict
from entityseg_data.errors import CheckpointError, ConfigError
from entityseg_data.io import atomic_write_text
from entityseg_data.model.config import ModelConfig
from entityseg_data.model.runtime import cpu_bf16_native
from entityseg_data.model.training.checkpoint import (
    export_model,
    find_last_checkpoint,
    init_weights,
    load_training_checkpoint,
    save_training_checkpoint,
    set_rng_state,
    unwrap,
)
from entityseg_data.model.training.config import TrainConfig
from entityseg_data.model.training.data import (
    Record,
    StreamSampler,
    TrainDataset,
    build_mapper,
    collate,
    records_from_config,
)
from entityseg_data.model.training.distributed import DistInfo, barrier, pick_device
from entityseg_data.model.training.losses import SetCriterion, total_loss
from entityseg_data.model.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)
_null = contextlib.nullcontext

EvalFn = Callable[[nn.Module, int], dict[str, float]]
StepHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a run produced: final iteration, the exported model folder (rank 0), metrics file,
    the per-step total losses of THIS process's run (index = iteration - 1 - start)."""

    iteration: int
    start_iteration: int
    model_dir: Path | None
    metrics_path: Path
    losses: list[float] = field(default_factory=list)
    eval_results: dict[int, dict[str, float]] = field(default_factory=dict)


def resolve_amp(mode: str, device: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None = fp32)."""
    if mode == "fp32":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.startswith("cuda"):
        return torch.float16
    if cpu_bf16_native():
        return torch.bfloat16
    return None


def build_model_config(cfg: TrainConfig) -> ModelConfig:
    """The ModelConfig of the run (``cfg.model``; kept for callers of this name)."""
    return cfg.model


class MetricsWriter:
    """Append-only JSONL metrics (one object per line) + optional TensorBoard scalars."""

    def __init__(self, *, path: Path, resume_from: int, tensorboard: bool) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # drop lines logged after the checkpoint we resume from (they will be re-logged)
        if path.exists():
            keep = []
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if int(rec.get("iter", 0)) <= resume_from:
                    keep.append(line)
            # atomically: a failure or a kill here must not lose the lines kept
            atomic_write_text(path, "".join(k + "\n" for k in keep))
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                log.info("tensorboard not installed: metrics go to %s only", path)

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for k, v in record.items():
                if k != "iter" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["iter"])

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


class Trainer:
    """Train a CropFormer / Mask2Former described by a :class:`TrainConfig`.

    Args:
        config: the run's configuration.
        dist: this process's place in a torchrun job (default: single process).
        records: training records (default: read from ``config.data``).
        model: an already-built model (default: ``build_model`` of the preset).
        eval_fn: ``eval_fn(model, iteration) -> {metric: value}`` called on rank 0 every
            ``eval_period`` iterations and at the end (model in eval mode, unwrapped).
        on_step: ``on_step(iteration, metrics)`` called on every rank after each step.
        resume: continue from ``out_dir/checkpoints/last`` when it exists.
        progress: show a tqdm bar with ETA (rank 0).
    """

    def __init__(
        self,
        *,
        config: TrainConfig,
        dist: DistInfo | None = None,
        records: Sequence[Record] | None = None,
        model: nn.Module | None = None,
        eval_fn: EvalFn | None = None,
        on_step: StepHook | None = None,
        resume: bool = False,
        progress: bool = False,
    ) -> None:
        self.cfg = config
        self.dist = dist or DistInfo(device=pick_device(config.device))
        self.device = self.dist.device
        self.out_dir = Path(config.out_dir)
        self.eval_fn = eval_fn
        self.on_step = on_step
        self.progress = progress
        self.micro = config.micro_batch(self.dist.world_size)
        if config.max_iter < 1:
            raise ConfigError("max_iter must be >= 1")
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        torch.manual_seed(config.seed)

        given = None if model is None else cast(ModelConfig, unwrap(model).config)
        self.model_cfg: ModelConfig = config.model if given is None else given
        if model is None:
            from entityseg_data.model.loading import build_model

            model = build_model(self.model_cfg)
        self.model = model.to(self.device)
        self.model.train()
        self.criterion = SetCriterion(config=config.loss)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.optim, config.max_iter)
        self.amp_dtype = resolve_amp(config.amp, self.device)
        use_scaler = self.amp_dtype == torch.float16 and self.device.startswith("cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.start_iter = 0
        self.init_report: dict[str, Any] = {}
        ckpt = find_last_checkpoint(self.out_dir) if resume else None
        if ckpt is not None:
            self._restore(ckpt)
        elif config.init:
            self.init_report = init_weights(self.model, config.init, self.model_cfg)
        if self.dist.distributed:
            self.ddp: nn.Module = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.dist.local_rank] if self.device.startswith("cuda") else None,
            )
        else:
            self.ddp = self.model
        self.records = list(records) if records is not None else records_from_config(config.data)

    # ------------------------------------------------------------------------------------------
    def _restore(self, path: Path) -> None:
        state = load_training_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: does not match this run ({exc})") from None
        self.start_iter = int(state["iteration"])
        self._resume_rng = state["rng"]
        log.info("resumed from %s at iteration %d", path, self.start_iter)

    def _loader(self):
        cfg = self.cfg
        sampler = StreamSampler(
            size=len(self.records),
            seed=cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start=self.start_iter * cfg.ims_per_batch,
        )
        dataset = TrainDataset(records=self.records, mapper=build_mapper(cfg.data), seed=cfg.seed)
        fn = functools.partial(
            collate,
            pixel_mean=self.model_cfg.pixel_mean,
            pixel_std=self.model_cfg.pixel_std,
            size_divisibility=max(cfg.data.size_divisibility, self.model_cfg.size_divisibility),
        )
        return torch.utils.data.DataLoader(
            # torch types DataLoader's dataset as its Dataset class, but any map-style object
            # (__getitem__ + __len__) works; TrainDataset stays torch-free to import
            dataset,  # type: ignore[arg-type]
            batch_size=self.micro,
            sampler=sampler,
            collate_fn=fn,
            num_workers=cfg.data.num_workers,
            # an explicit generator: creating the iterator must not consume the global RNG
            generator=torch.Generator().manual_seed(cfg.seed),
            persistent_workers=False,
            pin_memory=self.device.startswith("cuda"),
        )

    def _checkpoint(self, iteration: int) -> None:
        if self.dist.is_main:
            save_training_checkpoint(
                self.out_dir,
                iteration,
                {
                    "model": unwrap(self.model).state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "consumed": iteration * self.cfg.ims_per_batch,
                    "train_config": json.dumps(to_dict(self.cfg)),
                    "model_config": json.dumps(to_dict(self.model_cfg)),
                },
                keep=self.cfg.keep_checkpoints,
            )
        barrier(self.dist)

    def _evaluate(self, iteration: int) -> dict[str, float]:
        results: dict[str, float] = {}
        if self.eval_fn is not None and self.dist.is_main:
            model = unwrap(self.model)
            model.eval()
            with torch.no_grad():
                results = self.eval_fn(model, iteration)
            model.train()
        barrier(self.dist)
        return results

    def _reduce_mean(self, values: dict[str, float]) -> dict[str, float]:
        if not self.dist.distributed:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        t /= self.dist.world_size
        return dict(zip(keys, t.tolist()))

    # ------------------------------------------------------------------------------------------
    def forward_backward(self, batches: Sequence[Any]) -> dict[str, float]:
        """Accumulate gradients of ``grad_accum`` micro-batches (DDP syncs on the last one);
        returns the mean weighted loss terms and ``loss``."""
        dev_type = "cuda" if self.device.startswith("cuda") else "cpu"
        sums: dict[str, float] = {}
        for k, batch in enumerate(batches):
            batch = batch.to(self.device)
            last = k == len(batches) - 1
            ddp = (
                self.ddp
                if isinstance(self.ddp, torch.nn.parallel.DistributedDataParallel)
                else None
            )
            sync = (
                ddp.no_sync() if ddp is not None and self.dist.distributed and not last else _null()
            )
            with sync:
                with torch.autocast(
                    dev_type,
                    dtype=self.amp_dtype or torch.float32,
                    enabled=self.amp_dtype is not None,
                ):
                    outputs = self.ddp(batch.images)
                gens = [torch.Generator().manual_seed(int(s)) for s in batch.seeds]
                terms = self.criterion(outputs, batch.targets, batch.pad_hw, gens)
                loss = total_loss(terms)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss {loss.item()} (image ids {batch.image_ids})"
                    )
                self.scaler.scale(loss / len(batches)).backward()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) / len(batches)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) / len(batches)
        return sums

    def optimizer_step(self) -> dict[str, float]:
        """Unscale, clip the full-model gradient norm, step AdamW and the poly schedule."""
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.clip_norm)
        group = self.optimizer.param_groups[0]
        lr = group["lr"] / group.get("lr_mult", 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return {"grad_norm": float(grad_norm), "lr": lr}

    def step(self, batches: Sequence[Any]) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns logged metrics."""
        metrics = self.forward_backward(batches)
        metrics.update(self.optimizer_step())
        return metrics

    def train(self) -> TrainResult:
        """Run from the start (or resumed) iteration to ``max_iter`` (with ``config.threads``
        intra-op threads, the caller's count restored afterwards)."""
        from entityseg_data.model.runtime import intraop_threads

        if not self.cfg.threads:
            return self._train()
        with intraop_threads(self.cfg.threads):
            return self._train()

    def _train(self) -> TrainResult:
        cfg = self.cfg
        if hasattr(self, "_resume_rng"):
            set_rng_state(self._resume_rng)
        metrics_path = self.out_dir / "metrics.jsonl"
        writer = (
            MetricsWriter(
                path=metrics_path, resume_from=self.start_iter, tensorboard=cfg.tensorboard
            )
            if self.dist.is_main
            else None
        )
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.out_dir / "train_config.json", json.dumps(to_dict(cfg), indent=2)
            )
        result = TrainResult(
            iteration=self.start_iter,
            start_iteration=self.start_iter,
            model_dir=None,
            metrics_path=metrics_path,
        )
        bar = None
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_iter, initial=self.start_iter, desc="train", unit="it")
        loader = iter(self._loader())
        try:
            for it in range(self.start_iter, cfg.max_iter):
                t0 = time.perf_counter()
                batches = [next(loader) for _ in range(cfg.grad_accum)]
                t_data = time.perf_counter() - t0
                metrics = self.step(batches)
                iteration = it + 1
                result.iteration = iteration
                result.losses.append(metrics["loss"])
                metrics["time"] = time.perf_counter() - t0
                metrics["data_time"] = t_data
                if iteration % max(1, cfg.log_period) == 0 or iteration == cfg.max_iter:
                    logged = self._reduce_mean(metrics)
                    if writer is not None:
                        writer.write({"iter": iteration, **logged})
                    if bar is None and self.dist.is_main:
                        log.info(
                            "iter %d loss %.4f lr %.3g", iteration, logged["loss"], logged["lr"]
                        )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.3f}")
                if cfg.checkpoint_period and iteration % cfg.checkpoint_period == 0:
                    self._checkpoint(iteration)
                if (
                    cfg.eval_period
                    and iteration % cfg.eval_period == 0
                    and iteration < cfg.max_iter
                ):
                    res = self._evaluate(iteration)
                    if res:
                        result.eval_results[iteration] = res
                        if writer is not None:
                            writer.write(
                                {"iter": iteration, **{f"eval/{k}": v for k, v in res.items()}}
                            )
                if self.on_step is not None:
                    self.on_step(iteration, metrics)
            if (
                result.iteration > self.start_iter
                and cfg.checkpoint_period
                and result.iteration % cfg.checkpoint_period != 0
            ):
                self._checkpoint(result.iteration)
            res = self._evaluate(result.iteration)
            if res:
                result.eval_results[result.iteration] = res
                if writer is not None:
                    writer.write(
                        {"iter": result.iteration, **{f"eval/{k}": v for k, v in res.items()}}
                    )
            if self.dist.is_main:
                report = {
                    "source": "entityseg-data train",
                    "iterations": result.iteration,
                    "train_config": to_dict(cfg),
                    **({"init": self.init_report} if self.init_report else {}),
                }
                result.model_dir = export_model(
                    self.model, self.model_cfg, self.out_dir / "model", report
                )
            barrier(self.dist)
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        return result
