"""``entityseg-data demo``: the whole curation loop on bundled samples."""

from __future__ import annotations

import click


@click.command("demo")
@click.argument("directory", type=click.Path(file_okay=False), default="demo_workspace")
@click.option(
    "--simulate",
    is_flag=True,
    help="Let two SIMULATED annotators annotate through the Label Studio API and run the rest "
    "of the loop (agreement, statistics, exports, training, pre-annotation).",
)
@click.option(
    "--labelstudio-url",
    default="",
    help="Use this Label Studio server (token from LABEL_STUDIO_API_KEY) instead of starting one "
    "in the workspace.",
)
@click.option("--port", type=int, default=0, help="Port of the local Label Studio (0 = free).")
@click.option(
    "--synthetic",
    "n_synthetic",
    type=int,
    default=3,
    show_default=True,
    help="Number of synthetic high-resolution scenes.",
)
@click.option(
    "--train-steps",
    type=int,
    default=8,
    show_default=True,
    help="Steps of the tiny fine-tuning run.",
)
@click.option("--keep-server", is_flag=True, help="Leave Label Studio running at the end.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Without --simulate: return after the push instead of keeping Label Studio "
    "running until Ctrl-C.",
)
def demo(
    directory, simulate, labelstudio_url, port, n_synthetic, train_steps, keep_server, no_wait
):
    """Run the curation loop on bundled sample images in workspace DIRECTORY.

    Creates the workspace, ingests scikit-image photos and synthetic high-resolution scenes
    (from a folder and from a URL list served on 127.0.0.1), pre-annotates them, starts a local
    Label Studio and pushes stage 1. Without --simulate it stops there and says how to annotate
    and continue. With --simulate two clearly labelled simulated annotators annotate both
    stages through the API, then agreement, statistics, exports, a tiny fine-tuning run and a
    second pre-annotation round follow. A rerun after an interruption continues where it
    stopped.

    \b
    Example:
      entityseg-data demo demo_workspace --simulate
      entityseg-data demo my_demo            # then annotate in the browser
      LABEL_STUDIO_API_KEY=... entityseg-data demo d --simulate \\
          --labelstudio-url http://127.0.0.1:8080
    """
    from entityseg_data.demo.pipeline import DemoOptions, run_demo
    from entityseg_data.procs import terminate_on_signals

    opts = DemoOptions(
        directory=directory,
        simulate=simulate,
        labelstudio_url=labelstudio_url,
        port=port,
        n_synthetic=n_synthetic,
        train_steps=train_steps,
        keep_server=keep_server,
        wait=not no_wait,
    )
    # SIGTERM/SIGHUP/Ctrl-C raise before Label Studio starts, so the demo always stops it
    with terminate_on_signals():
        run_demo(opts, echo=lambda line: click.echo(line))
