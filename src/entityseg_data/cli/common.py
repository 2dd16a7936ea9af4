"""Helpers shared by the command modules (cheap imports only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import click

if TYPE_CHECKING:
    from entityseg_data.api.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])


def set_option(f: F) -> F:
    """``--set dotted.key=value`` (repeatable), parsed against the config dataclass types."""
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a config value, e.g. --set ingest.min_side=1000 (repeatable).",
    )(f)


@overload
def get_workspace(ctx: click.Context, required: Literal[True] = True) -> Workspace: ...


@overload
def get_workspace(ctx: click.Context, required: bool) -> Workspace | None: ...


def get_workspace(ctx: click.Context, required: bool = True) -> Workspace | None:
    """The workspace named by ``--workspace`` / ``ENTITYSEG_WORKSPACE`` or found above the
    current folder, as the public API's :class:`~entityseg_data.api.workspace.Workspace` (the
    commands call its verbs). Returns None when not required and none is found."""
    from entityseg_data.api.workspace import Workspace
    from entityseg_data.errors import WorkspaceError

    obj = ctx.find_root().obj
    arg = getattr(obj, "workspace_arg", None)
    try:
        return Workspace.open(arg) if arg else Workspace.find(".")
    except WorkspaceError:
        if required:
            raise
        return None


def echo_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print rows as a plain aligned table."""
    if not rows:
        click.echo("(none)")
        return
    columns = columns or list(rows[0])
    widths = {c: max(len(str(c)), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    click.echo("  ".join(str(c).ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


# ---------------------------------------------------------------------- options from config fields
#: config roots a :class:`ConfigOption` can name: root -> (module, class), imported on use
#: (the public API's names: the command line imports no stage)
CONFIG_ROOTS: dict[str, tuple[str, str]] = {
    "workspace": ("entityseg_data", "WorkspaceConfig"),
    "model": ("entityseg_data", "ModelConfig"),
    "train": ("entityseg_data", "TrainConfig"),
}


def config_root(root: str) -> type:
    import importlib

    module, name = CONFIG_ROOTS[root]
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def field_type(root: str, key: str) -> Any:
    """The annotated type of the dotted ``key`` under config ``root`` (KeyError if none)."""
    import dataclasses
    import typing

    cls: Any = config_root(root)
    *sections, leaf = key.split(".")
    for name in [*sections, leaf]:
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise KeyError(f"{root}: {key}: {name!r} is not under a section")
        hints = typing.get_type_hints(cls)
        if name not in hints:
            raise KeyError(f"{root}: no config key {key!r}")
        cls = hints[name]
    return cls


def click_type_of(tp: Any) -> tuple[Any, bool]:
    """``(click type, is_flag)`` for a config field type: int/float/str, bool (a flag pair),
    Literal (a Choice of its values); ``X | None`` as X. Other types are refused."""
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return click_type_of(rest[0])
    if origin is typing.Literal:
        return click.Choice([str(a) for a in args]), False
    if tp is bool:
        return click.BOOL, True
    for py, ct in ((int, click.INT), (float, click.FLOAT), (str, click.STRING)):
        if tp is py:
            return ct, False
    raise TypeError(f"no command-line type for config type {tp!r}")


class ConfigOption(click.Option):
    """A command-line option that sets one config field: ``key`` (dotted) under the config
    ``root`` (``workspace``, ``model`` or ``train``). Its click type and choices come from the
    field's annotation, its default is None (= the config's value, so a workspace file or
    ``--set`` still apply when the option is not given), and a given value becomes the override
    ``key=value`` (see :func:`config_overrides`). tests/test_cli_options.py checks every option
    of every command against the config dataclasses."""

    def __init__(self, param_decls: Any, *, root: str, key: str, **kwargs: Any) -> None:
        ctype, is_flag = click_type_of(field_type(root, key))
        self.config_root = root
        self.config_key = key
        if is_flag:
            kwargs.setdefault("is_flag", True)
        else:
            kwargs.setdefault("type", ctype)
        kwargs["default"] = None
        super().__init__(param_decls, **kwargs)


def config_option(*param_decls: str, root: str, key: str, help: str, **kwargs: Any) -> Any:
    """Decorator: a :class:`ConfigOption` (``--name/--no-name`` for a bool field)."""
    return click.option(*param_decls, cls=ConfigOption, root=root, key=key, help=help, **kwargs)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def config_overrides(ctx: click.Context, root: str, overrides: tuple[str, ...] = ()) -> list[str]:
    """``key=value`` overrides of ``root`` from the :class:`ConfigOption` s given on this command
    line, then ``overrides`` (``--set``: it wins when both name a key)."""
    out = []
    for param in ctx.command.params:
        if isinstance(param, ConfigOption) and param.config_root == root:
            value = ctx.params.get(param.name or "")
            if value is not None:
                out.append(f"{param.config_key}={_text(value)}")
    return [*out, *overrides]
