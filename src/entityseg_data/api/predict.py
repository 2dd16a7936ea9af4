"""Predicting files with the bundled model (the ``predict`` command): plan the run (inputs,
outputs, shard) and refuse a bad plan before any model is loaded, then predict and write.

>>> plan = plan_predictions(["photos/"], output="out/", formats=("png", "json"))
>>> seg = load_segmenter("cropformer_hornet_3x", device=prepare_device("auto"))
>>> summary = predict_files(seg, plan, batch_size=2, skip_existing=True)
>>> summary.as_dict()            # done, skipped, failed, entities, seconds, images per hour

SAM's automatic-mask-generator outputs become the same outputs without a model
(:func:`convert_sam_outputs`). Predictions stored in a workspace as pre-annotations from any
segmenter: :meth:`Workspace.predictions <entityseg_data.api.workspace.Workspace.predictions>`
(``plan_predictions(workspace=ws)`` does it with this batch runner: resumable, sharded).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from entityseg_data.errors import ConfigError

if TYPE_CHECKING:
    from entityseg_data.model.inference.batch import Job, Summary
    from entityseg_data.model.inference.predictor import EntitySegmenter
    from entityseg_data.workspace import Workspace

#: the output formats: png (uint16 label map), json (sidecar), coco (COCO/SAM RLE records),
#: overlay, cutouts (RGBA per entity), npz
FORMATS = ("png", "json", "coco", "overlay", "cutouts", "npz")
DEFAULT_FORMATS = ("png", "json")


@dataclass(frozen=True)
class PredictPlan:
    """A checked predict run (:func:`plan_predictions`): the images in order (``jobs``; a
    workspace image carries its catalog id), the output template or folder (None: only the
    workspace), formats, input resize, the shard ``(i, n)`` this process takes, the workspace
    the predictions are stored in, and where failures are recorded."""

    jobs: tuple[Job, ...]
    output: str | None
    formats: tuple[str, ...]
    resize: tuple[int, int] | int | None
    shard: tuple[int, int] = (0, 1)
    workspace: Workspace | None = None
    failures_path: str | None = None

    def __len__(self) -> int:
        return len(self.jobs)

    @property
    def output_root(self) -> Path | None:
        """The fixed folder part of the output template (where summary and failures go)."""
        if self.output is None:
            return None
        parts = []
        for part in Path(self.output).parts:
            if "{" in part:
                break
            parts.append(part)
        return Path(*parts) if parts else Path(".")

    @property
    def shard_suffix(self) -> str:
        """``.i-of-n`` for a sharded run (its summary and failures files), else empty."""
        i, n = self.shard
        return f".{i}-of-{n}" if n > 1 else ""


def plan_predictions(
    inputs: Sequence[str] = (),
    *,
    output: str | None = None,
    formats: Sequence[str] = (),
    workspace: Workspace | None = None,
    stride: int = 1,
    resize: str | tuple[int, int] | int | None = None,
    shard: str | tuple[int, int] | None = None,
    failures: str | None = None,
) -> PredictPlan:
    """Check a predict run and list its images, without loading a model (no torch).

    ``inputs``: image files, folders (recursive), globs, ``.txt`` lists; ``workspace``: also
    its accepted images (their predictions are stored as stage-1 pre-annotations). ``output``:
    a folder (``OUT/{relpath}``) or a path template without extension using ``{stem}``
    ``{name}`` ``{parent}`` ``{relpath}`` ``{index}``; ``formats``: of :data:`FORMATS`
    (default png + json). ``stride``: every N-th input; ``resize``: ``"HxW"`` or a short side
    (not with a workspace: pre-annotations have the stored image's size); ``shard``:
    ``"i/n"``, ``"auto"`` (torchrun's ``RANK``/``WORLD_SIZE``) or ``(i, n)``. ``failures``:
    the failure records (JSON lines; default ``OUTPUT/failures[.i-of-n].jsonl``).

    Raises ConfigError for a plan that would lose or feed back results (two images written to
    the same files, an output that is or would be read as an input) and DataError for a
    missing input."""
    from entityseg_data.model.inference.batch import Job, check_outputs, check_resize
    from entityseg_data.model.inference.inputs import (
        InputItem,
        expand_inputs,
        parse_resize,
        parse_shard,
        select,
    )
    from entityseg_data.model.inference.outputs import check_formats, template_fields

    if not inputs and workspace is None:
        raise ConfigError("nothing to predict: give inputs or a workspace")
    if output is None and workspace is None:
        raise ConfigError("an output is needed (or a workspace to store the predictions in)")
    if workspace is not None and resize:
        raise ConfigError(
            "resize cannot be used with a workspace (pre-annotations must have the stored "
            "image's size)"
        )
    if output is not None:
        template_fields(output)
    fmts = check_formats(tuple(formats) or DEFAULT_FORMATS)
    size = parse_resize(resize) if resize is None or isinstance(resize, str) else resize
    check_resize(size)
    shard_i, shard_n = shard if isinstance(shard, tuple) else parse_shard(shard)

    jobs: list[Job] = []
    if workspace is not None:
        with workspace.catalog() as cat:
            images = cat.images(status="accepted")
        for rec in images:
            path = workspace.image_path(rec)
            jobs.append(Job(InputItem(path, path.parent), rec.id))
    if inputs:
        jobs += [Job(it) for it in expand_inputs(inputs)]
    picked = select([j.item for j in jobs], stride=stride, shard=(shard_i, shard_n))
    keep = {id(it) for it in picked}
    jobs = [j for j in jobs if id(j.item) in keep]
    # collisions and outputs read back as inputs: refused before the model is loaded
    check_outputs(jobs, output, fmts, inputs=inputs)
    plan = PredictPlan(
        jobs=tuple(jobs),
        output=output,
        formats=fmts,
        resize=size,
        shard=(shard_i, shard_n),
        workspace=workspace,
        failures_path=failures,
    )
    if failures is None and plan.output_root is not None:
        plan = _with_failures(plan, str(plan.output_root / f"failures{plan.shard_suffix}.jsonl"))
    return plan


def _with_failures(plan: PredictPlan, path: str) -> PredictPlan:
    from dataclasses import replace

    return replace(plan, failures_path=path)


def prepare_device(device: str = "cpu", *, threads: int | None = None) -> str:
    """Get the process ready to predict and return the torch device to use: the allocator
    tuned before torch allocates (no page-fault tax on large tensors; see
    docs/benchmarks.md), ``threads`` intra-op threads when given, and ``"auto"`` resolved to
    ``cuda:$LOCAL_RANK`` when CUDA is available, else ``cpu``."""
    import os

    from entityseg_data.model.runtime import tune_allocator

    tune_allocator()
    import torch

    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        local = int(os.environ.get("LOCAL_RANK", 0))
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    return device


def predict_files(
    segmenter: EntitySegmenter,
    plan: PredictPlan,
    *,
    batch_size: int = 1,
    skip_existing: bool = False,
    progress: Callable[[int], object] | None = None,
) -> Summary:
    """Predict the plan's images with the bundled model (the segmenter that
    :func:`~entityseg_data.api.segmenters.load_segmenter` returns; batched) and write the
    outputs (and the workspace's pre-annotations). A bad image is logged, recorded in the
    plan's failures file and skipped; the run goes on. ``skip_existing``: skip images whose
    outputs all exist (resume a killed run). ``progress`` is called with the number of images
    just finished. With an output, ``summary[.i-of-n].json`` (the summary's ``as_dict()``) is
    written to the output root."""
    from entityseg_data.io import atomic_write_text
    from entityseg_data.model.inference.batch import run_predictions

    summary = run_predictions(
        segmenter,
        plan.jobs,
        output=plan.output,
        formats=plan.formats,
        batch_size=batch_size,
        skip_existing=skip_existing,
        resize=plan.resize,
        failures_path=plan.failures_path,
        workspace=plan.workspace,
        on_progress=progress,
    )
    if plan.output_root is not None:
        atomic_write_text(
            plan.output_root / f"summary{plan.shard_suffix}.json", json.dumps(summary.as_dict())
        )
    return summary


@dataclass
class SamConversion:
    """What :func:`convert_sam_outputs` did: outputs converted, skipped (existing) and the
    failures (``"path: problem"``)."""

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def convert_sam_outputs(
    inputs: Sequence[str | Path],
    output: str,
    *,
    formats: Sequence[str] = (),
    min_area: int = 0,
    skip_existing: bool = False,
) -> SamConversion:
    """SAM automatic-mask-generator outputs (COCO-RLE JSON files or mask folders with
    metadata.csv) made non-overlapping (the higher ``predicted_iou`` wins) and written as
    :func:`predict_files` writes (png, json, coco, npz: no image is read); entities smaller
    than ``min_area`` pixels dropped. An input that cannot be read is recorded in ``failed``
    and the others go on; an output that would overwrite its input is a ConfigError."""
    from entityseg_data.errors import EntitySegError
    from entityseg_data.model.inference.outputs import (
        check_formats,
        output_base,
        output_paths,
        outputs_exist,
        save_result,
    )
    from entityseg_data.model.inference.sam import sam_to_result

    fmts = check_formats(tuple(formats) or DEFAULT_FORMATS)
    if set(fmts) & {"overlay", "cutouts"}:
        raise ConfigError("SAM outputs are written as png, json, coco and npz (no image is read)")
    report = SamConversion()
    for k, item in enumerate(inputs):
        path = Path(item)
        try:
            base = output_base(output, path, root=path.parent, index=k)
        except (EntitySegError, OSError, ValueError) as exc:
            report.failed.append(f"{path}: {exc}")
            continue
        if path.resolve() in {p.resolve() for p in output_paths(base, fmts).values()}:
            raise ConfigError(f"{path}: the outputs would overwrite this input")
        try:
            if skip_existing and outputs_exist(base, fmts):
                report.skipped += 1
                continue
            res = sam_to_result(path, min_area=min_area)
            save_result(res, output, formats=fmts, root=path.parent, index=k)
            report.done += 1
        except (EntitySegError, OSError, ValueError) as exc:
            report.failed.append(f"{path}: {exc}")
    return report


__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "PredictPlan",
    "SamConversion",
    "convert_sam_outputs",
    "plan_predictions",
    "predict_files",
    "prepare_device",
]
