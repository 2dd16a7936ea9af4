"""Field helpers shared by config sections (kept separate so sections import nothing else)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

SECRET = "secret"


def secret_field(default: str = "", env: str | None = None) -> Any:
    """A string field that is never printed in clear; ``env`` names an environment variable that
    provides it (read by :func:`entityseg_data.config.env_overrides`)."""
    return field(default=default, metadata={SECRET: True, "env": env})
