"""Secrets never printed, never taken from argv, never sent to the wrong server (issue 15,
probe rows 8.2, 8.3, 8.4), against a fake Label Studio API on 127.0.0.1 that echoes the
``Authorization`` header in its error bodies, as some servers and proxies do."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import cli_support
import pytest

from entityseg_data.annotation.labelstudio.client import LabelStudioClient, redact
from entityseg_data.errors import LabelStudioError

TOKEN = "SeCrEtToKeN0123456789abcdef"
JWT = "eyJhbGciOi.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJlMTIzNDU2"
ACCESS = "eyJhY2Nlc3MiOi.eyJ0eXBlIjoiYWNjZXNzIn0.QUNDRVNTU0lHTkFUVVJF"


class FakeLabelStudio:
    """Every API call answers 500 with ``server error; you sent: <Authorization>``, except the
    token refresh (a fixed access token). Requests are recorded as (path, Authorization)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                auth = self.headers.get("Authorization", "")
                fake.requests.append((self.path, auth))
                if self.path.startswith("/api/token/refresh"):
                    code, body = 200, json.dumps({"access": ACCESS})
                else:
                    code, body = 500, f"server error; you sent: {auth}; body {self._body()}"
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> str:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n).decode(errors="replace") if n else ""

            do_GET = do_POST = do_PATCH = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def fake_ls():
    servers: list[FakeLabelStudio] = []

    def make() -> FakeLabelStudio:
        servers.append(FakeLabelStudio())
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _cli(ws_root, *args, api_key: str | None = None):
    """The CLI with --debug -vv, in this process (tests/cli_support.py: no interpreter start per
    command; output and log records captured as a fresh process prints them), without the
    caller's LABEL_STUDIO_* variables."""
    with mock.patch.dict(os.environ):
        for key in [k for k in os.environ if k.startswith("LABEL_STUDIO_")]:
            del os.environ[key]
        env = {"LABEL_STUDIO_API_KEY": api_key} if api_key else None
        return cli_support.run_cli("--debug", "-vv", "-w", ws_root, *args, env=env)


def _workspace(tmp_path, url: str, token: str = TOKEN):
    from entityseg_data.annotation.labelstudio.session import write_credentials
    from entityseg_data.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    write_credentials(ws, {"url": url, "admin": {"email": "admin@x.local", "token": token}})
    return ws


# ------------------------------------------------------------------------------ 8.2


@pytest.mark.parametrize("token", [TOKEN, JWT])
def test_error_bodies_echoing_the_token_are_redacted(fake_ls, token):
    """probe 8.2: a 500 whose body repeats the Authorization header (legacy `Token`, or the
    short-lived `Bearer` access token of a personal access token) never prints the token."""
    srv = fake_ls()
    client = LabelStudioClient(url=srv.url, token=token)
    with pytest.raises(LabelStudioError) as exc:
        client.get("/api/users/")
    msg = str(exc.value)
    assert "HTTP 500" in msg and "you sent" in msg  # the server's message is still shown
    assert token not in msg and ACCESS not in msg
    assert "********" in msg
    sent = [auth for path, auth in srv.requests if path.startswith("/api/users")]
    assert sent and all(token in a or ACCESS in a for a in sent)  # it really was echoed


def test_cli_never_prints_an_echoed_token(fake_ls, tmp_path):
    """probe 8.2 through the CLI, with --debug -vv: `annotate users` against the echo server."""
    srv = fake_ls()
    ws = _workspace(tmp_path, srv.url)
    proc = _cli(ws.root, "annotate", "users", "alice", api_key=TOKEN)
    assert proc.returncode == 1
    assert "HTTP 500" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr


def test_redact_masks_credentials_in_free_text():
    text = redact(
        'you sent: Bearer abc.def.ghi123 and Token 0123456789abc; {"access": "xyz123456789", '
        '"refresh": "r3fr3sh-t0k3n"} password=hunter2&email=a@b; secret ZZZZtopZZZZ',
        secrets=("ZZZZtopZZZZ",),
    )
    for secret in ("abc.def.ghi123", "0123456789abc", "xyz123456789", "r3fr3sh-t0k3n", "hunter2"):
        assert secret not in text
    assert "ZZZZtopZZZZ" not in text and "email=a@b" in text


# ------------------------------------------------------------------------------ 8.3


@pytest.mark.parametrize(
    "args",
    [
        ("config", "show", "--set", "labelstudio.api_key=ArgvToken42"),
        ("annotate", "pull", "--set", "labelstudio.api_key=ArgvToken42"),
        ("annotate", "users", "alice", "--set", "labelstudio.password=ArgvToken42"),
    ],
)
def test_secrets_on_the_command_line_are_refused(tmp_path, args):
    """probe 8.3: `--set labelstudio.api_key=...` was accepted and silently unused; it is refused
    with where secrets come from, and the value is not repeated."""
    from entityseg_data.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    proc = _cli(ws.root, *args)
    assert proc.returncode == 2, proc.stderr
    assert "secrets are never taken from the command line" in proc.stderr
    env = "LABEL_STUDIO_PASSWORD" if "password" in args[-1] else "LABEL_STUDIO_API_KEY"
    assert env in proc.stderr
    assert "ArgvToken42" not in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ 8.4


@pytest.mark.slow
def test_set_url_wins_over_the_credentials_file_and_gets_no_stored_token(fake_ls, tmp_path):
    """probe 8.4: `--set labelstudio.url=B` when the credentials file records server A: the
    command talks to B, and the token stored for A is never sent to B."""
    a, b = fake_ls(), fake_ls()
    ws = _workspace(tmp_path, a.url, token="StoredForA0123456789")
    proc = _cli(ws.root, "annotate", "users", "alice", "--set", f"labelstudio.url={b.url}")
    assert proc.returncode == 1
    assert f"no API token for {b.url} (the stored token is for {a.url})" in proc.stderr
    assert a.requests == [] and b.requests == []
    proc = _cli(
        ws.root, "annotate", "users", "alice", "--set", f"labelstudio.url={b.url}", api_key=TOKEN
    )
    assert proc.returncode == 1 and "HTTP 500" in proc.stderr  # B answered (the echo server)
    assert a.requests == []
    assert b.requests and all(auth == f"Token {TOKEN}" for _, auth in b.requests)
    # without --set, the credentials file's server and its stored token are used
    proc = _cli(ws.root, "annotate", "users", "alice")
    assert a.requests and all(auth == "Token StoredForA0123456789" for _, auth in a.requests)
