"""The ``entityseg-data`` command line.

Commands are imported lazily: ``entityseg-data --help`` imports neither torch nor Label Studio
(tests/test_cli.py measures it). Each command group lives in its own module, named in
:data:`COMMANDS` with its one-line help.

Exit codes: 0 success, 1 runtime error (one line ``error: ...``; ``--debug`` shows the trace),
2 usage error.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from typing import Any

import click

# name -> (module, attribute, short help). Keep the short help here so listing commands imports
# nothing.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("entityseg_data.cli.workspace_cmds", "init", "Create a dataset workspace."),
    "status": ("entityseg_data.cli.workspace_cmds", "status", "Summarise a workspace."),
    "config": ("entityseg_data.cli.workspace_cmds", "config", "Show or check the configuration."),
    "ingest": (
        "entityseg_data.cli.ingest_cmds",
        "ingest",
        "Collect images with provenance, de-duplication and filters.",
    ),
    "annotate": (
        "entityseg_data.cli.annotate_cmds",
        "annotate",
        "Two-stage annotation in Label Studio (server, push, pull, vocab, backend).",
    ),
    "select": (
        "entityseg_data.cli.select_cmds",
        "select",
        "Choose the next images to annotate (uncertainty + diversity, or random).",
    ),
    "consistency": (
        "entityseg_data.cli.eval_cmds",
        "consistency",
        "Inter-annotator consistency (mask mAP, category accuracy).",
    ),
    "eval": (
        "entityseg_data.cli.eval_cmds",
        "eval_",
        "Evaluate predictions: AP^e, AR, boundary AP.",
    ),
    "rounds": (
        "entityseg_data.cli.rounds_cmds",
        "rounds",
        "Annotation rounds: time, edits and seed AP^e per round and model version.",
    ),
    "stats": ("entityseg_data.cli.stats_cmds", "stats", "Dataset statistics (Table 2, Fig. 3)."),
    "data": ("entityseg_data.cli.stats_cmds", "data", "Validate annotation files."),
    "export": (
        "entityseg_data.cli.export_cmds",
        "export",
        "Export EntitySeg/COCO JSON (hr + lr), Hugging Face datasets, subsets.",
    ),
    "model": ("entityseg_data.cli.model_cmds", "model", "Model presets and checkpoint conversion."),
    "predict": (
        "entityseg_data.cli.predict_cmds",
        "predict",
        "Segment images into non-overlapping entities with CropFormer.",
    ),
    "train": ("entityseg_data.cli.train_cmds", "train", "Train CropFormer / Mask2Former."),
    "demo": (
        "entityseg_data.cli.demo_cmds",
        "demo",
        "Run the whole curation loop on bundled sample images.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        if cmd_name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return _unavailable(cmd_name, f"{module_name} is not part of this build")
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, why: str) -> click.Command:
    @click.command(name, help=why)
    def _cmd() -> None:
        raise click.ClickException(why)

    return _cmd


class Obj:
    """State passed to subcommands through ``ctx.obj``."""

    def __init__(self, debug: bool, verbosity: int, workspace: str | None) -> None:
        self.debug = debug
        self.verbosity = verbosity
        self.workspace_arg = workspace


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  entityseg-data init my_set
  entityseg-data ingest --workspace my_set folder:photos/ urls:urls.txt --min-side 1000
  entityseg-data annotate server --workspace my_set
  entityseg-data consistency ann1.json ann2.json
  entityseg-data predict photos/ -o out/ --model cropformer_hornet_3x
""",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", count=True, help="Less output (warnings and errors only).")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option(
    "-w",
    "--workspace",
    envvar="ENTITYSEG_WORKSPACE",
    default=None,
    help="Workspace folder (default: the one containing the current folder).",
)
@click.version_option(package_name="entityseg-data", prog_name="entityseg-data")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int, debug: bool, workspace: str | None) -> None:
    """Build, annotate, measure and use high-quality entity segmentation datasets."""
    verbosity = verbose - quiet
    # default: the library's INFO progress messages; -q: warnings only; -vv: debug. Other
    # libraries (open_clip, Label Studio's SDK, ...) show warnings only, their own INFO chatter
    # only with -vvv. Only when the process has no logging set up yet (a host that configured
    # it, such as pytest or a notebook, keeps its own)
    if not logging.getLogger().handlers:
        level = (
            logging.WARNING if verbosity < 0 else logging.INFO if verbosity <= 1 else logging.DEBUG
        )
        logging.basicConfig(
            level=logging.DEBUG if verbosity >= 3 else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        logging.getLogger("entityseg_data").setLevel(level)
    ctx.obj = Obj(debug=debug, verbosity=verbosity, workspace=workspace)


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: maps exceptions to one-line errors and exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        return cli.main(args=argv, prog_name="entityseg-data", standalone_mode=False)
    except click.exceptions.Abort as exc:
        # SIGTERM/SIGHUP in a command that stops children (procs.Terminated): 128 + signal
        signum = getattr(exc.__cause__, "signum", signal.SIGINT)
        if signum != signal.SIGINT:
            click.echo(f"stopped by {signal.Signals(signum).name}", err=True)
            sys.exit(128 + signum)
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        exc.show()
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        from entityseg_data.errors import ConfigError, EntitySegError

        if debug:
            import traceback

            traceback.print_exc()
        prefix = "error" if isinstance(exc, EntitySegError) else f"error ({type(exc).__name__})"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"{prefix}: {message}", err=True)
        if not debug and not isinstance(exc, EntitySegError):
            click.echo("(run with --debug for the traceback)", err=True)
        # a bad --set key/value or config file is a usage error
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
