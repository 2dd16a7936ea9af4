"""A workspace's Label Studio: start it, connect to it, manage annotator accounts, annotate.

Credentials (secrets) live in ``<workspace>/labelstudio/entityseg_credentials.json`` (mode 0600)
and in the environment; never in the YAML config, argv or logs::

    {"url": "http://127.0.0.1:8080",
     "admin": {"email": ..., "password": ..., "token": ...},
     "annotators": {"alice": {"email": "alice@entityseg.local", "password": ..., "token": ...}}}

Token precedence for the admin: ``LABEL_STUDIO_API_KEY`` (env / config) > the credentials file >
a new personal access token made by logging in with ``LABEL_STUDIO_PASSWORD`` (and stored).

Annotators are Label Studio users signed up through the organisation's invite link (users made with
``POST /api/users/`` cannot log in); each gets a personal access token, so every annotation is
written by its own account.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.annotation.labelstudio.accounts import (
    CREDENTIALS_FILE,
    load_credentials,
    personal_access_token,
    save_credentials,
    set_password,
    signup_user,
)
from entityseg_data.annotation.labelstudio.client import LabelStudioClient
from entityseg_data.annotation.labelstudio.server import LabelStudioServer
from entityseg_data.catalog import AnnotationRecord
from entityseg_data.config.annotation import LabelStudioConfig
from entityseg_data.errors import LabelStudioError

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)


def data_dir(workspace: Workspace) -> Path:
    cfg = workspace.config().labelstudio
    return Path(workspace.root) / cfg.data_dir


def credentials_path(workspace: Workspace) -> Path:
    return data_dir(workspace) / CREDENTIALS_FILE


def read_credentials(workspace: Workspace) -> dict[str, Any]:
    return load_credentials(credentials_path(workspace))


def write_credentials(workspace: Workspace, creds: Mapping[str, Any]) -> None:
    path = credentials_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_credentials(path, dict(creds))


def start_local_server(
    workspace: Workspace,
    *,
    port: int | None = None,
    host: str | None = None,
    timeout: float | None = None,
    die_with_parent: bool = True,
) -> tuple[LabelStudioServer, LabelStudioClient]:
    """Start Label Studio on the workspace's data dir and return (server, admin client).

    The admin account comes from the config (``labelstudio.username``) and
    ``LABEL_STUDIO_PASSWORD``; without a password one is generated and stored in the credentials
    file. The admin's personal access token is created on first start and stored there too.
    The server dies with this process unless ``die_with_parent`` is False (see
    :class:`LabelStudioServer`); any exception, Ctrl-C or SIGTERM during start-up stops it.
    """
    cfg = workspace.config().labelstudio
    creds = read_credentials(workspace)
    admin = dict(creds.get("admin") or {})
    password = cfg.password or admin.get("password") or secrets.token_urlsafe(16)
    email = admin.get("email") or cfg.username
    server = LabelStudioServer(
        data_dir=data_dir(workspace),
        document_root=Path(workspace.root),
        host=host or cfg.host,
        port=cfg.port if port is None else port,
        username=email,
        password=password,
        die_with_parent=die_with_parent,
    )
    server.start(timeout=timeout or cfg.start_timeout)
    try:
        token = cfg.api_key or admin.get("token")
        if not token:
            token = personal_access_token(server.url, email, password)
        client = LabelStudioClient(url=server.url, token=token)
        client.whoami()
    except BaseException:
        server.stop()
        raise
    creds["url"] = server.url
    creds["admin"] = {"email": email, "password": password, "token": token}
    write_credentials(workspace, creds)
    return server, client


def connect(
    workspace: Workspace, url: str | None = None, *, labelstudio: LabelStudioConfig | None = None
) -> LabelStudioClient:
    """The admin client for the workspace's server.

    The URL is the argument, else a ``labelstudio.url`` given as an override (``--set``: the
    section passed as ``labelstudio`` differs from the workspace's), else the credentials file
    (the server ``annotate server`` started or connected), else the config. The token is
    ``LABEL_STUDIO_API_KEY``, else the one stored in the credentials file, but only for the
    server it was stored for (never sent to another). ``labelstudio``: the config section to use
    (default: the workspace's, without overrides)."""
    base = workspace.config().labelstudio
    cfg = labelstudio or base
    creds = read_credentials(workspace)
    explicit = url or (cfg.url if cfg.url != base.url else None)  # probe 8.4
    url = explicit or creds.get("url") or cfg.url
    stored_url = str(creds.get("url") or "").rstrip("/")
    same_server = not stored_url or stored_url == url.rstrip("/")
    token = cfg.api_key or ((creds.get("admin") or {}).get("token") if same_server else None)
    if not token and cfg.password:
        token = personal_access_token(url, cfg.username, cfg.password)
        admin = {"email": cfg.username, "password": cfg.password, "token": token}
        creds.update({"url": url, "admin": admin})
        write_credentials(workspace, creds)
    if not token:
        other = "" if same_server else f" (the stored token is for {stored_url})"
        raise LabelStudioError(
            f"no API token for {url}{other}: set LABEL_STUDIO_API_KEY (a personal access token "
            "from Account & Settings) or start the server with 'entityseg-data annotate server'"
        )
    return LabelStudioClient(url=url, token=token)


def annotator_email(workspace: Workspace, name: str) -> str:
    return f"{name}@{workspace.config().labelstudio.email_domain}"


def create_annotators(
    workspace: Workspace, names: Iterable[str], admin: LabelStudioClient | None = None
) -> dict[str, str]:
    """Sign annotators up (idempotent) and return ``{name: token}``; stored in the credentials.

    Passwords are generated and stored in the credentials file (annotators can log in to the UI
    with them)."""
    admin = admin or connect(workspace)
    creds = read_credentials(workspace)
    team = dict(creds.get("annotators") or {})
    out = {}
    for name in names:
        entry = dict(team.get(name) or {})
        if not entry.get("token"):
            email = entry.get("email") or annotator_email(workspace, name)
            password = entry.get("password") or secrets.token_urlsafe(12)
            token = signup_user(admin.url, admin._token, email, password)
            entry = {"email": email, "password": password, "token": token}
            team[name] = entry
            creds["annotators"] = team
            write_credentials(workspace, creds)
            log.info("annotator %s signed up as %s", name, email)
        out[name] = entry["token"]
    return out


def annotator_client(workspace: Workspace, name: str, url: str | None = None) -> LabelStudioClient:
    """A client acting as annotator ``name`` (from the credentials file)."""
    creds = read_credentials(workspace)
    entry = (creds.get("annotators") or {}).get(name)
    if not entry or not entry.get("token"):
        raise LabelStudioError(
            f"no account for annotator {name!r}; create it with "
            f"'entityseg-data annotate users {name}'"
        )
    return LabelStudioClient(
        url=url or creds.get("url") or connect(workspace).url, token=entry["token"]
    )


def annotator_passwords(workspace: Workspace, names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{name: (email, password)}`` of annotators from the credentials file (for
    ``annotate users --show-password``: a person needs them to log in to the UI)."""
    team = read_credentials(workspace).get("annotators") or {}
    out = {}
    for name in names:
        entry = team.get(name)
        if not entry:
            raise LabelStudioError(
                f"no account for annotator {name!r}; create it with "
                f"'entityseg-data annotate users {name}'"
            )
        if not entry.get("password"):
            raise LabelStudioError(
                f"the password of {name!r} is not stored (the account was made elsewhere); "
                f"set a new one with 'entityseg-data annotate users {name} --reset-password'"
            )
        out[name] = (str(entry.get("email") or annotator_email(workspace, name)), entry["password"])
    return out


def reset_password(
    workspace: Workspace,
    name: str,
    *,
    admin: LabelStudioClient | None = None,
    labelstudio: LabelStudioConfig | None = None,
    password: str | None = None,
) -> str:
    """Give annotator ``name`` a new password (generated unless given) in Label Studio and in the
    credentials file; returns it. Needs the admin's password (credentials file or
    ``LABEL_STUDIO_PASSWORD``): the Community edition changes passwords only in its admin form."""
    cfg = labelstudio or workspace.config().labelstudio
    admin = admin or connect(workspace, labelstudio=cfg)
    creds = read_credentials(workspace)
    team = dict(creds.get("annotators") or {})
    entry = dict(team.get(name) or {})
    email = entry.get("email") or annotator_email(workspace, name)
    users = {str(u.get("email") or "").lower(): int(u["id"]) for u in admin.users()}
    if email.lower() not in users:
        raise LabelStudioError(
            f"annotator {name!r} ({email}) has no Label Studio account; create it with "
            f"'entityseg-data annotate users {name}'"
        )
    boss = dict(creds.get("admin") or {})
    admin_password = cfg.password or boss.get("password")
    if not admin_password:
        raise LabelStudioError(
            "resetting a password needs the Label Studio admin's password: set "
            "LABEL_STUDIO_PASSWORD (it is stored by 'annotate server' for servers it starts)"
        )
    new = password or secrets.token_urlsafe(12)
    set_password(
        admin.url, boss.get("email") or cfg.username, admin_password, users[email.lower()], new
    )
    entry.update({"email": email, "password": new})
    team[name] = entry
    creds["annotators"] = team
    write_credentials(workspace, creds)
    log.info("annotator %s has a new password", name)
    return new


def user_emails(client: LabelStudioClient) -> dict[int, str]:
    return {int(u["id"]): str(u.get("email") or "") for u in client.users()}


def tasks_for(workspace: Workspace, stage: int, annotator: str) -> list[AnnotationRecord]:
    """The catalog records of the tasks assigned to ``annotator`` at ``stage`` (image_id,
    ls_project_id, ls_task_id, status)."""
    with workspace.catalog() as cat:
        return [r for r in cat.annotations(stage=stage, annotator=annotator) if r.ls_task_id]


def submit_annotation(
    workspace: Workspace,
    *,
    stage: int,
    annotator: str,
    image_id: int,
    results: Sequence[dict[str, Any]] | None = None,
    annotation: Any = None,
    lead_time: float | None = None,
    client: LabelStudioClient | None = None,
) -> dict[str, Any]:
    """Submit an annotation for ``image_id`` in ``annotator``'s project, as that annotator.

    Pass Label Studio ``results`` directly, or an :class:`~entityseg_data.masks.store.
    ImageAnnotation` (its entities become brush results with their ids; stage 2 adds each
    entity's ``name`` as the per-region name, or as the flag when it is 'unknown', 'blurred' or
    '<supercategory>_other')."""
    from entityseg_data.annotation.labelstudio.format import annotation_to_results
    from entityseg_data.annotation.workflow import flag_choices

    with workspace.catalog() as cat:
        row = cat.annotation(image_id, stage, annotator)
    if row is None or not row.ls_task_id:
        raise LabelStudioError(f"image {image_id} was not pushed to {annotator} for stage {stage}")
    if results is None:
        if annotation is None:
            raise ValueError("pass results or annotation")
        flags = flag_choices(workspace.config().annotation.supercategories)
        results = annotation_to_results(annotation, with_names=stage == 2, flags=flags)
    client = client or annotator_client(workspace, annotator)
    extra = {} if lead_time is None else {"lead_time": float(lead_time)}
    return client.create_annotation(int(row.ls_task_id), list(results), **extra)


__all__ = [
    "annotator_client",
    "annotator_passwords",
    "annotator_email",
    "connect",
    "create_annotators",
    "credentials_path",
    "open_backend",
    "read_credentials",
    "reset_password",
    "start_local_server",
    "submit_annotation",
    "tasks_for",
    "user_emails",
]


def open_backend(
    workspace: Workspace, client: LabelStudioClient | None = None, *, labelstudio: Any = None
) -> Any:
    """The :class:`~entityseg_data.annotation.labelstudio.backend.LabelStudioBackend` of the
    workspace: the admin ``client`` (default: :func:`connect`), the ``labelstudio`` config section
    (default: the workspace's) and a client per annotator with a stored token (rework drafts are
    written as the annotator)."""
    from entityseg_data.annotation.labelstudio.backend import LabelStudioBackend

    client = client or connect(workspace)
    lcfg = labelstudio or workspace.config().labelstudio
    team = read_credentials(workspace).get("annotators") or {}
    clients = {
        name: LabelStudioClient(url=client.url, token=entry["token"])
        for name, entry in team.items()
        if entry.get("token")
    }
    return LabelStudioBackend(
        client, root=Path(workspace.root), config=lcfg, annotator_clients=clients
    )
