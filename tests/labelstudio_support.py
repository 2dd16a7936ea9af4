"""A real Label Studio for tests, shared by every test area (a pytest plugin loaded by
tests/conftest.py): the migrated template data dir and the session fixture ``labelstudio``.

The first session builds a migrated template data dir (first boot: ~30-70 s on 2 cores) with an
admin account and its personal access token, under ``$ENTITYSEG_LS_TEMPLATE`` or
``~/.cache/entityseg-data/ls-template-<version>``; sessions and tests copy it (boot ~6-10 s).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ADMIN_EMAIL = "admin@entityseg.test"
ADMIN_PASSWORD = "entityseg-admin-pw"


def template_dir() -> Path:
    env = os.environ.get("ENTITYSEG_LS_TEMPLATE")
    if env:
        return Path(env)
    try:
        from importlib.metadata import version

        v = version("label-studio")
    except Exception:
        v = "unknown"
    return Path.home() / ".cache" / "entityseg-data" / f"ls-template-{v}"


def build_template(dest: Path) -> dict:
    from entityseg_data.annotation.labelstudio.accounts import personal_access_token
    from entityseg_data.annotation.labelstudio.server import LabelStudioServer

    tmp = dest.with_name(dest.name + f".building-{uuid.uuid4().hex[:6]}")
    server = LabelStudioServer(data_dir=tmp, username=ADMIN_EMAIL, password=ADMIN_PASSWORD, port=0)
    server.start(timeout=600)
    try:
        token = personal_access_token(server.url, ADMIN_EMAIL, ADMIN_PASSWORD)
    finally:
        server.stop()
    meta = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "token": token}
    (tmp / "template.json").write_text(json.dumps(meta))
    os.chmod(tmp / "template.json", 0o600)
    if dest.exists():  # another session won the race
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(dest)
    return json.loads((dest / "template.json").read_text())


def ensure_template() -> tuple[Path, dict]:
    """The migrated template data dir (built on first use) and its admin ``{email, password,
    token}``."""
    template = template_dir()
    if not (template / "template.json").exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        return template, build_template(template)
    return template, json.loads((template / "template.json").read_text())


@dataclass
class LabelStudioSession:
    """The session's running server and helpers."""

    server: object
    root: Path  # Local Files document root: create workspaces under it
    admin_token: str = field(repr=False)
    _users: dict = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin(self):
        from entityseg_data.annotation.labelstudio.client import LabelStudioClient

        return LabelStudioClient(url=self.url, token=self.admin_token)

    def user_token(self, name: str) -> str:
        """Personal access token of user ``name@entityseg.local`` (signed up on first use)."""
        from entityseg_data.annotation.labelstudio.accounts import signup_user

        if name not in self._users:
            self._users[name] = signup_user(
                self.url, self.admin_token, f"{name}@entityseg.local", f"pw-{name}-12345"
            )
        return self._users[name]

    def workspace(self, name: str, overrides: tuple[str, ...] = ()):
        """A new workspace under the document root, with credentials for this server."""
        from entityseg_data.annotation.labelstudio.session import write_credentials
        from entityseg_data.config import WorkspaceConfig, apply_overrides
        from entityseg_data.workspace import Workspace

        cfg = apply_overrides(
            WorkspaceConfig(name=name),
            [f"labelstudio.document_root={self.root}", f"labelstudio.url={self.url}", *overrides],
        )
        ws = Workspace.create(self.root / f"{name}-{uuid.uuid4().hex[:6]}", cfg)
        creds = {
            "url": self.url,
            "admin": {"email": ADMIN_EMAIL, "token": self.admin_token},
            "annotators": {},
        }
        for user, tok in self._users.items():
            creds["annotators"][user] = {"email": f"{user}@entityseg.local", "token": tok}
        write_credentials(ws, creds)
        return ws


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory):
    """A running Label Studio (loopback, free port) for the whole test session."""
    pytest.importorskip("label_studio")
    from entityseg_data.annotation.labelstudio.server import LabelStudioServer, copy_data_dir

    template, meta = ensure_template()
    base = tmp_path_factory.mktemp("labelstudio")
    data = copy_data_dir(template, base / "data")
    root = base / "root"
    root.mkdir()
    server = LabelStudioServer(data_dir=data, document_root=root, port=0)
    server.start(timeout=300)
    try:
        yield LabelStudioSession(server=server, root=root, admin_token=meta["token"])
    finally:
        server.stop()
