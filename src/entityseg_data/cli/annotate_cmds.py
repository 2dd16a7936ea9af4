"""``annotate``: the two-stage Label Studio workflow (server, users, push, pull, status, vocab,
backend). Heavy imports happen inside the commands."""

from __future__ import annotations

import json

import click

from entityseg_data.cli.common import (
    config_option,
    echo_table,
    get_workspace,
    set_option,
)


@click.group("annotate")
def annotate() -> None:
    """Two-stage annotation in Label Studio: masks (stage 1), then names (stage 2).

    \b
    Example:
      entityseg-data -w my_set annotate server &
      entityseg-data -w my_set annotate users alice bob
      entityseg-data -w my_set annotate push --stage 1
      entityseg-data -w my_set annotate pull
    """


@annotate.command("server")
@config_option(
    "--port",
    root="workspace",
    key="labelstudio.port",
    help="Port (default: labelstudio.port; 0 = a free one).",
)
@config_option(
    "--host",
    root="workspace",
    key="labelstudio.host",
    help="Interface to bind (default: labelstudio.host, 127.0.0.1).",
)
@click.option(
    "--connect",
    "connect_url",
    default=None,
    help="Do not start a server: check and remember an existing one at this URL "
    "(token from LABEL_STUDIO_API_KEY).",
)
@set_option
@click.pass_context
def server(
    ctx: click.Context,
    port: int | None,
    host: str | None,
    connect_url: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Start a local Label Studio on the workspace (data in <workspace>/labelstudio, SQLite,
    loopback, images served from the workspace) and keep it running until Ctrl-C.

    The admin is labelstudio.username with LABEL_STUDIO_PASSWORD (generated when unset); its
    personal access token and the annotators' tokens are stored in
    <workspace>/labelstudio/entityseg_credentials.json (mode 0600), never printed.

    \b
    Examples:
      LABEL_STUDIO_PASSWORD=... entityseg-data -w my_set annotate server --port 8080
      LABEL_STUDIO_API_KEY=... entityseg-data -w my_set annotate server --connect http://ls:8080
    """
    from entityseg_data.api.annotation import LabelStudio
    from entityseg_data.procs import terminate_on_signals

    # SIGTERM/SIGHUP/Ctrl-C raise from here on, also during the server's start-up, so the
    # `finally` below (or the start-up's own clean-up) always stops Label Studio
    with terminate_on_signals():
        ws = get_workspace(ctx)
        if connect_url:
            ls = LabelStudio.connect(ws, connect_url, remember=True)
            click.echo(f"connected to {ls.url} as {ls.admin_email}")
            return
        # --port/--host over --set labelstudio.* over the workspace's labelstudio section
        lcfg = ws.config(overrides).labelstudio
        ls = LabelStudio.start(ws, port=lcfg.port if port is None else port, host=host or lcfg.host)
        try:
            click.echo(f"Label Studio is running at {ls.url} (admin: {ls.admin_email})")
            click.echo(f"credentials: {ls.credentials_path}; press Ctrl-C to stop")
            ls.wait()
        except KeyboardInterrupt:
            click.echo("stopping Label Studio")
        finally:
            ls.stop()


@annotate.command("users")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--show-password",
    is_flag=True,
    help="Print each annotator's login e-mail and password (to hand them over).",
)
@click.option(
    "--reset-password",
    is_flag=True,
    help="Give each annotator a new generated password (in Label Studio and the credentials "
    "file) and print it; needs the admin password (stored by 'annotate server', or "
    "LABEL_STUDIO_PASSWORD).",
)
@set_option
@click.pass_context
def users(
    ctx: click.Context,
    names: tuple[str, ...],
    show_password: bool,
    reset_password: bool,
    overrides: tuple[str, ...],
) -> None:
    """Create annotator accounts NAMES (signed up through the invite link; each gets its own
    token and a generated password, stored in the credentials file, mode 0600). Passwords are
    printed only when asked for.

    \b
    Examples:
      entityseg-data -w my_set annotate users alice bob
      entityseg-data -w my_set annotate users alice --show-password
      entityseg-data -w my_set annotate users alice --reset-password
    """
    from entityseg_data.api.annotation import LabelStudio

    ws = get_workspace(ctx)
    ls = LabelStudio.connect(ws, config=ws.config(overrides))
    ls.create_annotators(names)
    if reset_password:
        for name in names:
            new = ls.reset_password(name)
            click.echo(f"{name}: {ls.annotator_email(name)} password: {new} (new)")
        return
    if show_password:
        for name, (email, password) in ls.annotator_passwords(names).items():
            click.echo(f"{name}: {email} password: {password}")
        return
    for name in names:
        click.echo(f"{name}: {ls.annotator_email(name)} (token and password stored)")
    click.echo(f"log-in details: entityseg-data annotate users {' '.join(names)} --show-password")


@annotate.command("push")
@click.option("--stage", type=click.Choice(["1", "2"]), required=True, help="Stage to push.")
@click.option("--limit", type=int, default=None, help="Push at most N images.")
@click.option(
    "--selection",
    default=None,
    metavar="NAME",
    help="Push exactly the images of this selection (see `entityseg-data select`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@set_option
@click.pass_context
def push_cmd(
    ctx: click.Context,
    stage: str,
    limit: int | None,
    selection: str | None,
    as_json: bool,
    overrides: tuple[str, ...],
) -> None:
    """Create/update the stage's projects (one per annotator) and import tasks for images not
    pushed yet, with pre-annotations (stage 1: the predictions table; stage 2: the approved
    stage-1 masks with their ids).

    \b
    Examples:
      entityseg-data -w my_set annotate push --stage 1 --set annotation.annotators=[alice,bob]
      entityseg-data -w my_set annotate push --stage 2
      entityseg-data -w my_set annotate push --stage 1 --selection round-2
    """
    from tqdm import tqdm

    from entityseg_data.api.annotation import LabelStudio

    ws = get_workspace(ctx)
    # one config for the connection and the workflow
    ls = LabelStudio.connect(ws, config=ws.config(overrides))
    bar = tqdm(total=0, unit="img", desc=f"push stage {stage}", disable=as_json)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    rep = ws.annotation(ls, overrides=overrides).push(
        int(stage), limit=limit, selection=selection, progress=progress
    )
    bar.close()
    if as_json:
        click.echo(json.dumps(rep.to_json(), indent=2))
        return
    click.echo(
        f"stage {stage}: {rep.images} images, {rep.tasks} tasks ({rep.overlap_images} overlap "
        f"images), {rep.recovered} recovered, {len(rep.errors)} errors"
    )
    if rep.selection is not None and rep.not_eligible:
        click.echo(
            f"  selection {rep.selection}: {len(rep.not_eligible)} images not eligible "
            f"(pushed already or no longer accepted): {rep.not_eligible[:20]}"
        )
    for a, pid in rep.projects.items():
        click.echo(f"  {a}: {ls.url}/projects/{pid}")
    for e in rep.errors[:20]:
        click.echo(f"  image {e['image_id']}: {e['error']}", err=True)


@annotate.command("pull")
@click.option("--stage", type=click.Choice(["1", "2", "all"]), default="all", show_default=True)
@click.option("--annotator", "annotators", multiple=True, help="Only these annotators.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the QA report (JSON).")
@set_option
@click.pass_context
def pull_cmd(
    ctx: click.Context,
    stage: str,
    annotators: tuple[str, ...],
    report: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Read the annotations, convert them exactly (brush RLE -> COCO RLE), resolve overlaps by
    the annotator's intent, run QA per task and annotator, write masks into the workspace and
    statuses into the catalog, send rejected ones back to their annotator for rework, approve.

    Resumable: what was pulled is kept; a re-run only converts new or changed annotations.

    \b
    Example:
      entityseg-data -w my_set annotate pull --stage 1 --report qa.json
      entityseg-data -w my_set annotate pull --set annotation.overlap_policy=smaller_wins
    """
    from tqdm import tqdm

    from entityseg_data.api.annotation import LabelStudio
    from entityseg_data.io import atomic_write_json

    ws = get_workspace(ctx)
    # one config for the connection and the workflow
    ls = LabelStudio.connect(ws, config=ws.config(overrides))
    stages = (1, 2) if stage == "all" else (int(stage),)
    bar = tqdm(unit="task", desc="pull")

    def on_task(*_: object) -> None:
        bar.update(1)

    # through the API: it also scores each seed against the submission for `rounds report`
    reports = ws.annotation(ls, overrides=overrides).pull(
        stages,
        annotators=annotators or None,
        progress=on_task,
    )
    bar.close()
    for s, rep in reports.items():
        click.echo(
            f"stage {s}: {rep.tasks} tasks, {rep.pulled} pulled ({rep.rejected} rejected, "
            f"{rep.sent_back} sent back for rework), {rep.unchanged} unchanged, "
            f"{rep.unannotated} not annotated, {rep.in_rework} in rework, {rep.approved} approved"
        )
        if rep.moved:
            moved = ", ".join(f"{k}={v}" for k, v in sorted(rep.moved.items()))
            click.echo(f"  overlap rule moved (px): {moved}")
        for a, counts in rep.findings.items():
            if counts:
                click.echo(f"  {a}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if report:
        atomic_write_json(report, {s: r.to_json() for s, r in reports.items()}, indent=1)
        click.echo(f"QA report: {report}")


@annotate.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Annotation progress per stage and annotator: tasks pushed, pulled, in rework (rejected
    by QA and sent back to the annotator), rejected and approved, with QA finding counts.

    \b
    Example:
      entityseg-data -w my_set annotate status
    """
    from collections import Counter

    ws = get_workspace(ctx)
    with ws.catalog() as cat:
        rows = cat.annotations()
    table: dict[tuple[int, str], Counter] = {}
    for r in rows:
        c = table.setdefault((r.stage, r.annotator), Counter())
        c[r.status] += 1
        for f in (r.qa or {}).get("findings", []):
            c["qa:" + f["check"]] += 1
    main = ("pushed", "pulled", "rework", "rejected", "approved")
    out = [
        {
            "stage": s,
            "annotator": a,
            **{k: c.get(k, 0) for k in main},
            **dict(sorted((k, v) for k, v in c.items() if k not in main)),
        }
        for (s, a), c in sorted(table.items())
    ]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    extra = sorted({k for r in out for k in r} - {"stage", "annotator", *main})
    cols = ["stage", "annotator", *main, *extra]
    echo_table([{c: r.get(c, 0) for c in cols} for r in out], cols)


@annotate.command("vocab")
@click.option(
    "--min-count",
    type=int,
    default=1,
    show_default=True,
    help="Merge names seen fewer times into their nearest frequent ancestor.",
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False),
    help="User mapping CSV (raw,class[,kind]) or JSON; overrides everything.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: <workspace>/exports/vocab).",
)
@click.option("--all-annotators", is_flag=True, help="Use every stage-2 file, not only approved.")
@set_option
@click.pass_context
def vocab_cmd(
    ctx: click.Context,
    min_count: int,
    mapping: str | None,
    output: str | None,
    all_annotators: bool,
    overrides: tuple[str, ...],
) -> None:
    """Organise the stage-2 names: normalise, map to WordNet, build the class tree; writes
    classes.csv (thing/stuff flags, counts), merge_table.csv (raw name -> class) and tree.json.

    \b
    Example:
      entityseg-data -w my_set annotate vocab --min-count 3 --mapping my_map.csv
    """
    from pathlib import Path

    from entityseg_data.masks.store import annotators as list_annotators
    from entityseg_data.masks.store import iter_annotations, load_annotation
    from entityseg_data.vocab import Vocabulary, load_mapping

    ws = get_workspace(ctx)
    cfg = ws.config(overrides).annotation
    mapping = mapping or (str(ws.root / cfg.vocab_mapping) if cfg.vocab_mapping else None)
    names = []
    if all_annotators:
        for a in list_annotators(ws.root, 2):
            names += [e.name for ann in iter_annotations(ws.root, 2, a) for e in ann.entities]
    else:
        with ws.catalog() as cat:
            rows = cat.annotations(stage=2, status="approved")
        for r in rows:
            ann = load_annotation(ws.root, 2, r.annotator, r.image_id)
            if ann is not None:
                names += [e.name for e in ann.entities]
    if not names:
        raise click.ClickException("no stage-2 names yet: pull stage 2 first")
    v = Vocabulary(mapping=load_mapping(mapping) if mapping else None, min_count=min_count)
    v.build(names)
    out = Path(output) if output else ws.exports_dir / "vocab"
    paths = v.save(out)
    s = v.summary()
    click.echo(
        f"{s['names']} names -> {s['classes']} classes ({s['thing']} thing, {s['stuff']} stuff, "
        f"{s['special']} special); written to {paths['classes'].parent}"
    )


@annotate.command("backend")
@click.option("--port", type=int, default=9090, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--model",
    default="felzenszwalb",
    show_default=True,
    help="'felzenszwalb' (non-learned) or a CropFormer preset/checkpoint.",
)
@click.option("--register", is_flag=True, help="Connect it to every stage-1 project.")
@click.pass_context
def backend(ctx: click.Context, port: int, host: str, model: str, register: bool) -> None:
    """Serve pre-annotations to Label Studio (ML backend API: /health, /setup, /predict).

    Loopback backends need ML_BLOCK_LOCAL_IP=false on the Label Studio side ('annotate
    server' sets it).

    \b
    Example:
      entityseg-data -w my_set annotate backend --port 9090 --register
    """
    from entityseg_data.api.annotation import LabelStudio, start_ml_backend

    ws = get_workspace(ctx)
    srv = start_ml_backend(ws, model=model, host=host, port=port)
    click.echo(f"ML backend at {srv.url} (model {srv.backend.model_version}); Ctrl-C to stop")
    try:
        if register:
            for a, pid in LabelStudio.connect(ws).register_ml_backend(srv.url, stage=1).items():
                click.echo(f"  registered with {a}'s project {pid}")
        if srv.thread is not None:
            srv.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
