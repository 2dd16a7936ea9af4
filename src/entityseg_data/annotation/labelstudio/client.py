"""A thin REST client for Label Studio (the endpoints the workflow uses, nothing more).

Authentication: a personal access token (a JWT refresh token, what ``POST /api/token/`` returns)
is exchanged for short-lived access tokens (``POST /api/token/refresh/``, ``Bearer``), renewed on
401; a legacy token (no dots) is sent as ``Authorization: Token ...``. Tokens never appear in
errors or logs.

The calls mirror label-studio-sdk 2.1.2's resources, but through ``requests`` so that paging,
retries and error messages are ours and the heavy SDK import is not needed on every command.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from entityseg_data.errors import LabelStudioError

log = logging.getLogger(__name__)

MASK = "********"
# credentials as servers and proxies echo them: an Authorization value, or a key/value pair
_AUTH_VALUE = re.compile(r"\b(Token|Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{8,}")
_KEY_VALUE = re.compile(
    r"""(?i)(["']?(?:refresh|access|token|api_key|password)["']?\s*[:=]\s*["']?)[^\s"'&,}]+"""
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (e.g. an error body from the server) with ``secrets`` and anything shaped like a
    credential (``Token ...``, ``Bearer ...``, ``"access": "..."``, ``password=...``) masked, so
    an error message never prints a token that a server or proxy reflected (probe 8.2)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{MASK}", text)


class LabelStudioClient:
    """REST calls against one Label Studio server as one user.

    Args:
        url: server base URL, e.g. ``http://127.0.0.1:8080``.
        token: personal access token (JWT) or legacy token of the user.
        timeout: seconds per HTTP request.
    """

    def __init__(self, *, url: str, token: str, timeout: float = 120.0) -> None:
        import requests

        if not token:
            raise LabelStudioError(
                f"no Label Studio API token for {url}; set LABEL_STUDIO_API_KEY or run "
                "'entityseg-data annotate server' once to create one"
            )
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.session = requests.Session()
        self._access: str | None = None
        self._access_at = 0.0
        self._user: dict[str, Any] | None = None

    # ------------------------------------------------------------------ auth and transport
    @property
    def is_jwt(self) -> bool:
        return self._token.count(".") == 2

    def _auth_header(self, renew: bool = False) -> dict[str, str]:
        if not self.is_jwt:
            return {"Authorization": f"Token {self._token}"}
        # access tokens live ~5 minutes; renew after 4
        if renew or self._access is None or time.monotonic() - self._access_at > 240:
            r = self.session.post(
                f"{self.url}/api/token/refresh/", json={"refresh": self._token}, timeout=30
            )
            if r.status_code != 200:
                raise LabelStudioError(
                    f"{self.url}: the personal access token was refused (HTTP {r.status_code}); "
                    "it may be revoked or belong to another server"
                )
            self._access = r.json()["access"]
            self._access_at = time.monotonic()
        return {"Authorization": f"Bearer {self._access}"}

    def request(self, method: str, path: str, *, expect_json: bool = True, **kwargs: Any) -> Any:
        """One API call; raises LabelStudioError naming the call and the server's message."""
        import requests

        url = path if path.startswith("http") else f"{self.url}{path}"
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(3):
            headers = {**kwargs.pop("headers", {}), **self._auth_header(renew=attempt > 0)}
            try:
                r = self.session.request(method, url, headers=headers, **kwargs)
            except requests.RequestException as exc:
                if attempt == 2:
                    raise LabelStudioError(f"{method} {path}: {exc}") from None
                time.sleep(1.0)
                continue
            if r.status_code == 401 and self.is_jwt and attempt == 0:
                continue
            if r.status_code >= 400:
                body = redact(r.text, (self._token, self._access))[:300]
                raise LabelStudioError(f"{method} {path}: HTTP {r.status_code}: {body}")
            if not expect_json:
                return r
            if r.status_code == 204 or not r.content:
                return None
            return r.json()
        raise LabelStudioError(f"{method} {path}: authentication failed")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return self.request("POST", path, json=json, params=params or None)

    def patch(self, path: str, json: Any = None) -> Any:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # ------------------------------------------------------------------ users
    def whoami(self) -> dict[str, Any]:
        if self._user is None:
            self._user = self.get("/api/current-user/whoami")
        return self._user

    def users(self) -> list[dict[str, Any]]:
        return list(self.get("/api/users/"))

    # ------------------------------------------------------------------ projects
    def projects(self) -> list[dict[str, Any]]:
        out, page = [], 1
        while True:
            data = self.get("/api/projects/", page=page, page_size=100)
            items = data["results"] if isinstance(data, dict) else data
            out.extend(items)
            if not isinstance(data, dict) or not data.get("next"):
                return out
            page += 1

    def project_by_title(self, title: str) -> dict[str, Any] | None:
        for p in self.projects():
            if p.get("title") == title:
                return p
        return None

    def create_project(self, *, title: str, label_config: str, **fields: Any) -> dict[str, Any]:
        return self.post("/api/projects/", {"title": title, "label_config": label_config, **fields})

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self.patch(f"/api/projects/{project_id}/", fields)

    def project(self, project_id: int) -> dict[str, Any]:
        return self.get(f"/api/projects/{project_id}/")

    # ------------------------------------------------------------------ storage and backends
    def local_storages(self, project_id: int) -> list[dict[str, Any]]:
        return list(self.get("/api/storages/localfiles/", project=project_id))

    def add_local_storage(self, project_id: int, path: str, title: str) -> dict[str, Any]:
        """Register a Local Files import storage (not synced: tasks are imported by the toolkit;
        the storage only authorises ``/data/local-files/?d=`` URLs under ``path``)."""
        return self.post(
            "/api/storages/localfiles/",
            {
                "project": project_id,
                "path": path,
                "title": title,
                "use_blob_urls": True,
                "regex_filter": "",
            },
        )

    def ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        return list(self.get("/api/ml/", project=project_id))

    def add_ml_backend(self, project_id: int, url: str, title: str = "entityseg") -> dict[str, Any]:
        return self.post(
            "/api/ml/", {"project": project_id, "url": url, "title": title, "is_interactive": True}
        )

    # ------------------------------------------------------------------ tasks
    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Import tasks (with ``predictions`` inside); returns the new task ids in order."""
        if not tasks:
            return []
        data = self.post(f"/api/projects/{project_id}/import", list(tasks), return_task_ids=True)
        ids = data.get("task_ids") if isinstance(data, dict) else None
        if ids is None or len(ids) != len(tasks):
            raise LabelStudioError(f"import into project {project_id} did not return task ids")
        return [int(i) for i in ids]

    def iter_tasks(
        self, project_id: int, page_size: int = 100, fields: str = "all"
    ) -> Iterator[dict[str, Any]]:
        """Every task of a project with its annotations (and predictions), page by page."""
        page = 1
        while True:
            try:
                data = self.get(
                    "/api/tasks/", project=project_id, page=page, page_size=page_size, fields=fields
                )
            except LabelStudioError as exc:
                if "HTTP 404" in str(exc) and page > 1:
                    return
                raise
            items = data.get("tasks", []) if isinstance(data, dict) else data
            yield from items
            total = data.get("total") if isinstance(data, dict) else None
            if not items or (total is not None and page * page_size >= total):
                return
            page += 1

    def task(self, task_id: int) -> dict[str, Any]:
        return self.get(f"/api/tasks/{task_id}/")

    def task_annotations(self, task_id: int) -> list[dict[str, Any]]:
        return list(self.get(f"/api/tasks/{task_id}/annotations/"))

    def create_annotation(
        self, task_id: int, result: list[dict[str, Any]], **fields: Any
    ) -> dict[str, Any]:
        """Submit an annotation as this client's user."""
        return self.post(f"/api/tasks/{task_id}/annotations/", {"result": result, **fields})

    def update_annotation(self, annotation_id: int, **fields: Any) -> dict[str, Any]:
        return self.patch(f"/api/annotations/{annotation_id}/", fields)

    def create_prediction(
        self, task_id: int, result: list[dict[str, Any]], model_version: str, score: float = 0.0
    ) -> dict[str, Any]:
        return self.post(
            "/api/predictions/",
            {"task": task_id, "result": result, "model_version": model_version, "score": score},
        )

    def export_json(self, project_id: int) -> list[dict[str, Any]]:
        """The full JSON export (every task, annotations with region ids)."""
        return list(
            self.get(
                f"/api/projects/{project_id}/export", exportType="JSON", download_all_tasks="true"
            )
        )


__all__ = ["MASK", "LabelStudioClient", "redact"]
