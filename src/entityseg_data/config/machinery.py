"""Frozen dataclass configs with typed ``dotted.key=value`` overrides: the generic machinery.

Every configurable part of the toolkit is a frozen dataclass; the field (its type, default and
allowed values) is the single source of truth. This module provides:

* :func:`to_dict` / :func:`from_dict` serialise to plain JSON/YAML-able dicts, strictly (unknown
  keys are errors naming the closest valid key; values outside a field's allowed range are errors
  naming the key, the value and the range: see :mod:`entityseg_data.config_fields`);
* :func:`apply_overrides` applies ``["a.b=1", "c=[1,2]"]`` parsed against the field types;
* :func:`env_overrides` reads ``ENTITYSEG__SECTION__KEY=value`` environment variables;
* fields declared with ``secret_field()`` are masked by :func:`masked_dict`;
* :func:`load_yaml_config` reads a YAML file into a config class (errors name the file).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, cast, get_args, get_origin, get_type_hints

from entityseg_data.config_fields import SECRET, ConfigValueError, secret_field  # noqa: F401
from entityseg_data.errors import ConfigError

T = TypeVar("T")

ENV_PREFIX = "ENTITYSEG__"
MASK = "********"


_HINTS: dict[type, Mapping[str, Any]] = {}


def _hints(cls: type) -> Mapping[str, Any]:
    """The resolved field types of a config dataclass (read-only), resolved once per class:
    ``get_type_hints`` evaluates every string annotation again (~0.3 ms for a small class), and a
    workspace config load, override or save asks for them over and over."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = types.MappingProxyType(get_type_hints(cls))
    return hints


def _closest(name: str, options: Iterable[str]) -> str:
    options = list(options)
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.0)
    return match[0] if match else (options[0] if options else "")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (a parsed YAML/JSON value or a string) to the annotated type ``tp``.

    Raises :class:`ConfigError` naming ``key`` and the expected type when it cannot.
    """
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_dict(tp, value, prefix=key)
        raise ConfigError(f"{key}: expected a mapping for section {tp.__name__}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value
            value = _parse_scalar(text, strict=True, key=key)
            if not isinstance(value, (list, tuple)):
                value = [text if isinstance(value, str) else value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if isinstance(value, str):
            value = _parse_scalar(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: expected bool, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected int, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected float, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected str, got {value!r}")
    return value


def _parse_scalar(text: str, *, strict: bool = False, key: str = "") -> Any:
    """Parse the right-hand side of an override as YAML (so ``[1, 2]``, ``true``, ``0.5`` work).

    Text that is not valid YAML stays text, unless ``strict`` (list-typed keys: ``[image/jpeg``
    is a malformed list, not a one-item list), which raises ConfigError naming ``key``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if strict:
            problem = str(getattr(exc, "problem", "") or "not valid YAML")
            raise ConfigError(
                f"{key}: {text!r} is not a valid list ({problem}); write [a, b] or a single value"
            ) from None
        return text


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cast(Any, cls))]
    kwargs = {}
    for k, v in data.items():
        full = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            near = _closest(str(k), names)
            near_full = f"{prefix}.{near}" if prefix else near
            raise ConfigError(f"unknown config key '{full}' (did you mean '{near_full}'?)")
        kwargs[k] = coerce(v, hints[k], full)
    try:
        return cls(**kwargs)
    except ConfigValueError as exc:
        raise exc.under(prefix) from None


def to_dict(obj: Any) -> Any:
    """Plain-data (JSON/YAML serialisable) form of a config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def masked_dict(obj: Any) -> Any:
    """Like :func:`to_dict` but secret fields are replaced by ``********`` (or '' when unset)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get(SECRET):
                out[f.name] = MASK if value else ""
            else:
                out[f.name] = masked_dict(value)
        return out
    return to_dict(obj)


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a config dataclass type."""
    keys = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        full = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys.extend(all_keys(tp, full))
        else:
            keys.append(full)
    return keys


def set_key(obj: T, dotted: str, raw: Any, *, root: str = "") -> T:
    """Return a copy of ``obj`` with ``dotted`` set to ``raw`` coerced to the field's type."""
    head, _, rest = dotted.partition(".")
    names = [f.name for f in dataclasses.fields(cast(Any, obj))]
    full = f"{root}.{head}" if root else head
    if head not in names:
        valid = all_keys(type(obj))
        near = _closest(dotted, valid)
        near_full = f"{root}.{near}" if root else near
        raise ConfigError(
            f"unknown config key '{root + '.' if root else ''}{dotted}' "
            f"(did you mean '{near_full}'?)"
        )
    tp = _hints(type(obj))[head]
    current = getattr(obj, head)
    if rest:
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"'{full}' is a {_type_name(tp)}, not a section; cannot set '{rest}'")
        return _replace(obj, **{head: set_key(current, rest, raw, root=full)})
    if dataclasses.is_dataclass(tp):
        raise ConfigError(
            f"'{full}' is a section; set one of its keys, e.g. "
            f"'{full}.{dataclasses.fields(tp)[0].name}=...'"
        )
    value = raw if not isinstance(raw, str) else (raw if tp is str else _parse_scalar(raw))
    if tp is str and not isinstance(raw, str):
        value = raw
    try:
        coerced = coerce(value, tp, full)
    except ConfigError as exc:
        if "is not a valid list" in str(exc):
            raise
        raise ConfigError(f"{full}: expected {_type_name(tp)}, got {raw!r}") from None
    try:
        return _replace(obj, **{head: coerced})
    except ConfigValueError as exc:
        raise exc.under(root) from None


def _replace(obj: T, **changes: Any) -> T:
    """:func:`dataclasses.replace` for a config dataclass known only as ``T``."""
    return cast(T, dataclasses.replace(cast(Any, obj), **changes))


def parse_override(text: str) -> tuple[str, str]:
    """Split ``key=value``; raises ConfigError for text without '='."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not of the form dotted.key=value")
    return key.strip(), value.strip()


def apply_overrides(obj: T, overrides: Iterable[str] | Mapping[str, Any]) -> T:
    """Apply ``dotted.key=value`` overrides (strings, or a mapping of key to value) in order.

    ``dotted.key=value`` strings are what ``--set`` passes from the command line: a secret field
    among them is refused (argv is visible to other users and kept in the shell history), with
    the environment variable that provides it."""
    if isinstance(overrides, Mapping):
        items: Iterable[tuple[str, Any]] = overrides.items()
    else:
        items = [parse_override(o) for o in overrides]
        for key, _ in items:
            _refuse_secret(obj, key)
    for key, value in items:
        obj = set_key(obj, key, value)
    return obj


def _refuse_secret(obj: Any, dotted: str, full: str = "") -> None:
    """ConfigError when ``dotted`` names a secret field of ``obj`` (probe 8.3)."""
    full = full or dotted
    head, _, rest = dotted.partition(".")
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        if f.name != head:
            continue
        if rest:
            _refuse_secret(getattr(obj, head), rest, full)
        elif f.metadata.get(SECRET):
            env = f.metadata.get("env")
            where = f"the environment variable {env}" if env else "an environment variable"
            raise ConfigError(
                f"--set {full}: secrets are never taken from the command line (argv is visible "
                f"to other users and kept in the shell history); set {where} instead"
            )


def env_overrides(obj: T, environ: Mapping[str, str] | None = None) -> T:
    """Apply ``ENTITYSEG__SECTION__KEY=value`` variables and the ``env`` names of secret fields."""
    environ = os.environ if environ is None else environ
    for name, value in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            obj = set_key(obj, dotted, value)
    return _secret_env(obj, environ)


def _secret_env(obj: Any, environ: Mapping[str, str]) -> Any:
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            new = _secret_env(value, environ)
            if new is not value:
                changes[f.name] = new
        elif f.metadata.get("env") and environ.get(f.metadata["env"]):
            changes[f.name] = environ[f.metadata["env"]]
    return dataclasses.replace(obj, **changes) if changes else obj


def dumps_json(obj: Any) -> str:
    return json.dumps(to_dict(obj), indent=2, sort_keys=False)


def load_yaml_config(cls: type[T], path: str | os.PathLike[str] | None) -> T:
    """``cls`` from a YAML file (missing keys keep their defaults; None = all defaults).

    Errors name the file: not found, not text, not valid YAML, unknown keys, wrong types, values
    out of range."""
    if path is None:
        return cls()
    data = read_yaml_mapping(path)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_yaml_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML config file ({} for an empty file). Errors name the
    file: not found, not text, not valid YAML, not a mapping."""
    import yaml

    if not os.path.exists(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); a config file is YAML text"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        data = copy.deepcopy(_parsed_yaml(text)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


@functools.lru_cache(maxsize=32)
def _parsed_yaml(text: str) -> Any:
    """``yaml.safe_load`` of a config text, remembered by the text: PyYAML's pure-Python parser
    takes ~8 ms for a workspace config, which a process (a notebook, the test suite) reads again
    and again unchanged. Callers get a deep copy; errors are not remembered."""
    import yaml

    return yaml.safe_load(text)
