"""Field helpers for config sections: secrets and allowed values (ranges, patterns, choices).

One mechanism validates every config value: a field declares what it allows in its metadata
(:func:`bounded`, :func:`secret_field`), and :class:`Checked`, the base of every config section,
checks all fields in ``__post_init__``. So a section is validated however it is built (from a
YAML file, an override, :func:`dataclasses.replace` or a plain constructor call), and an error
names the key, the value and what is allowed::

    ingest.timeout: -1.0 is out of range (allowed: > 0)

Kept apart from :mod:`entityseg_data.config` so that sections import nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from entityseg_data.errors import ConfigError

SECRET = "secret"
ALLOWED = "allowed"


class ConfigValueError(ConfigError):
    """A config value outside what its field allows; ``key`` is the dotted key."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: {value!r} is out of range (allowed: {allowed})")

    def under(self, prefix: str) -> ConfigValueError:
        """The same error with its key under ``prefix`` (``ingest`` + ``timeout``)."""
        return ConfigValueError(
            f"{prefix}.{self.key}" if prefix else self.key, self.value, self.allowed
        )


@dataclass(frozen=True)
class Allowed:
    """What a field accepts. Numbers: ``ge``/``gt``/``le``/``lt`` bounds, ``off`` a value that is
    accepted outside the bounds (e.g. 0 = disabled); sequences: every item is checked, and
    ``pattern`` (a full-match regex) applies to strings; ``nonempty`` rejects empty values."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    off: float | None = None
    pattern: str | None = None
    nonempty: bool = False
    text: str | None = None

    def describe(self) -> str:
        if self.text is not None:
            return self.text
        parts = []
        lo = f">= {_num(self.ge)}" if self.ge is not None else None
        lo = f"> {_num(self.gt)}" if self.gt is not None else lo
        hi = f"<= {_num(self.le)}" if self.le is not None else None
        hi = f"< {_num(self.lt)}" if self.lt is not None else hi
        if lo and hi:
            parts.append(f"{lo} and {hi}")
        elif lo or hi:
            parts.append(lo or hi or "")
        if self.pattern is not None:
            parts.append(f"text matching {self.pattern}")
        text = ", ".join(parts) or "any value"
        if self.off is not None:
            text = f"{_num(self.off)} (off) or {text}"
        if self.nonempty:
            text = f"a non-empty list of {text}" if self.pattern or lo or hi else "non-empty"
        return text

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (tuple, list)):
            if self.nonempty and not value:
                return False
            return all(self._accepts_one(v) for v in value)
        if self.nonempty and value in ("", None):
            return False
        return self._accepts_one(value)

    def _accepts_one(self, value: Any) -> bool:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.off is not None and value == self.off:
                return True
            if isinstance(value, float) and math.isnan(value):
                return False
            return (
                (self.ge is None or value >= self.ge)
                and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le)
                and (self.lt is None or value < self.lt)
            )
        if isinstance(value, str) and self.pattern is not None:
            return re.fullmatch(self.pattern, value) is not None
        return True


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    off: float | None = None,
    pattern: str | None = None,
    nonempty: bool = False,
    text: str | None = None,
) -> Any:
    """A field with a default and the values it allows (checked by :class:`Checked`).

    ``bounded(30.0, gt=0)`` is a positive number; ``bounded(0.0, ge=1, off=0)`` is 0 (off) or
    at least 1; ``bounded(("image/jpeg",), pattern=r"[a-z]+/[a-z0-9.+-]+", nonempty=True)`` a
    non-empty tuple of MIME types. ``text`` replaces the generated description of what is
    allowed in error messages."""
    allowed = Allowed(
        ge=ge, gt=gt, le=le, lt=lt, off=off, pattern=pattern, nonempty=nonempty, text=text
    )
    return field(default=default, metadata={ALLOWED: allowed})


def secret_field(default: str = "", env: str | None = None) -> Any:
    """A string field that is never printed in clear; ``env`` names an environment variable that
    provides it (read by :func:`entityseg_data.config.env_overrides`)."""
    return field(default=default, metadata={SECRET: True, "env": env})


def check_fields(obj: Any) -> None:
    """Raise :class:`ConfigValueError` for the first field of dataclass ``obj`` whose value its
    metadata does not allow."""
    for f in dataclasses.fields(obj):
        allowed = f.metadata.get(ALLOWED)
        if allowed is None:
            continue
        value = getattr(obj, f.name)
        if not allowed.accepts(value):
            raise ConfigValueError(f.name, value, allowed.describe())


class Checked:
    """Base of config sections: validates every field's allowed values after ``__init__``."""

    def __post_init__(self) -> None:
        check_fields(self)


__all__ = [
    "ALLOWED",
    "SECRET",
    "Allowed",
    "Checked",
    "ConfigValueError",
    "bounded",
    "check_fields",
    "secret_field",
]
