"""Every command-line option is checked against the config dataclasses (issue 14): an option that
sets a config value is a ``ConfigOption`` generated from its field (type, choices, default None =
the config's value), and no other option may carry a config field's name unless it is listed in
``NOT_CONFIG`` with the reason (so a new flag cannot silently duplicate a config key)."""

from __future__ import annotations

import typing

import click
import pytest
from click.testing import CliRunner

from entityseg_data.cli.common import (
    CONFIG_ROOTS,
    ConfigOption,
    config_option,
    config_overrides,
    config_root,
    field_type,
)
from entityseg_data.cli.main import cli
from entityseg_data.config import all_keys

# (command path, option name) -> why it is not the config field of the same name
NOT_CONFIG = {
    ("annotate backend", "port"): "the ML backend's own port, not Label Studio's",
    ("annotate backend", "host"): "the ML backend's own interface, not Label Studio's",
    ("annotate backend", "model"): "the model the backend serves, not a training preset",
    ("annotate pull", "annotators"): "which annotators to pull, not the team",
    ("annotate push", "limit"): "images per push, not ingest.limit",
    ("demo", "port"): "the demo builds its own workspace config",
    ("eval", "boundary"): "eval runs without a workspace; its flags keep their own defaults "
    "(the workspace's evaluation section is used by training only)",
    ("eval", "max_dets"): "as eval --boundary",
    ("eval", "dilation_ratio"): "as eval --boundary",
    ("eval", "workers"): "as eval --boundary",
    ("export entityseg", "out_dir"): "the release folder, not a training run's out_dir",
    ("export hf", "out_dir"): "the release folder, not a training run's out_dir",
    ("export subsets", "out_dir"): "the release folder, not a training run's out_dir",
    ("ingest", "retry_failed"): "a run action (make failed items pending), not a setting",
    ("init", "name"): "written as the workspace name by init itself",
    ("model convert", "preset"): "the architecture of the checkpoint being converted",
    ("select", "name"): "the selection's name, not the workspace name",
    ("predict", "device"): "predict's device ('auto' = the torchrun rank's GPU)",
    ("predict", "threads"): "torch CPU threads of this run",
    ("stats", "out_dir"): "the report folder, not a training run's out_dir",
    ("rounds report", "out_dir"): "the report folder, not a training run's out_dir",
    ("stats", "limit"): "images per dataset measured, not ingest.limit",
}


def _leaf_names() -> set[str]:
    names = set()
    for root in CONFIG_ROOTS:
        names.update(k.rsplit(".", 1)[-1] for k in all_keys(config_root(root)))
    return names


def _commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    out = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])
        else:
            out.append((" ".join(path), cmd))

    for name in cli.list_commands(ctx):
        walk(cli.get_command(ctx, name), [name])
    return out


COMMANDS = _commands()


def _expected(tp):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        (tp,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return ("choice", tuple(str(a) for a in args))
    return ("plain", tp)


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_options_match_the_config(path, cmd):
    leaves = _leaf_names()
    for p in cmd.params:
        if not isinstance(p, click.Option):
            continue
        if isinstance(p, ConfigOption):
            tp = field_type(p.config_root, p.config_key)  # raises for an unknown key
            assert p.default is None, f"{path} {p.opts}: the default must be the config's"
            assert p.help, f"{path} {p.opts}: no help"
            kind, want = _expected(tp)
            if kind == "choice":
                assert isinstance(p.type, click.Choice), (path, p.opts)
                assert tuple(p.type.choices) == want, (path, p.opts)
            elif want is bool:
                assert p.is_flag and isinstance(p.type, click.types.BoolParamType), (path, p.opts)
            else:
                assert p.type.name == {int: "integer", float: "float", str: "text"}[want], (
                    path,
                    p.opts,
                    p.type,
                )
        elif p.name in leaves:
            assert (path, p.name) in NOT_CONFIG, (
                f"{path} {p.opts} has the name of a config field: make it a ConfigOption "
                "(cli.common.config_option) or list it in NOT_CONFIG with the reason"
            )


def test_not_config_lists_only_real_options():
    found = {(path, p.name) for path, cmd in COMMANDS for p in cmd.params}
    assert set(NOT_CONFIG) <= found, sorted(set(NOT_CONFIG) - found)


def test_predict_generates_its_inference_options():
    cmd = dict(COMMANDS)["predict"]
    keys = {p.config_key for p in cmd.params if isinstance(p, ConfigOption)}
    assert {
        "inference.score_thresh",
        "inference.min_area",
        "inference.max_entities",
        "inference.score_mode",
        "inference.decoder",
    } <= keys
    decoder = next(p for p in cmd.params if getattr(p, "config_key", "") == "inference.decoder")
    from entityseg_data.model.config import DECODERS

    assert tuple(decoder.type.choices) == DECODERS


def test_given_options_become_overrides_and_set_wins():
    seen = {}

    @click.command()
    @config_option("--thresh", root="model", key="inference.score_thresh", help="x")
    @config_option("--mode", root="model", key="inference.score_mode", help="x")
    @config_option(
        "--boundary/--no-boundary", root="workspace", key="evaluation.boundary", help="x"
    )
    @click.option("--set", "overrides", multiple=True)
    @click.pass_context
    def cmd(ctx, thresh, mode, boundary, overrides):
        seen["model"] = config_overrides(ctx, "model", overrides)
        seen["workspace"] = config_overrides(ctx, "workspace")

    runner = CliRunner()
    res = runner.invoke(cmd, ["--thresh", "0.5", "--no-boundary", "--set", "inference.min_area=9"])
    assert res.exit_code == 0, res.output
    assert seen == {
        "model": ["inference.score_thresh=0.5", "inference.min_area=9"],
        "workspace": ["evaluation.boundary=false"],
    }
    res = runner.invoke(cmd, ["--mode", "nope"])
    assert res.exit_code == 2 and "calibrated" in res.output  # choices from the Literal
    res = runner.invoke(cmd, ["--thresh", "high"])
    assert res.exit_code == 2


def test_a_config_option_for_a_missing_key_fails_at_definition():
    with pytest.raises(KeyError):
        config_option("--nope", root="model", key="inference.nope", help="x")(lambda: None)
