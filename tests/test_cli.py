from __future__ import annotations

import json
import subprocess
import sys

import cli_support
import pytest
from click.testing import CliRunner

from entityseg_data.cli.main import COMMANDS, cli


def run(*args, env=None, cwd=None):
    """The CLI in this process (tests/cli_support.py)."""
    return cli_support.run_cli(*args, env={"HF_DATASETS_OFFLINE": "1", **(env or {})}, cwd=cwd)


def test_help_does_not_import_torch():
    code = (
        "import sys; from entityseg_data.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'label_studio_sdk', 'open_clip', 'datasets', 'pandas')"
        " if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_every_group_help_is_light():
    # each command's --help imports its module; none may import torch at module level
    for name in COMMANDS:
        code = (
            "import sys; from entityseg_data.cli.main import main\n"
            f"try:\n    main([{name!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert "TORCH False" in out.stdout, (name, out.stdout, out.stderr)


def test_exit_codes_and_one_line_errors(tmp_path):
    ok = run("init", str(tmp_path / "ws"))
    assert ok.returncode == 0, ok.stderr
    usage = run("init")
    assert usage.returncode == 2
    nosuch = run("no-such-command")
    assert nosuch.returncode == 2
    again = run("init", str(tmp_path / "ws"))
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0
    assert again.stderr.startswith("error: ") and "Traceback" not in again.stderr
    debug = run("--debug", "init", str(tmp_path / "ws"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    bad_set = run("-w", str(tmp_path / "ws"), "config", "show", "--set", "ingest.min_sid=3")
    assert bad_set.returncode == 2
    assert "did you mean 'ingest.min_side'" in bad_set.stderr


def test_status_and_config_show_mask_secrets(tmp_path):
    ws = tmp_path / "ws"
    assert run("init", str(ws), "--set", "ingest.min_side=1234").returncode == 0
    st = run("-w", str(ws), "status", "--json")
    assert st.returncode == 0
    assert json.loads(st.stdout)["images"] == 0
    shown = run(
        "-w", str(ws), "config", "show", "--json", env={"LABEL_STUDIO_API_KEY": "very-secret-token"}
    )
    data = json.loads(shown.stdout)
    assert data["ingest"]["min_side"] == 1234
    assert data["labelstudio"]["api_key"] == "********"
    assert "very-secret-token" not in shown.stdout + shown.stderr
    # workspace found from a subfolder
    sub = run("status", cwd=ws / "images")
    assert sub.returncode == 0 and str(ws) in sub.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_has_examples(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output


PROBE_LOGS = """
import logging, sys
from entityseg_data.cli.main import cli

@cli.command("probe-logs")
def probe_logs():
    logging.getLogger("some_library").info("THIRD-PARTY-INFO")
    logging.getLogger("some_library").warning("THIRD-PARTY-WARNING")
    logging.getLogger("entityseg_data.probe").info("OUR-INFO")
    logging.getLogger("entityseg_data.probe").debug("OUR-DEBUG")

cli.main(args=sys.argv[1:] + ["probe-logs"], prog_name="entityseg-data", standalone_mode=False)
"""


@pytest.mark.parametrize(
    ("flags", "shown", "hidden"),
    [
        ([], {"OUR-INFO", "THIRD-PARTY-WARNING"}, {"THIRD-PARTY-INFO", "OUR-DEBUG"}),
        (["-q"], {"THIRD-PARTY-WARNING"}, {"OUR-INFO", "THIRD-PARTY-INFO", "OUR-DEBUG"}),
        (["-vv"], {"OUR-INFO", "OUR-DEBUG", "THIRD-PARTY-WARNING"}, {"THIRD-PARTY-INFO"}),
        (["-vvv"], {"OUR-INFO", "OUR-DEBUG", "THIRD-PARTY-INFO"}, set()),
    ],
)
def test_third_party_info_logs_stay_out_of_the_terminal(flags, shown, hidden):
    """In a process of its own (as `entityseg-data` runs) the CLI shows the library's progress
    messages and other libraries' warnings, not their INFO chatter (open_clip logs its model
    creation at INFO on the root logger: it filled the demo's terminal)."""
    err = subprocess.run(
        [sys.executable, "-c", PROBE_LOGS, *flags], capture_output=True, text=True, check=True
    ).stderr
    assert all(s in err for s in shown), err
    assert not any(s in err for s in hidden), err
