"""Start and stop a local Label Studio (the process lifecycle; accounts are in :mod:`.accounts`).

A local server keeps everything inside the workspace: ``LABEL_STUDIO_BASE_DATA_DIR`` is
``<workspace>/labelstudio`` (embedded SQLite, media, the generated ``SECRET_KEY``), it binds to
loopback (``--internal-host 127.0.0.1``), serves the workspace's images through Local Files
storage (document root = the workspace) and makes no calls out (Sentry, version check).

Traps handled here (see the project's LABEL_STUDIO.md):

* ``--data-dir`` alone still writes under the home folder: the base-data-dir variable is set;
* a busy port silently becomes port + 1: a free port is chosen first and the one that answers is
  checked;
* plain ``HOST``, ``PORT``, ``USERNAME``, ``PASSWORD`` and ``CI`` variables are read by Label
  Studio: they are removed from the child environment; the admin credentials are passed through
  ``LABEL_STUDIO_USERNAME``/``LABEL_STUDIO_PASSWORD`` (never argv);
* the child never outlives its parent (:func:`entityseg_data.procs.spawn`).

A migrated data dir can be copied: :func:`copy_data_dir` + :meth:`LabelStudioServer.start` boots in
seconds instead of the ~70 s of a first boot (the test fixture does that).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from entityseg_data import procs
from entityseg_data.errors import LabelStudioError

log = logging.getLogger(__name__)

_STRIP_ENV = ("HOST", "PORT", "USERNAME", "PASSWORD", "CI", "USER_TOKEN", "DATABASE_NAME")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def label_studio_executable() -> str:
    """The ``label-studio`` program: ``$ENTITYSEG_LABEL_STUDIO`` (e.g. one installed in its own
    environment with pipx), else the script next to the running interpreter, else on PATH."""
    env = os.environ.get("ENTITYSEG_LABEL_STUDIO", "")
    if env:
        return env
    cand = Path(sys.executable).with_name("label-studio")
    if cand.exists():
        return str(cand)
    found = shutil.which("label-studio")
    if not found:
        raise LabelStudioError(
            "label-studio is not installed; install it with: pip install 'entityseg-data[server]'"
        )
    return found


def wait_healthy(
    url: str, timeout: float = 180.0, process: subprocess.Popen | None = None
) -> float:
    """Poll ``url/health`` until it answers 200; returns the seconds waited."""
    import requests

    t0 = time.monotonic()
    while True:
        if process is not None and process.poll() is not None:
            raise LabelStudioError(
                f"Label Studio exited with code {process.returncode} before answering at {url}"
            )
        with contextlib.suppress(requests.RequestException):
            r = requests.get(url.rstrip("/") + "/health", timeout=5)
            if r.status_code == 200:
                return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise LabelStudioError(
                f"Label Studio did not answer at {url}/health in {timeout:.0f} s"
            )
        time.sleep(0.5)


@dataclass
class LabelStudioServer:
    """A Label Studio process for one data dir.

    Args:
        data_dir: the base data dir (SQLite database, media, secret key), e.g.
            ``<workspace>/labelstudio``.
        document_root: folder served by Local Files storage (the workspace root), or None.
        host: the interface to bind (loopback by default).
        port: the port; 0 picks a free one.
        username/password: the admin account created on first boot (from config/env).
        legacy_token: optionally enable legacy ``Token`` auth with this token (first boot only).
        extra_env: more environment variables for the server process.
        die_with_parent: the server is stopped by the kernel when this process dies, even by
            SIGKILL (``PR_SET_PDEATHSIG``, see :mod:`entityseg_data.procs`); False only for a
            server meant to outlive it (``demo --keep-server``).
    """

    data_dir: Path
    document_root: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    username: str = "admin@entityseg.local"
    password: str = field(default="", repr=False)
    legacy_token: str = field(default="", repr=False)
    extra_env: dict[str, str] = field(default_factory=dict)
    die_with_parent: bool = True
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self.data_dir) / "server.log"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
        for k in list(env):
            if k.startswith("LABEL_STUDIO_") or k.startswith("HEARTEX_"):
                env.pop(k)
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(Path(self.data_dir).resolve()),
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "ML_BLOCK_LOCAL_IP": "false",
                "SSRF_PROTECTION_ENABLED": "false",
                "DJANGO_DB": "sqlite",
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            }
        )
        if self.document_root is not None:
            env["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] = "true"
            env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] = str(Path(self.document_root).resolve())
        if self.username and self.password:
            env["LABEL_STUDIO_USERNAME"] = self.username
            env["LABEL_STUDIO_PASSWORD"] = self.password
        if self.legacy_token:
            env["LABEL_STUDIO_USER_TOKEN"] = self.legacy_token
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 240.0) -> LabelStudioServer:
        """Start the process and wait until ``/health`` answers on the chosen port."""
        if self.process is not None and self.process.poll() is None:
            return self
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("Label Studio will listen on %s (not loopback)", self.host)
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        elif not port_is_free(self.port, self.host):
            raise LabelStudioError(
                f"port {self.port} on {self.host} is busy (Label Studio would silently move to "
                f"port {self.port + 1}); choose another with --port"
            )
        cmd = [
            label_studio_executable(),
            "start",
            "--no-browser",
            "--data-dir",
            str(Path(self.data_dir).resolve()),
            "--internal-host",
            self.host,
            "--port",
            str(self.port),
            "--host",
            self.url,
            "--log-level",
            "WARNING",
        ]
        if self.legacy_token:
            cmd.append("--enable-legacy-api-token")
        log.info("starting Label Studio at %s (data dir %s)", self.url, self.data_dir)
        logf = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the child)
        try:
            # a stop signal is held until the handle is recorded, so stop() always finds it
            with procs.signals_deferred():
                self.process = procs.spawn(
                    cmd,
                    env=self.environment(),
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    die_with_parent=self.die_with_parent,
                )
        finally:
            logf.close()
        try:
            waited = wait_healthy(self.url, timeout=timeout, process=self.process)
        except LabelStudioError as exc:
            tail = self.log_tail()
            self.stop()
            raise LabelStudioError(f"{exc}; last log lines:\n{tail}") from None
        except BaseException:  # Ctrl-C, SIGTERM/SIGHUP (procs.Terminated) during start-up
            self.stop()
            raise
        log.info("Label Studio answered after %.1f s", waited)
        return self

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server's process group: SIGTERM, SIGKILL after ``timeout`` seconds."""
        proc = self.process
        if proc is not None:
            procs.stop_group(proc, timeout=timeout)
        self.process = None

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def copy_data_dir(template: Path, dest: Path) -> Path:
    """Copy a migrated data dir (without its log and export files)."""
    dest = Path(dest)
    if dest.exists():
        raise LabelStudioError(f"{dest} already exists; not copying a template over it")
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("server.log", "export", "*.log"))
    return dest


__all__ = [
    "LabelStudioError",
    "LabelStudioServer",
    "copy_data_dir",
    "free_port",
    "label_studio_executable",
    "port_is_free",
    "wait_healthy",
]
