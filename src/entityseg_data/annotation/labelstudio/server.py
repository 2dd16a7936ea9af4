"""Start and stop a local Label Studio, and get API tokens for its users.

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
* legacy API tokens are off by default: :func:`personal_access_token` logs in with a session and
  creates a personal access token (``POST /api/token/``), which the client exchanges for
  short-lived access tokens.

A migrated data dir can be copied: :func:`copy_data_dir` + :meth:`LabelStudioServer.start` boots in
seconds instead of the ~70 s of a first boot (the test fixture does that).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entityseg_data import procs
from entityseg_data.errors import ConfigError, LabelStudioError

log = logging.getLogger(__name__)

_STRIP_ENV = ("HOST", "PORT", "USERNAME", "PASSWORD", "CI", "USER_TOKEN", "DATABASE_NAME")
CREDENTIALS_FILE = "entityseg_credentials.json"


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


# ------------------------------------------------------------------------------------ tokens


def _session_login(url: str, email: str, password: str):
    """A requests session logged in through the web form (CSRF handled)."""
    import requests

    s = requests.Session()
    r = s.get(f"{url}/user/login/", timeout=30)
    r.raise_for_status()
    csrf = s.cookies.get("csrftoken", "")
    r = s.post(
        f"{url}/user/login/",
        data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{url}/user/login/"},
        timeout=30,
        allow_redirects=False,
    )
    if r.status_code not in (302, 303) or "sessionid" not in s.cookies:
        raise LabelStudioError(f"login as {email} at {url} failed (HTTP {r.status_code})")
    return s


def personal_access_token(url: str, email: str, password: str) -> str:
    """Create the user's personal access token (a JWT refresh token) through a session login.

    Label Studio keeps one per user and shows it once: a second request answers HTTP 409 (raised
    as :class:`LabelStudioError`), so store the result (e.g. :func:`save_credentials`)."""
    url = url.rstrip("/")
    s = _session_login(url, email, password)
    headers = {"X-CSRFToken": s.cookies.get("csrftoken", ""), "Referer": f"{url}/"}
    r = s.post(f"{url}/api/token/", headers=headers, timeout=30)
    if r.status_code == 409:
        raise LabelStudioError(
            f"{email} already has a personal access token and Label Studio never shows it again; "
            "use the stored one (LABEL_STUDIO_API_KEY or the workspace credentials file) or revoke "
            "it in the Label Studio UI (Account & Settings > Personal Access Token)"
        )
    if r.status_code not in (200, 201):
        raise LabelStudioError(
            f"creating a personal access token for {email} failed (HTTP {r.status_code}: "
            f"{r.text[:200]})"
        )
    token = r.json().get("token")
    if not token:
        raise LabelStudioError(f"no token in the answer of POST /api/token/ for {email}")
    return str(token)


def invite_link(url: str, token: str) -> str:
    """The organisation's signup-by-invite URL (needs an admin token)."""
    from entityseg_data.annotation.client import LabelStudioClient

    client = LabelStudioClient(url=url, token=token)
    data = client.get("/api/invite")
    link = data.get("invite_url") or data.get("link") or ""
    if not link:
        raise LabelStudioError(f"no invite link in {data!r}")
    return link if link.startswith("http") else url.rstrip("/") + link


def signup_user(url: str, admin_token: str, email: str, password: str) -> str:
    """Sign a new user up through the invite link (users created with ``POST /api/users/``
    cannot log in) and return their personal access token. An existing user just logs in."""
    import requests

    url = url.rstrip("/")
    link = invite_link(url, admin_token)
    s = requests.Session()
    r = s.get(link, timeout=30)
    r.raise_for_status()
    csrf = s.cookies.get("csrftoken", "")
    r = s.post(
        link,
        data={
            "email": email,
            "password": password,
            "csrfmiddlewaretoken": csrf,
            "allow_newsletters": "false",
            "how_find_us": "",
        },
        headers={"Referer": link},
        timeout=30,
        allow_redirects=False,
    )
    if r.status_code not in (302, 303):
        m = re.search(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<', r.text or "")
        log.debug("signup of %s answered %s (%s)", email, r.status_code, m and m.group(1))
        try:  # the account may exist already with this password
            return personal_access_token(url, email, password)
        except LabelStudioError as exc:
            raise LabelStudioError(
                f"could not sign {email} up (the account probably exists with another password) "
                f"and could not log in: {exc}; use the account's stored token or another name"
            ) from None
    return personal_access_token(url, email, password)


def save_credentials(path: Path, creds: dict[str, Any]) -> None:
    """Store tokens (secrets) in a file readable only by the owner."""
    from entityseg_data.io import atomic_write_text

    atomic_write_text(path, json.dumps(creds, indent=1), private=True)  # 0600 from the start


def load_credentials(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable credentials file: {exc}") from None


__all__ = [
    "CREDENTIALS_FILE",
    "LabelStudioError",
    "LabelStudioServer",
    "copy_data_dir",
    "free_port",
    "invite_link",
    "load_credentials",
    "personal_access_token",
    "save_credentials",
    "signup_user",
    "wait_healthy",
]
