"""Label Studio accounts: session login, personal access tokens, sign-up through the invite link,
password resets, and the credentials file.

* Legacy API tokens are off by default: :func:`personal_access_token` logs in with a session and
  creates a personal access token (``POST /api/token/``), which the client exchanges for
  short-lived access tokens.
* Users made with ``POST /api/users/`` cannot log in: annotators are signed up through the
  organisation's invite link (:func:`signup_user`).
* The Community edition has no API to change a password: :func:`set_password` uses Django's admin
  form (``/admin/users/user/<id>/password/``) with the admin's session (the admin that
  ``annotate server`` creates is a superuser).
* Secrets (tokens, passwords) live in ``<workspace>/labelstudio/entityseg_credentials.json``,
  written 0600 from the start; they never appear in errors or logs.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.annotation.labelstudio.client import LabelStudioClient, redact
from entityseg_data.errors import ConfigError, LabelStudioError

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "entityseg_credentials.json"


def session_login(url: str, email: str, password: str) -> requests.Session:
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
    s = session_login(url, email, password)
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
            f"{redact(r.text, (password,))[:200]})"
        )
    token = r.json().get("token")
    if not token:
        raise LabelStudioError(f"no token in the answer of POST /api/token/ for {email}")
    return str(token)


def invite_link(url: str, token: str) -> str:
    """The organisation's signup-by-invite URL (needs an admin token)."""
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


def set_password(
    url: str, admin_email: str, admin_password: str, user_id: int, password: str
) -> None:
    """Set the password of user ``user_id`` through Django's admin form, logged in as the admin
    (a superuser). Raises :class:`LabelStudioError` naming the step that failed."""
    url = url.rstrip("/")
    s = session_login(url, admin_email, admin_password)
    form = f"{url}/admin/users/user/{int(user_id)}/password/"
    r = s.get(form, timeout=30)
    if r.status_code != 200:
        raise LabelStudioError(
            f"the admin password form of user {user_id} is not available (HTTP {r.status_code}); "
            f"{admin_email} must be a Label Studio superuser"
        )
    r = s.post(
        form,
        data={
            "csrfmiddlewaretoken": s.cookies.get("csrftoken", ""),
            "usable_password": "true",
            "password1": password,
            "password2": password,
        },
        headers={"Referer": form},
        timeout=30,
        allow_redirects=False,
    )
    if r.status_code not in (302, 303):
        m = re.search(r'class="errorlist[^"]*"[^>]*>\s*<li>([^<]+)<', r.text or "")
        raise LabelStudioError(
            f"Label Studio refused the new password of user {user_id} (HTTP {r.status_code}"
            + (f": {m.group(1).strip()}" if m else "")
            + ")"
        )


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
    "invite_link",
    "load_credentials",
    "personal_access_token",
    "save_credentials",
    "session_login",
    "set_password",
    "signup_user",
]
