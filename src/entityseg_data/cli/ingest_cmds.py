"""``ingest``: collect images into the workspace (sources, de-duplication, filters, audit)."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import click

from entityseg_data.cli.common import (
    ConfigOption,
    config_option,
    echo_table,
    get_workspace,
    set_option,
)

if TYPE_CHECKING:
    from entityseg_data.api.sources import IngestEvent
    from entityseg_data.api.workspace import Workspace
    from entityseg_data.config.ingest import IngestConfig


@click.command("ingest")
@click.argument("sources", nargs=-1, metavar="SOURCE...")
@config_option(
    "--limit", root="workspace", key="ingest.limit", help="At most N new items per source."
)
@config_option(
    "--min-side",
    root="workspace",
    key="ingest.min_side",
    help="Reject images whose short side < N px.",
)
@config_option(
    "--max-aspect",
    root="workspace",
    key="ingest.max_aspect",
    help="Reject long/short side ratios > R.",
)
@config_option(
    "--nsfw-threshold",
    root="workspace",
    key="ingest.nsfw_threshold",
    help="Reject NSFW scores >= T (0-1).",
)
@config_option(
    "--nsfw/--no-nsfw",
    "nsfw_enabled",
    root="workspace",
    key="ingest.nsfw_enabled",
    help="Run (or skip) the CLIP NSFW filter.",
)
@config_option(
    "--workers", root="workspace", key="ingest.workers", help="Concurrent fetch/decode threads."
)
@click.option("--tag", "tags", multiple=True, help="Domain tag recorded on every image.")
@click.option(
    "--refilter",
    is_flag=True,
    help="Re-apply the filters to the images already in the catalog (cached embeddings).",
)
@click.option(
    "--errors",
    "show_errors",
    is_flag=True,
    help="Also list failed items by kind (from the ledger, all runs).",
)
@click.option(
    "--retry-failed",
    "retry_failed",
    is_flag=False,
    flag_value="all",
    default=None,
    metavar="[KIND]",
    help="Fetch failed items of the given SOURCEs again: all of them, or those of one failure "
    "KIND (e.g. http_404), including permanent ones (see --errors).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@set_option
@click.pass_context
def ingest(
    ctx: click.Context,
    sources: tuple[str, ...],
    limit: int | None,
    min_side: int | None,
    max_aspect: float | None,
    nsfw_threshold: float | None,
    nsfw_enabled: bool | None,
    workers: int | None,
    tags: tuple[str, ...],
    refilter: bool,
    show_errors: bool,
    retry_failed: str | None,
    as_json: bool,
    overrides: tuple[str, ...],
) -> None:
    """Collect images from SOURCE... with provenance, de-duplication and filters.

    \b
    SOURCE is KIND:PATH:
      folder:PATH               a folder (recursive), a quoted glob, or one file
      urls:FILE                 .txt (one URL a line), .csv/.tsv/.parquet with a url column
      coco:JSON[:IMAGE_ROOT]    COCO instances/panoptic JSON (masks -> pre-annotations)
      ade20k:DIR                ADE20K root (ADEChallengeData2016 or ADE20K_2021_17_01)
      unsplash:TSV              Unsplash Lite/Full photos.tsv000
      laion:PARQUET             LAION-400M / LAION-5B metadata parquet

    Every item lands in the catalog's resume ledger; rerunning the same command after a
    crash continues where it stopped. Every rejection is recorded with its reason and score.
    A rerun fetches again the items that failed for a passing cause (timeouts, 5xx...) and
    those that failed because of a setting that has changed since (max_bytes, max_pixels,
    allowed_mime, max_redirects); failures caused by the data (404, not an image...) are
    permanent until --retry-failed[=KIND].

    \b
    Examples:
      entityseg-data -w my_set ingest folder:photos/ --min-side 1000
      entityseg-data -w my_set ingest urls:urls.txt laion:part-00000.parquet --workers 16
      entityseg-data -w my_set ingest coco:annotations/instances_val2017.json:val2017 --no-nsfw
      entityseg-data -w my_set ingest --refilter --nsfw-threshold 0.3
      entityseg-data -w my_set ingest --errors
      entityseg-data -w my_set ingest urls:urls.txt --retry-failed=http_404
      entityseg-data -w my_set ingest folder:demo/ --set ingest.allow_random_clip=true \\
          --set ingest.clip_pretrained=''
    """
    from entityseg_data.config import ConfigValueError
    from entityseg_data.errors import ConfigError

    if retry_failed is not None and ":" in retry_failed:
        # `--retry-failed urls:list.txt`: click took the SOURCE as the optional KIND (failure
        # kinds have no ':'); it is a source, and every failed item is retried
        sources = (retry_failed, *sources)
        retry_failed = "all"
    if retry_failed is not None and not sources:
        raise click.UsageError(
            "--retry-failed fetches failed items again from their SOURCE: give the SOURCE(s)"
        )
    if not sources and not refilter and not show_errors:
        raise click.UsageError("give at least one SOURCE (or --refilter / --errors)")
    ws = get_workspace(ctx)
    cfg = ws.config(overrides).ingest
    # the ingest.* flags (ConfigOptions): applied over the config, errors name the flag
    flags = {
        p.config_key.split(".", 1)[1]: p.opts[0]
        for p in ctx.command.params
        if isinstance(p, ConfigOption) and p.config_key.startswith("ingest.")
    }
    changes: dict[str, Any] = {k: ctx.params[k] for k in flags if ctx.params.get(k) is not None}
    if tags:
        changes["domain_tags"] = (*cfg.domain_tags, *tags)
    try:
        cfg = dataclasses.replace(cfg, **changes)
    except ConfigValueError as exc:  # an option out of range: name the option, not the key
        option = flags.get(exc.key, exc.key)
        raise ConfigError(
            f"{option}: {exc.value!r} is out of range (allowed: {exc.allowed})"
        ) from None
    if refilter:
        _refilter(ws, cfg, as_json)
    if sources:
        _ingest(ctx, ws, cfg, sources, as_json, retry_failed)
    if show_errors:
        _errors(ws, as_json)


def _ingest(
    ctx: click.Context,
    ws: Workspace,
    cfg: IngestConfig,
    specs: tuple[str, ...],
    as_json: bool,
    retry_failed: str | None,
) -> None:
    from tqdm import tqdm

    quiet = as_json or getattr(ctx.find_root().obj, "verbosity", 0) < 0
    bars: dict[str, tqdm] = {}
    outcomes: dict[str, dict[str, int]] = {}  # per bar: item outcome -> count

    def progress(event: IngestEvent) -> None:
        if quiet:
            return
        key = "nsfw" if event.stage == "nsfw" else event.source
        bar = bars.get(key)
        if bar is None:
            desc = "nsfw filter" if key == "nsfw" else key
            bar = bars[key] = tqdm(desc=desc[:40], unit="img", leave=True, dynamic_ncols=True)
        bar.update(event.n)
        if event.stage == "item":
            counts = outcomes.setdefault(key, {})
            counts[event.outcome] = counts.get(event.outcome, 0) + 1
            bar.set_postfix(counts, refresh=False)

    try:
        report = ws.ingest(list(specs), config=cfg, progress=progress, retry_failed=retry_failed)
    finally:
        for bar in bars.values():
            bar.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"ingest into {ws.root} ({report.elapsed:.1f} s)")
    if retry_failed is not None:
        click.echo(f"retry: {report.reset} failed items ({retry_failed}) fetched again")
    echo_table(report.table_rows())
    for message in report.totals().messages:
        click.echo(f"warning: {message}", err=True)
    if report.nsfw_model:
        click.echo(f"nsfw: {report.nsfw_scored} images scored with {report.nsfw_model}")
    click.echo("audit: the verdicts, duplicates and items tables of the catalog")


def _refilter(ws: Workspace, cfg: IngestConfig, as_json: bool) -> None:
    rep = ws.refilter(config=cfg)
    if as_json:
        click.echo(json.dumps({"refilter": rep.to_dict()}, indent=2))
        return
    click.echo("refilter: " + ", ".join(f"{k}={v}" for k, v in sorted(rep.status.items())))
    if rep.changes:
        click.echo("  changes: " + ", ".join(f"{k}={v}" for k, v in sorted(rep.changes.items())))
    if rep.rejected_by:
        body = ", ".join(f"{k}={v}" for k, v in sorted(rep.rejected_by.items()))
        click.echo(f"  rejected by: {body}")


def _errors(ws: Workspace, as_json: bool) -> None:
    report = ws.ingest_failures()
    if as_json:
        click.echo(json.dumps({"failures": report}, indent=2))
        return
    if not report:
        click.echo("no failed items")
    for kind, entry in report.items():
        retry = {
            "transient": "retried by a rerun",
            "source": "read again from the source by a rerun",
            "setting": "retried when its setting changes",
            "permanent": f"permanent: --retry-failed={kind} fetches them again",
        }[entry["retry"]]
        click.echo(f"{kind}: {entry['count']} ({retry})")
        for e in entry["examples"][:5]:
            click.echo(f"  {e['source']} {e['url'] or e['source_id']}: {e['error']}")
