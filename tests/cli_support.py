"""Run the ``entityseg-data`` console entry point in the test process.

A subprocess per command costs an interpreter and a torch import (2-8 s on a loaded 2-core
machine); in-process, a command costs what it does. Use a subprocess only where the process
boundary is the point (signals, kill and resume, what a fresh interpreter imports)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from unittest import mock


@dataclass(frozen=True)
class CliResult:
    """What a finished command left: like ``subprocess.CompletedProcess`` (text mode)."""

    returncode: int
    stdout: str
    stderr: str
    args: tuple[str, ...]


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def run_cli(
    *args: object, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None
) -> CliResult:
    """``entityseg-data ARGS`` in-process: exit code, stdout and stderr (log records included,
    formatted as the CLI formats them). Process-wide state a command changes is put back: the
    root logger's handlers and level, torch's intra-op thread count, the environment."""
    from entityseg_data.cli.main import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    threads = _torch_threads()
    code = 0
    environ = {"HF_HUB_OFFLINE": "1", **(env or {})}
    with mock.patch.dict(os.environ, environ), contextlib.chdir(cwd or os.getcwd()):
        # no handler on the root logger: the CLI's logging.basicConfig installs its own, on
        # the redirected stderr (as in a fresh process)
        root.handlers = []
        root.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                    if isinstance(exc.code, str):
                        err.write(exc.code + "\n")
        finally:
            for h in root.handlers:
                if h not in handlers:
                    h.close()
            root.handlers = handlers
            root.setLevel(level)
            if threads is not None:
                sys.modules["torch"].set_num_threads(threads)
    return CliResult(code, out.getvalue(), err.getvalue(), tuple(argv))


def dies_with_this_process(also: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` for a command a test starts (``annotate server``, the demo): the kernel
    SIGKILLs the command when this process dies (PR_SET_PDEATHSIG, kept across exec), so a test
    run killed from outside (a CI timeout, a second Ctrl-C) leaves no command running, and through
    the command's own guarantee no Label Studio either. Call it in the thread that starts the
    command and outlives it (the test's). ``also`` runs in the child too."""
    from entityseg_data.procs import die_with_parent  # imported here, not after the fork

    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(parent)
        if also is not None:
            also()

    return preexec
