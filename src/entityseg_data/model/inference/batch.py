"""Predicting many images: batching, skip-existing, failure records, progress and a summary.

One bad image never stops a run: it is recorded (path, error) in the summary and the failures
file (JSON lines) and the run goes on. Every output file is written atomically and the sidecar
JSON last, so a killed run resumes with ``skip_existing``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.errors import EntitySegError
from entityseg_data.io import atomic_write_text
from entityseg_data.model.inference.images import load_image
from entityseg_data.model.inference.inputs import InputItem, resize_input
from entityseg_data.model.inference.outputs import output_base, outputs_exist, save_result

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a run did. ``failures``: ``{"path", "error"}`` records."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    entities: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "entities": self.entities,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 3),
        }


@dataclass(frozen=True)
class Job:
    """One image of a run: the input and, in workspace mode, its catalog id."""

    item: InputItem
    image_id: int | None = None


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, EntitySegError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_predictions(
    segmenter: Any,
    jobs: Sequence[Job],
    *,
    output: str | None,
    formats: Sequence[str] = ("png", "json"),
    batch_size: int = 1,
    skip_existing: bool = False,
    resize: tuple[int, int] | int | None = None,
    failures_path: str | Path | None = None,
    workspace: Workspace | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Summary:
    """Predict ``jobs`` and write the outputs (to ``output`` and/or the workspace)."""
    from entityseg_data.model.inference.workspace_io import (
        predicted_ids,
        write_workspace_prediction,
    )

    summary = Summary(total=len(jobs))
    start = time.perf_counter()
    version = segmenter.model_version
    done_ws = (
        predicted_ids(workspace, version) if (workspace is not None and skip_existing) else set()
    )

    def is_done(job: Job, index: int) -> bool:
        if not skip_existing:
            return False
        if workspace is not None and job.image_id is not None and job.image_id not in done_ws:
            return False
        if output is not None:
            base = output_base(output, job.item.path, root=job.item.root, index=index)
            if not outputs_exist(base, formats):
                return False
        return True

    def fail(job: Job, exc: BaseException) -> None:
        text = _error_text(exc)
        prefix = f"{job.item.path}: "
        if text.startswith(prefix):
            text = text[len(prefix) :]
        log.warning("%s: %s", job.item.path, text)
        summary.failures.append({"path": str(job.item.path), "error": text})

    pending: list[tuple[int, Job]] = []
    for index, job in enumerate(jobs):
        if is_done(job, index):
            summary.skipped += 1
            if on_progress:
                on_progress(1)
            continue
        pending.append((index, job))

    step = max(1, int(batch_size))
    for s in range(0, len(pending), step):
        chunk = pending[s : s + step]
        loaded = []
        for index, job in chunk:
            try:
                img = resize_input(load_image(job.item.path), resize)
                loaded.append((index, job, img))
            except Exception as exc:  # one bad image never stops the run
                fail(job, exc)
        results: list[Any] = []
        if loaded:
            try:
                results = segmenter.predict_arrays(
                    [im for _, _, im in loaded], sources=[str(j.item.path) for _, j, _ in loaded]
                )
            except Exception as exc:
                if len(loaded) == 1:
                    fail(loaded[0][1], exc)
                    loaded = []
                else:  # retry one by one so only the culprit fails
                    results = []
                    kept = []
                    for index, job, im in loaded:
                        try:
                            results.extend(
                                segmenter.predict_arrays([im], sources=[str(job.item.path)])
                            )
                            kept.append((index, job, im))
                        except Exception as exc1:
                            fail(job, exc1)
                    loaded = kept
        for (index, job, img), res in zip(loaded, results):
            try:
                if output is not None:
                    save_result(
                        res, output, formats=formats, image=img, root=job.item.root, index=index
                    )
                if workspace is not None and job.image_id is not None:
                    write_workspace_prediction(workspace, job.image_id, res, version)
                summary.done += 1
                summary.entities += len(res)
            except Exception as exc:
                fail(job, exc)
        if on_progress:
            on_progress(len(chunk))
    summary.seconds = time.perf_counter() - start
    if failures_path is not None:
        lines = "".join(json.dumps(f) + "\n" for f in summary.failures)
        if summary.failures or Path(failures_path).exists():
            atomic_write_text(failures_path, lines)
    return summary
