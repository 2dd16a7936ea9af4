"""Run the real ``entityseg-data`` CLI in a child process that stops itself at a chosen point, so
that a test can SIGKILL it mid-run without racing it (no poll interval or machine load decides
whether the kill lands before the end).

Usage (from a test)::

    [sys.executable, PAUSE_CHILD, "module:function", "N", "marker", "--", *cli_args]

The child wraps ``module.function``: the first ``N`` calls run as usual; call ``N + 1`` creates
``marker`` and then blocks for good (the rest of the process keeps running until it needs that
call's result). The test waits for ``marker`` and kills the process. Nothing of the product is
changed: the function is wrapped in this process only.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
from pathlib import Path

PAUSE_CHILD = str(Path(__file__).resolve())


def wait_for_marker(marker: Path, proc, log: Path | None = None, timeout: float = 600.0) -> None:
    """Wait until the child created ``marker`` (it is then blocked at the chosen call); fail if
    the child ended first (its return code and the tail of ``log``, its stderr file, in the
    message). Give the child a file, not a pipe, for its output: a full pipe would stop it
    before it reaches the pause."""
    import time

    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            err = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise AssertionError(f"the child ended ({proc.returncode}) before pausing: {err}")
        if time.monotonic() > deadline:  # a safety net only: the pause is not a race
            raise AssertionError(f"the child did not reach its pause within {timeout} s")
        time.sleep(0.05)


def _install(target: str, n: int, marker: Path) -> None:
    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, attr)
    calls = 0
    lock = threading.Lock()

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        nonlocal calls
        with lock:
            calls += 1
            pause = calls == n + 1
        if pause:
            marker.write_text(str(os.getpid()))
            threading.Event().wait()  # until the test kills this process
        return real(*args, **kwargs)

    setattr(module, attr, wrapper)


def main(argv: list[str]) -> int:
    target, n, marker, sep, *cli_args = argv
    if sep != "--":
        raise SystemExit("usage: pause_child.py module:function N marker -- cli args...")
    _install(target, int(n), Path(marker))
    from entityseg_data.cli.main import main as cli_main  # the console entry point itself

    cli_main(cli_args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
