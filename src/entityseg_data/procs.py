"""Child processes that never outlive their parent, and signals that stop them in order.

Two guarantees for every long-running child the toolkit starts (Label Studio, worker pools):

* **It dies with its parent.** :func:`spawn` starts a command in its own process group (the group
  can be stopped at once by :func:`stop_group`, and a terminal's Ctrl-C reaches only the CLI, which
  then stops the child in order) with ``PR_SET_PDEATHSIG`` set (Linux): when the parent dies, even
  by ``SIGKILL``, the kernel sends the child ``SIGKILL``. Pool workers get the same by calling
  :func:`die_with_parent` as their ``initializer``.
* **Signals stop it in order.** CLI commands that start children run inside
  :func:`terminate_on_signals` *before* starting any: SIGTERM, SIGHUP and SIGINT raise
  :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread, so the ``finally`` blocks that
  stop the children run. :func:`signals_deferred` holds such a signal while a child is being
  started and recorded, so that none arrives between the fork and the bookkeeping.

Caveat (a kernel rule): ``PR_SET_PDEATHSIG`` fires when the *thread* that started the child exits,
so start a child from a thread that lives as long as the child should (normally the main thread).
The flag is set by a tiny launcher (``python -I -S -c``) that then ``exec``\\s the command (same
pid), not by ``preexec_fn``, which is unsafe with threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

# Runs in the child between fork and exec: set the parent-death signal, give up when the parent
# is already gone, restore the signal state Python changed (ignored SIGPIPE/SIGXFSZ survive exec),
# then become the command (same pid).
_LAUNCHER = """\
import ctypes, os, signal, sys
parent, sig = int(sys.argv[1]), int(sys.argv[2])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    os._exit(125)
for s in (signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_SETMASK, [])
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as exc:
    sys.stderr.write(f"cannot run {sys.argv[3]}: {exc}\\n")
    os._exit(127)
"""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by a signal handled by :func:`terminate_on_signals`.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C stops the same way on SIGTERM/SIGHUP;
    ``signum`` is the signal (the CLI exits with ``128 + signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)


class TerminationHandler:
    """The signal handler installed by :func:`terminate_on_signals`: raises :class:`Terminated`,
    or, inside :meth:`deferred`, remembers the first signal and raises when the block ends."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self._depth:
            if self._pending is None:
                self._pending = signum
            return
        raise Terminated(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                raise Terminated(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def terminate_on_signals(
    signums: Sequence[int] = _STOP_SIGNALS,
) -> Iterator[TerminationHandler | None]:
    """Turn SIGTERM, SIGHUP and SIGINT into :class:`Terminated` for the duration of the block.

    Enter it before starting any child. Signals that are ignored (``nohup``, a background job's
    SIGINT) stay ignored; the previous handlers are restored on exit. Outside the main thread
    (where Python cannot install handlers) it does nothing and yields None."""
    if not _in_main_thread():
        yield None
        return
    handler = TerminationHandler()
    previous: dict[int, Any] = {}
    try:
        for s in signums:
            if signal.getsignal(s) is signal.SIG_IGN:
                continue
            previous[s] = signal.signal(s, handler)
        yield handler
    finally:
        for s, prev in previous.items():
            signal.signal(s, prev)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold the signals of an active :func:`terminate_on_signals` until the block ends (use it
    around starting a child and recording its handle). A no-op without such a handler."""
    handler = None
    if _in_main_thread():
        for s in _STOP_SIGNALS:
            h = signal.getsignal(s)
            if isinstance(h, TerminationHandler):
                handler = h
                break
    if handler is None:
        yield
        return
    with handler.deferred():
        yield


def _deathsig_supported() -> bool:
    return sys.platform.startswith("linux")


def spawn(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    die_with_parent: bool = True,
    deathsig: int = signal.SIGKILL,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session and process group (its pid is the group id).

    Args:
        cmd: the program and its arguments (argv; secrets belong in ``env``).
        env: the child's environment (None: this process's).
        die_with_parent: set ``PR_SET_PDEATHSIG`` so that the kernel sends ``deathsig`` to the
            child when this process (precisely: the calling thread) dies. False only for a
            child meant to outlive the caller (``demo --keep-server``).

    Returns:
        the ``Popen`` of the command itself (the launcher ``exec``\\s it: same pid).
    """
    argv = [str(c) for c in cmd]
    if die_with_parent and _deathsig_supported():
        argv = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _LAUNCHER,
            str(os.getpid()),
            str(int(deathsig)),
            *argv,
        ]
    return subprocess.Popen(
        argv,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def stop_group(proc: subprocess.Popen[Any], timeout: float = 20.0) -> int | None:
    """Stop a child started by :func:`spawn` and everything in its process group: SIGTERM, then
    SIGKILL after ``timeout`` seconds. Returns the exit code (None if it was not running)."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %d did not stop in %.0f s after SIGTERM; killing it", proc.pid, timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def _stat_fields(stat: str) -> tuple[str, int]:
    """(state, process group id) from the text of ``/proc/<pid>/stat`` (the command name, in
    parentheses, may itself hold spaces and parentheses: parse after the last ')')."""
    rest = stat[stat.rindex(")") + 2 :].split()
    return rest[0], int(rest[2])


def group_alive(pgid: int) -> bool:
    """True when a process of group ``pgid`` is still running (not a zombie).

    ``os.killpg(pgid, 0)`` also succeeds for a group whose only members are zombies: processes
    that exited but were not reaped, as happens to an orphan when PID 1 of a container does not
    reap (a killed CLI's Label Studio on such a machine). On Linux ``/proc`` tells them apart;
    elsewhere this falls back to ``killpg``."""
    proc = "/proc"
    if not os.path.isdir(os.path.join(proc, "self")):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(proc, name, "stat"), encoding="utf-8", errors="replace") as f:
                state, group = _stat_fields(f.read())
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile, or not ours to read
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


def die_with_parent(parent_pid: int | None = None, deathsig: int = signal.SIGKILL) -> None:
    """Make the calling process receive ``deathsig`` when its parent dies (Linux; elsewhere a
    no-op). For pool workers: ``ProcessPoolExecutor(initializer=die_with_parent,
    initargs=(os.getpid(),))``. With ``parent_pid``, exits at once if the parent is already gone
    (it died before the flag was set). Never raises."""
    if not _deathsig_supported():
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(deathsig), 0, 0, 0)
    except (OSError, AttributeError) as exc:  # pragma: no cover - no prctl
        log.debug("PR_SET_PDEATHSIG unavailable: %s", exc)
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(125)


__all__ = [
    "Terminated",
    "TerminationHandler",
    "die_with_parent",
    "group_alive",
    "signals_deferred",
    "spawn",
    "stop_group",
    "terminate_on_signals",
]
