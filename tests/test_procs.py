"""entityseg_data.procs: children die with their parent; stop signals are never lost while a
child is being started (issue 15, "Label Studio never leaked": child processes never outlive their
parent). Deterministic: processes report through pipes; waits are failure bounds only."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from entityseg_data import procs

BOUND = 120.0


def _run_parent(code: str) -> tuple[subprocess.Popen, int, int]:
    """Start a parent process running ``code``, which prints a child's pid and then blocks;
    returns (parent, child pid, pidfd of the child)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,  # the parent blocks reading it
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ready, _, _ = select.select([parent.stdout], [], [], BOUND)
    assert ready, "the parent did not report its child"
    pid = int(parent.stdout.readline())
    return parent, pid, os.pidfd_open(pid)


def _assert_dies(pidfd: int) -> None:
    ready, _, _ = select.select([pidfd], [], [], BOUND)
    if not ready:  # leave nothing behind
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    os.close(pidfd)
    assert ready, "the child outlived its SIGKILLed parent"


def test_spawned_child_dies_with_a_sigkilled_parent():
    """probe LS start-up: a child started by procs.spawn gets SIGKILL when its parent is
    SIGKILLed (PR_SET_PDEATHSIG), and runs in its own process group."""
    parent, pid, fd = _run_parent(
        """
        import sys
        from entityseg_data import procs
        p = procs.spawn(["sleep", "100000"])
        print(p.pid)
        sys.stdin.read()
        """
    )
    assert os.getpgid(pid) == pid  # own group: stop_group reaches all of it
    parent.kill()
    parent.wait()
    _assert_dies(fd)


def test_spawn_without_die_with_parent_outlives_it():
    """The opt-out (``demo --keep-server``) really detaches: the control case of the test above."""
    parent, _pid, fd = _run_parent(
        """
        import sys
        from entityseg_data import procs
        p = procs.spawn(["sleep", "100000"], die_with_parent=False)
        print(p.pid)
        sys.stdin.read()
        """
    )
    parent.kill()
    parent.wait()
    ready, _, _ = select.select([fd], [], [], 0.0)
    signal.pidfd_send_signal(fd, signal.SIGKILL)
    os.close(fd)
    assert not ready


def test_pool_worker_dies_with_a_sigkilled_parent():
    """probe LS start-up, workers: a pool worker with the die_with_parent initializer does not
    outlive its SIGKILLed parent (an idle ProcessPoolExecutor worker otherwise waits forever)."""
    parent, _pid, fd = _run_parent(
        """
        import os, sys
        from concurrent.futures import ProcessPoolExecutor
        from entityseg_data import procs
        ex = ProcessPoolExecutor(1, initializer=procs.die_with_parent, initargs=(os.getpid(),))
        print(ex.submit(os.getpid).result())
        sys.stdin.read()
        """
    )
    parent.kill()
    parent.wait()
    _assert_dies(fd)


def test_a_command_a_test_starts_dies_with_the_test_process():
    """tests/cli_support.dies_with_this_process (the preexec_fn of the tests that start
    `annotate server` or run the tutorial): a test process killed from outside (a CI timeout)
    leaves no command running. The control case is the test above: a plain child outlives it."""
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    parent, _pid, fd = _run_parent(
        f"""
        import subprocess, sys
        sys.path.insert(0, {tests_dir!r})
        from cli_support import dies_with_this_process
        p = subprocess.Popen(["sleep", "100000"], preexec_fn=dies_with_this_process())
        print(p.pid)
        sys.stdin.read()
        """
    )
    parent.kill()
    parent.wait()
    _assert_dies(fd)


def test_stop_group_stops_the_whole_group():
    p = procs.spawn(["sh", "-c", "sleep 100000 & echo $!; wait"], stdout=subprocess.PIPE)
    grandchild = int(p.stdout.readline())
    fd = os.pidfd_open(grandchild)
    assert procs.stop_group(p, timeout=BOUND) is not None
    ready, _, _ = select.select([fd], [], [], BOUND)
    os.close(fd)
    p.stdout.close()
    assert ready


def test_signal_while_starting_a_child_is_held_until_it_is_recorded():
    """A SIGTERM that arrives while a child is being started is raised only after the block
    that records the child's handle, so the clean-up always finds the child."""
    recorded = []
    with pytest.raises(procs.Terminated) as info, procs.terminate_on_signals():
        with procs.signals_deferred():
            signal.raise_signal(signal.SIGTERM)  # handled at once, but held
            p = procs.spawn(["sleep", "100000"])
            recorded.append(p)
        pytest.fail("the held signal was not raised after the block")
    assert info.value.signum == signal.SIGTERM
    assert isinstance(info.value, KeyboardInterrupt)
    procs.stop_group(recorded[0], timeout=BOUND)
    assert recorded[0].returncode == -signal.SIGTERM


def test_terminate_on_signals_restores_handlers_and_keeps_ignored_ones():
    before = signal.getsignal(signal.SIGTERM)
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with procs.terminate_on_signals():
            assert isinstance(signal.getsignal(signal.SIGTERM), procs.TerminationHandler)
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # nohup stays nohup
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGHUP, old_hup)


def test_group_alive_tells_a_running_group_from_zombies():
    """A group whose members exited but were not reaped still answers ``killpg(pgid, 0)``; it is
    not alive (the demo's CI failure: an unreaped, killed Label Studio read as left running)."""
    code = "import sys; sys.stdin.read()"
    child = procs.spawn([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        assert procs.group_alive(child.pid)
        child.stdin.close()  # the child exits; not reaped yet: a zombie
        pidfd = os.pidfd_open(child.pid)
        ready, _, _ = select.select([pidfd], [], [], BOUND)
        os.close(pidfd)
        assert ready, "the child did not exit"
        os.killpg(child.pid, 0)  # still "there" for kill(2)
        assert not procs.group_alive(child.pid)
    finally:
        procs.stop_group(child, timeout=BOUND)
    assert not procs.group_alive(child.pid)


def test_stat_fields_parses_names_with_spaces_and_parentheses():
    assert procs._stat_fields("12 (a) b)) Z 1 34 34 0 -1") == ("Z", 34)
