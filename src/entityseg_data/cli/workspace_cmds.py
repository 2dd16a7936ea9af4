"""``init``, ``status`` and ``config`` commands."""

from __future__ import annotations

import json

import click

from entityseg_data.cli.common import get_workspace, set_option


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", default=None, help="Workspace name (default: the folder name).")
@click.option("--exist-ok", is_flag=True, help="Do nothing if DIRECTORY is already a workspace.")
@set_option
def init(directory: str, name: str | None, exist_ok: bool, overrides: tuple[str, ...]) -> None:
    """Create a dataset workspace in DIRECTORY (folders, config file, SQLite catalog).

    \b
    Example:
      entityseg-data init my_set --set ingest.min_side=1000
    """
    from pathlib import Path

    from entityseg_data.config import WorkspaceConfig, apply_overrides
    from entityseg_data.workspace import Workspace

    cfg = WorkspaceConfig(name=name or Path(directory).resolve().name)
    cfg = apply_overrides(cfg, overrides)
    ws = Workspace.create(directory, cfg, exist_ok=exist_ok)
    click.echo(f"workspace ready: {ws.root}")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Summarise a workspace: images by source, status, split, verdict and annotation stage.

    \b
    Example:
      entityseg-data -w my_set status
    """
    ws = get_workspace(ctx)
    with ws.catalog() as cat:
        summary = cat.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"workspace {ws.root} (catalog schema v{summary['schema_version']})")
    click.echo(f"images: {summary['images']}")
    for key in ("by_status", "by_source", "by_split", "by_verdict", "by_stage", "items"):
        if summary[key]:
            body = ", ".join(f"{k}={v}" for k, v in summary[key].items())
            click.echo(f"  {key.replace('_', ' ')}: {body}")


@click.group("config")
def config() -> None:
    """Show or check the effective configuration (file < environment < --set).

    \b
    Examples:
      entityseg-data config show --set ingest.min_side=2000
      entityseg-data config keys
    """


@config.command("show")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.pass_context
def config_show(ctx: click.Context, overrides: tuple[str, ...], as_json: bool) -> None:
    """Print the effective config with secrets masked.

    \b
    Example:
      LABEL_STUDIO_API_KEY=... entityseg-data config show --set ingest.min_side=2000
    """
    from entityseg_data.config import WorkspaceConfig, apply_overrides, env_overrides, masked_dict
    from entityseg_data.config.workspace import config_yaml

    ws = get_workspace(ctx, required=False)
    if ws is not None:
        cfg = ws.config(overrides)
    else:
        cfg = apply_overrides(env_overrides(WorkspaceConfig()), overrides)
    data = masked_dict(cfg)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(config_yaml(data).rstrip())


@config.command("keys")
def config_keys() -> None:
    """List every configurable dotted key."""
    from entityseg_data.config import WorkspaceConfig, all_keys

    for key in all_keys(WorkspaceConfig):
        click.echo(key)
