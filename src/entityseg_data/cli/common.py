"""Helpers shared by the command modules (cheap imports only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

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


def get_workspace(ctx: click.Context, required: bool = True):
    """The workspace named by ``--workspace`` / ``ENTITYSEG_WORKSPACE`` or found above the
    current folder. Returns None when not required and none is found."""
    from entityseg_data.errors import WorkspaceError
    from entityseg_data.workspace import Workspace

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
