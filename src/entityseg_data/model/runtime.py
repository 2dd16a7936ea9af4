"""Process-level settings for fast inference: the C allocator and the thread count.

**Why the allocator.** A CropFormer forward allocates and frees hundreds of tensors of 50-300 MB.
glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MB) with a fresh
``mmap`` and gives it back with ``munmap`` on ``free``: every page of every large tensor is
page-faulted and zero-filled by the kernel on first touch, once per allocation. Measured on
CropFormer HorNet-L (800x1067, 1 thread) that was 62.7 of 181 CPU seconds of kernel time and 36 M
minor page faults (docs/benchmarks.md).

:func:`tune_allocator` tells glibc (``mallopt`` through ``ctypes``, in-process, nothing to
preload) to keep freed memory instead:

* ``M_MMAP_MAX = 0``: large blocks come from the heap (``brk``) like small ones, so a freed block
  is reused by the next allocation instead of being unmapped;
* ``M_TRIM_THRESHOLD = -1``: free memory at the top of the heap is not returned to the kernel
  after every ``free`` (:func:`release_memory` returns it on demand);
* ``M_ARENA_MAX = 1``: one arena, so tensors allocated by worker threads (prefetching,
  inter-view workers) also come from the heap (other arenas are capped at 64 MB heaps and fall
  back to ``mmap`` for large blocks).

The process then keeps its peak heap mapped: resident memory after a prediction stays near the
peak of that prediction. Not exactly bounded by it: PyTorch allocates with ``posix_memalign``,
which in glibc 2.36 asks for a little more than the size, so a freed block cannot take the next
tensor of the same size and the heap fragments; three 3000x4000 CropFormer predictions in one
process peaked at 3.45, 3.48 and 3.54 GB (docs/benchmarks.md, issue 17, session 15).
:func:`release_memory` between images holds the peak (3.36, 3.48, 3.48 GB) for ~0.4 M page
faults per image. Outputs are bit-identical: only where memory comes from changes.

It does nothing (and says why in :class:`AllocatorReport`) when the C library is not glibc, when
another allocator is already loaded into the process (jemalloc, tcmalloc, mimalloc: a user who
preloads one has made their own choice), or when ``ENTITYSEG_MALLOC=default`` is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENV_VAR = "ENTITYSEG_MALLOC"
"""``default`` (or ``off``/``0``) leaves the C allocator as it is."""

# glibc <malloc.h> parameter numbers
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "hoard", "snmalloc")


@dataclass(frozen=True)
class AllocatorReport:
    """What :func:`tune_allocator` did. ``allocator``: "glibc" or the name of the allocator
    found in the process; ``applied``: the glibc settings are in force; ``reason``: why not."""

    allocator: str
    applied: bool
    reason: str = ""


def _loaded_allocator() -> str | None:
    """Name of a non-glibc malloc mapped into this process (preloaded or linked), if any."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        maps = os.environ.get("LD_PRELOAD", "")
    for name in _OTHER_ALLOCATORS:
        if f"lib{name}" in maps:
            return name
    return None


def _glibc():
    """The process's C library when it is glibc (``gnu_get_libc_version`` exists), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


@functools.cache
def tune_allocator() -> AllocatorReport:
    """Make glibc keep and reuse freed memory (see the module docstring). Idempotent; safe to
    call from any thread, before or after ``import torch``; logs what it did at debug level."""
    setting = os.environ.get(ENV_VAR, "").strip().lower()
    if setting in ("default", "off", "0", "no", "false"):
        return AllocatorReport("glibc" if _glibc() else "unknown", False, f"{ENV_VAR}={setting}")
    other = _loaded_allocator()
    if other is not None:
        return AllocatorReport(other, False, f"{other} is loaded: left as it is")
    libc = _glibc()
    if libc is None:
        return AllocatorReport("unknown", False, "the C library is not glibc")
    ok = all(
        libc.mallopt(param, value) == 1
        for param, value in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1), (M_ARENA_MAX, 1))
    )
    report = AllocatorReport("glibc", ok, "" if ok else "mallopt refused a setting")
    log.debug("allocator: %s", report)
    return report


def cpu_bf16_native() -> bool:
    """True when this CPU has bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast is the
    fast path (CropFormer HorNet-L 1.65-1.69x faster than fp32 at 1 thread on an AMX Xeon);
    False without them (emulated: ~6x slower than fp32 on an AVX2 EPYC) or when torch cannot
    tell (docs/benchmarks.md, issue 17)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in probes)


def release_memory() -> bool:
    """Return the free memory the tuned allocator keeps to the kernel (glibc ``malloc_trim``).
    Call it after a batch when the process lives on with other work; True if memory was freed."""
    libc = _glibc()
    if libc is None or _loaded_allocator() is not None:
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return bool(libc.malloc_trim(0))


@contextmanager
def intraop_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restoring the previous count after.
    Used around work that is parallel at a coarser grain (tiles, views) so that each op runs on
    the calling thread instead of oversubscribing the cores."""
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


#: a unit of work for :func:`run_tasks`: returns None or follow-up tasks
Task = Callable[[], "Iterable[Task] | None"]


def run_tasks(tasks: Iterable[Task], workers: int) -> None:
    """Run ``tasks`` on ``workers`` threads (the calling thread is one of them), first come first
    served. A task may return follow-up tasks: they join the END of the queue, so the work queued
    up front (put the longest first) is taken before the follow-ups, which fill the gaps at the
    end. Returns when every task has run. The first exception stops the hand-out of new tasks;
    the running ones finish, then it is raised in the caller."""
    import threading
    from collections import deque

    todo: deque[Task] = deque(tasks)
    cond = threading.Condition()
    running = 0
    errors: list[BaseException] = []

    def work() -> None:
        nonlocal running
        while True:
            with cond:
                while not todo and running and not errors:
                    cond.wait()
                if errors or not todo:
                    cond.notify_all()
                    return
                task = todo.popleft()
                running += 1
            more: Iterable[Task] | None = None
            try:
                more = task()
            except BaseException as exc:
                with cond:
                    errors.append(exc)
            with cond:
                running -= 1
                if more is not None and not errors:
                    todo.extend(more)
                cond.notify_all()

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(max(0, int(workers) - 1))]
    for t in helpers:
        t.start()
    work()
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]
