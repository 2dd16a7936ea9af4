"""Config values are validated when loaded: ranges, malformed lists, non-text files.

Probe rows 9.2 and 9.4 (/work/shared/findings/reliability_probe.md)."""

from __future__ import annotations

import dataclasses

import pytest

from entityseg_data.cli.main import main
from entityseg_data.config import (
    ConfigValueError,
    EvaluationConfig,
    IngestConfig,
    WorkspaceConfig,
    apply_overrides,
    load_workspace_config,
)
from entityseg_data.errors import ConfigError
from entityseg_data.workspace import Workspace


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """Run the console entry point in-process; (exit code, stdout + stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


# (yaml text under `ingest:`, dotted key, value as printed, allowed range as printed)
OUT_OF_RANGE = [
    ("workers: -3", "ingest.workers", "-3", ">= 1"),
    ("timeout: -1", "ingest.timeout", "-1.0", "> 0"),
    ("retries: -2", "ingest.retries", "-2", ">= 0"),
    ("phash_threshold: 999", "ingest.phash_threshold", "999", "-1 (off) or >= 0 and <= 64"),
    ("nsfw_threshold: 7", "ingest.nsfw_threshold", "7.0", ">= 0 and <= 1"),
    ("min_side: -5", "ingest.min_side", "-5", ">= 0"),
    ("max_aspect: -1", "ingest.max_aspect", "-1.0", "0 (off) or >= 1"),
    ("limit: -1", "ingest.limit", "-1", ">= 0"),
    ("max_bytes: -10", "ingest.max_bytes", "-10", ">= 0"),
]


@pytest.mark.parametrize(("line", "key", "value", "allowed"), OUT_OF_RANGE)
def test_probe_9_4_yaml_out_of_range_fails_with_file_key_value_and_range(
    tmp_path, line, key, value, allowed
):
    """probe 9.4: out-of-range values in entityseg.yaml are refused at load (they were accepted
    and printed by `config show`)."""
    path = tmp_path / "entityseg.yaml"
    path.write_text(f"ingest:\n  {line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_workspace_config(path, environ={})
    msg = str(err.value)
    assert msg == f"{path}: {key}: {value} is out of range (allowed: {allowed})"


@pytest.mark.parametrize(("line", "key", "value", "allowed"), OUT_OF_RANGE)
def test_probe_9_4_set_override_out_of_range(line, key, value, allowed):
    """probe 9.4: the same values given with --set are refused, naming the key."""
    raw = line.split(": ")[1]
    with pytest.raises(ConfigValueError) as err:
        apply_overrides(WorkspaceConfig(), [f"{key}={raw}"])
    assert err.value.key == key
    assert err.value.allowed == allowed


def test_probe_9_4_malformed_list_is_an_error_not_a_literal():
    """probe 9.4: `--set 'ingest.allowed_mime=[image/jpeg'` became the literal '[image/jpeg'."""
    with pytest.raises(
        ConfigError, match=r"ingest\.allowed_mime: '\[image/jpeg' is not a valid list"
    ):
        apply_overrides(WorkspaceConfig(), ["ingest.allowed_mime=[image/jpeg"])
    with pytest.raises(ConfigError, match=r"allowed_mime.*MIME types"):
        apply_overrides(WorkspaceConfig(), ["ingest.allowed_mime=[image/jpeg, 'x y']"])
    good = apply_overrides(WorkspaceConfig(), ["ingest.allowed_mime=[image/jpeg, image/png]"])
    assert good.ingest.allowed_mime == ("image/jpeg", "image/png")
    one = apply_overrides(WorkspaceConfig(), ["ingest.allowed_mime=image/jpeg"])
    assert one.ingest.allowed_mime == ("image/jpeg",)


def test_probe_9_4_every_construction_path_is_checked():
    """probe 9.4: one mechanism (field metadata checked in __post_init__) covers constructors,
    dataclasses.replace and nested sections; boundaries are inclusive where documented."""
    with pytest.raises(ConfigValueError, match="timeout"):
        IngestConfig(timeout=0)
    with pytest.raises(ConfigValueError, match="nsfw_threshold"):
        dataclasses.replace(IngestConfig(), nsfw_threshold=float("nan"))
    with pytest.raises(ConfigValueError, match="max_dets"):
        EvaluationConfig(max_dets=(1, 0))
    assert IngestConfig(phash_threshold=-1, max_aspect=0, nsfw_threshold=1.0).phash_threshold == -1
    assert IngestConfig(phash_threshold=64, max_aspect=1.0).max_aspect == 1.0


def test_probe_9_4_cli_options_out_of_range_name_the_option(tmp_path, capsys):
    """probe 9.4: `--min-side -5`, `--max-aspect -1`, `--limit -1`, `--nsfw-threshold 7` were
    accepted; now exit 2 with the option, the value and the range."""
    root = tmp_path / "ws"
    Workspace.create(root)
    for opt, value, allowed in (
        ("--min-side", "-5", ">= 0"),
        ("--max-aspect", "-1", "0 (off) or >= 1"),
        ("--limit", "-1", ">= 0"),
        ("--nsfw-threshold", "7", ">= 0 and <= 1"),
        ("--workers", "-3", ">= 1"),
    ):
        code, out = run_cli(capsys, "-w", str(root), "ingest", f"folder:{tmp_path}", opt, value)
        assert code == 2, (opt, out)
        assert f"error: {opt}: " in out and f"(allowed: {allowed})" in out, out
    (root / "entityseg.yaml").write_text("ingest:\n  timeout: -1\n", encoding="utf-8")
    code, out = run_cli(capsys, "-w", str(root), "config", "show")
    assert code == 2
    assert "ingest.timeout: -1.0 is out of range (allowed: > 0)" in out


def test_probe_9_2_binary_yaml_names_the_file(tmp_path, capsys):
    """probe 9.2: binary bytes in entityseg.yaml gave `error (UnicodeDecodeError)` without the
    file name; now one ConfigError naming the file."""
    root = tmp_path / "ws"
    ws = Workspace.create(root)
    ws.config_path.write_bytes(b"\x00\xff\xfe garbage \x89PNG\r\n")
    with pytest.raises(ConfigError) as err:
        ws.config()
    assert str(ws.config_path) in str(err.value) and "not a UTF-8 text file" in str(err.value)
    code, out = run_cli(capsys, "-w", str(root), "config", "show")
    assert code == 2
    assert str(ws.config_path) in out and "UnicodeDecodeError" not in out
