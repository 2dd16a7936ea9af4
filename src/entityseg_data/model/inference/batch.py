"""Predicting many images: batching, skip-existing, failure records, progress and a summary.

One bad image never stops a run: it is recorded (path, error) in the summary and the failures
file (JSON lines) and the run goes on. Every output file is written atomically and the sidecar
JSON last, so a killed run resumes with ``skip_existing``.

Before anything is predicted, :func:`check_outputs` refuses an output plan that would lose or
feed back results: two inputs mapped to the same output files (``-o 'out/{stem}'`` with two
``x.jpg`` in different folders), an output that is one of the inputs, or one that running the
same command again would read as an input (``-o`` inside an input folder or matching an input
pattern).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.errors import ConfigError, DataError, EntitySegError
from entityseg_data.io import atomic_write_text
from entityseg_data.model.inference.images import load_image
from entityseg_data.model.inference.inputs import InputItem, resize_input
from entityseg_data.model.inference.outputs import (
    output_base,
    output_paths,
    outputs_exist,
    save_result,
)
from entityseg_data.model.runtime import release_memory

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

    @property
    def images_per_hour(self) -> float:
        return 3600.0 * self.images_per_second

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "entities": self.entities,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 3),
            "images_per_hour": round(self.images_per_hour, 1),
        }


@dataclass(frozen=True)
class Job:
    """One image of a run: the input and, in workspace mode, its catalog id."""

    item: InputItem
    image_id: int | None = None


# the largest side an input may be resized to (--resize), and so the largest label map
MAX_RESIZE_SIDE = 16384


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, EntitySegError):
        return str(exc)
    if isinstance(exc, MemoryError) and not str(exc):
        return "out of memory (MemoryError)"
    return f"{type(exc).__name__}: {exc}"


def _predict_chunk(segmenter: Any, loaded: list, fail: Callable) -> list[Any]:
    """Results of one forward over ``loaded`` (index, job, image) items, None for failures;
    when the batch fails, the images are retried one by one so that only the culprit fails."""
    if not loaded:
        return []
    try:
        return list(
            segmenter.predict_arrays(
                [im for _, _, im in loaded], sources=[str(j.item.path) for _, j, _ in loaded]
            )
        )
    except Exception as exc:
        if len(loaded) == 1:
            fail(loaded[0][1], exc)
            return [None]
    results: list[Any] = []
    for _index, job, im in loaded:
        try:
            results.extend(segmenter.predict_arrays([im], sources=[str(job.item.path)]))
        except Exception as exc1:
            fail(job, exc1)
            results.append(None)
    return results


def check_resize(size: tuple[int, int] | int | None) -> None:
    """Refuse a ``--resize`` whose side is over :data:`MAX_RESIZE_SIDE` (probe 6.4)."""
    sides = size if isinstance(size, tuple) else (size,) if size is not None else ()
    if any(s > MAX_RESIZE_SIDE for s in sides):
        raise ConfigError(
            f"--resize {'x'.join(str(s) for s in sides)}: over the largest side of "
            f"{MAX_RESIZE_SIDE} px"
        )


def resized_shape(h: int, w: int, size: tuple[int, int] | int | None) -> tuple[int, int]:
    """The (H, W) an (h, w) image gets from ``resize`` (see ``inputs.resize_input``); DataError
    when a side would be over :data:`MAX_RESIZE_SIDE` (a short side N on a long strip)."""
    if size is None:
        return h, w
    if isinstance(size, tuple):
        out = size
    else:
        scale = size / min(h, w)
        out = (max(1, round(h * scale)), max(1, round(w * scale)))
    if max(out) > MAX_RESIZE_SIDE:
        raise DataError(
            f"resizing {h}x{w} to a short side of {size} gives {out[0]}x{out[1]}, over the "
            f"largest side of {MAX_RESIZE_SIDE} px"
        )
    return out


def _abs(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(path)))


def _read_back(path: Path, fmt: str) -> Path:
    """A file of output ``path`` that a later input expansion could pick up as an image."""
    return path / "0001.png" if fmt == "cutouts" else path


def check_outputs(
    jobs: Sequence[Job],
    output: str | None,
    formats: Sequence[str] = ("png", "json"),
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Raise one ConfigError for an output plan that would lose or feed back results.

    Args:
        jobs: the run's images (the output of job ``i`` uses ``index=i``).
        output: the output template or folder (None: no files, nothing to check).
        inputs: the input specs the jobs came from (folders, globs, files, lists): an output
            inside an input folder or matching an input pattern is refused, because running the
            same command again would read it as an image (probe 6.8).
    """
    if output is None:
        return
    from entityseg_data.model.inference.inputs import IMAGE_EXTENSIONS

    sources = {_abs(job.item.path): job.item.path for job in jobs}
    claimed: dict[Path, tuple[int, Path]] = {}
    folders = [_abs(s) for s in inputs if Path(os.fspath(s)).expanduser().is_dir()]
    patterns = [os.path.abspath(os.fspath(s)) for s in inputs if glob.has_magic(os.fspath(s))]
    for index, job in enumerate(jobs):
        base = _abs(output_base(output, job.item.path, root=job.item.root, index=index))
        first_index, first = claimed.setdefault(base, (index, job.item.path))
        if first_index != index:
            raise ConfigError(
                f"{first} and {job.item.path} would both be written to {base}.* (the second "
                f"would overwrite the first): use an output template that tells them apart, "
                f"e.g. with {{relpath}} or {{parent}}/{{stem}}, or an output folder"
            )
        for fmt, path in output_paths(base, formats).items():
            path = _abs(path)
            if path in sources:
                raise ConfigError(
                    f"the output {path} is the input {sources[path]}: write the outputs "
                    f"outside the input folder"
                )
            probe = _read_back(path, fmt)
            if probe.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            for folder in folders:
                if probe.is_relative_to(folder):
                    raise ConfigError(
                        f"the output {path} is inside the input folder {folder}: the next run "
                        f"would read its own label maps as images; write the outputs outside "
                        f"it (e.g. -o {folder}_entities)"
                    )
            for pattern in patterns:
                if fnmatch.fnmatchcase(str(probe), pattern):
                    raise ConfigError(
                        f"the output {path} matches the input pattern {pattern}: the next run "
                        f"would read it as an image; write the outputs elsewhere"
                    )


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
    on_progress: Callable[[int], object] | None = None,
    prefetch: int = 1,
    release_memory_between: bool = True,
) -> Summary:
    """Predict ``jobs`` and write the outputs (to ``output`` and/or the workspace).

    ``prefetch``: chunks of ``batch_size`` images decoded ahead in a loader thread while the
    model runs (0 = decode in turn); output files are written by a writer thread meanwhile.
    ``release_memory_between``: after each chunk's forward, give the heap's free pages back to
    the kernel (:func:`~entityseg_data.model.runtime.release_memory`). With the tuned glibc
    allocator the heap fragments and its peak creeps from image to image (three 3000x4000
    CropFormer predictions in one process: 3.45, 3.48, 3.54 GB); releasing holds it (3.36,
    3.48, 3.48 GB) for ~0.4 M page faults (~1 s of system time, ~1 % of such an image) per
    chunk.
    Raises ConfigError before predicting anything when two jobs share their output files or an
    output is an input (:func:`check_outputs`).
    """
    from entityseg_data.model.inference.workspace_io import (
        predicted_ids,
        write_workspace_prediction,
    )

    check_outputs(jobs, output, formats)
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
    chunks = [pending[s : s + step] for s in range(0, len(pending), step)]

    def load(chunk: list[tuple[int, Job]]) -> list[tuple[int, Job, Any, BaseException | None]]:
        """Decode (and resize) a chunk: runs in the loader thread, ahead of the model."""
        out: list[tuple[int, Job, Any, BaseException | None]] = []
        for index, job in chunk:
            try:
                img = load_image(job.item.path)
                resized_shape(img.shape[0], img.shape[1], resize)  # bounded before allocating
                out.append((index, job, resize_input(img, resize), None))
            except Exception as exc:  # one bad image never stops the run
                out.append((index, job, None, exc))
        return out

    def write(res: Any, img: Any, job: Job, index: int) -> None:
        assert output is not None  # the writer runs only with an output
        save_result(res, output, formats=formats, image=img, root=job.item.root, index=index)

    # decode of the next chunks and writing of the outputs overlap the model's forward: one
    # loader thread (``prefetch`` chunks ahead) and one writer thread for the output files
    # (the workspace catalog is written from this thread: SQLite connections stay here)
    prefetch = max(0, int(prefetch))
    loader = ThreadPoolExecutor(1, thread_name_prefix="predict-load") if prefetch else None
    writer = ThreadPoolExecutor(1, thread_name_prefix="predict-write") if output else None
    queued: deque[Future] = deque()
    writes: deque[tuple[Future, Job, int, int]] = deque()

    def collect_writes(block_above: int) -> None:
        """Record finished writes (in order); wait while more than ``block_above`` are pending
        (each holds a result and its image)."""
        while writes and (writes[0][0].done() or len(writes) > block_above):
            fut, job, n_entities, n_chunk = writes.popleft()
            exc = fut.exception()
            if exc is not None:
                fail(job, exc)
            else:
                summary.done += 1
                summary.entities += n_entities
            if on_progress and n_chunk:
                on_progress(n_chunk)

    try:
        for k, chunk in enumerate(chunks):
            if loader is not None:
                while len(queued) < prefetch + 1 and k + len(queued) < len(chunks):
                    queued.append(loader.submit(load, chunks[k + len(queued)]))
                items = queued.popleft().result()
            else:
                items = load(chunk)
            loaded = []
            for index, job, img, exc in items:
                if exc is not None:
                    fail(job, exc)
                else:
                    loaded.append((index, job, img))
            results = _predict_chunk(segmenter, loaded, fail)
            if release_memory_between:
                release_memory()
            loaded = [item for item, res in zip(loaded, results) if res is not None]
            results = [res for res in results if res is not None]
            written = 0
            for (index, job, img), res in zip(loaded, results):
                try:
                    if workspace is not None and job.image_id is not None:
                        write_workspace_prediction(workspace, job.image_id, res, version)
                except Exception as exc:
                    fail(job, exc)
                    continue
                if writer is not None:
                    writes.append((writer.submit(write, res, img, job, index), job, len(res), 0))
                    written += 1
                else:
                    summary.done += 1
                    summary.entities += len(res)
            # progress counts the whole chunk (failures included) once its writes are queued
            if writes and written:
                fut, job, n, _ = writes[-1]
                writes[-1] = (fut, job, n, len(chunk))
            elif on_progress:
                on_progress(len(chunk))
            collect_writes(block_above=2 * step)
            # nothing of this chunk stays referenced here through the next chunk's forward (at
            # 12 MP an image and its result are ~85 MB; the writer holds its own references)
            items, loaded, results = [], [], []
            img = res = None
        collect_writes(block_above=0)
    finally:
        for pool in (loader, writer):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - start
    if failures_path is not None:
        lines = "".join(json.dumps(f) + "\n" for f in summary.failures)
        if summary.failures or Path(failures_path).exists():
            atomic_write_text(failures_path, lines)
    return summary
