"""Label Studio template data dir shared by every test area (annotation, demo, inference).

The first session builds a migrated template data dir (first boot: ~30-70 s on 2 cores) with an
admin account and its personal access token, under ``$ENTITYSEG_LS_TEMPLATE`` or
``~/.cache/entityseg-data/ls-template-<version>``; sessions and tests copy it (boot ~6-10 s).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

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
    from entityseg_data.annotation.server import LabelStudioServer, personal_access_token

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
