"""The ingest pipeline: sources -> fetch -> decode/normalise -> de-duplicate -> filter -> catalog.

Worker threads fetch and decode (I/O and PIL release the GIL); the calling thread owns the
catalog and commits every item in one transaction (image row, verdicts, duplicate audit,
pre-annotation row, resume ledger). Files are content-addressed (``images/ab/<sha256>.<ext>``)
and written atomically before the commit, so a crash at any point loses nothing that was
committed and duplicates nothing on the rerun: committed items are skipped through the
``items`` ledger and re-fetched bytes of an uncommitted item land on the same file name.

Near duplicates are found with an in-memory pHash index that every commit first refreshes with
the images committed since (by this run or a concurrent one), then checks against the catalog,
inside the commit's transaction: two ingests of one workspace at the same time keep the same
number of images as one after the other (probe 4.3).

NSFW scoring runs after the stream, in batches, over the accepted images that have no NSFW
verdict yet (so an interrupted run resumes it as well).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

from entityseg_data.catalog import Catalog
from entityseg_data.catalog.predictions import write_prediction
from entityseg_data.config.ingest import IngestConfig
from entityseg_data.ingest import normalize
from entityseg_data.ingest.approved import write_approved
from entityseg_data.ingest.dedupe import PhashIndex
from entityseg_data.ingest.downloader import Downloader
from entityseg_data.ingest.failures import SETTINGS_META, settings_snapshot, should_retry
from entityseg_data.ingest.filters import Verdict
from entityseg_data.ingest.nsfw_stage import score_nsfw
from entityseg_data.ingest.report import IngestReport, ProgressEvent, ProgressFn
from entityseg_data.ingest.sources.base import Item, Source, text_id
from entityseg_data.ingest.storage import image_relpath, remove_stale_temp_files
from entityseg_data.ingest.worker import Outcome, prefilter, process_item
from entityseg_data.io import atomic_write_bytes
from entityseg_data.workspace import Workspace

__all__ = ["ProgressEvent", "ingest"]

log = logging.getLogger(__name__)

FINAL_STATES = ("done", "duplicate", "rejected")


def _batched(it: Iterable[Item], n: int) -> Iterator[list[Item]]:
    it = iter(it)
    while chunk := list(islice(it, n)):
        yield chunk


def _where(item: Item) -> str:
    """Where an item's bytes are (its URL or local path): tells two rows with one id apart.
    Valid UTF-8 (a non-UTF-8 file name gets ``\\xNN`` escapes) so the catalog can store it."""
    return text_id(item.url or item.path or "")


class _Run:
    """State of one ``ingest`` call (catalog connection, pHash index, report)."""

    def __init__(
        self,
        ws: Workspace,
        cat: Catalog,
        config: IngestConfig,
        downloader: Downloader,
        progress: ProgressFn | None,
    ) -> None:
        self.ws = ws
        self.cat = cat
        self.config = config
        self.downloader = downloader
        self.progress = progress
        self.report = IngestReport()
        # the accepted images' pHashes; refreshed inside every commit with the images other
        # processes accepted meanwhile (probe 4.3: concurrent ingests must de-duplicate too)
        self.index = PhashIndex()
        self._indexed_to = 0
        self._refresh_index()
        self.image_labels: dict[int, str] = {}

    def emit(self, label: str, outcome: str) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent("item", label, outcome))

    # ------------------------------------------------------------------ near-duplicate index
    def _refresh_index(self) -> None:
        """Add the accepted images committed since the last refresh (by anyone)."""
        for image_id, phash in self.cat.phashes(after_id=self._indexed_to):
            self.index.add(image_id, phash)
            self._indexed_to = max(self._indexed_to, image_id)

    def _nearest(self, phash: str) -> tuple[int, int] | None:
        """The closest accepted image within the threshold, checked against the catalog (call
        inside the commit's transaction, which holds the write lock: what it finds stays
        true until the commit)."""
        self._refresh_index()
        while True:
            near = self.index.nearest(phash, self.config.phash_threshold)
            if near is None or self.cat.image_status(near[0]) == "accepted":
                return near
            self.index.remove(near[0])  # rejected or replaced since it was indexed

    # ------------------------------------------------------------------ ledger
    def _is_final(self, state: str | None, kind: str | None, meta: Mapping[str, Any]) -> bool:
        """Whether a ledger entry needs no new attempt (see ``failures`` for failed ones)."""
        if state is None:
            return False
        if state == "rejected" and (kind or "").startswith("prefilter:"):
            return False  # re-evaluated: the limits may have changed
        if state in FINAL_STATES:
            return True
        if state == "failed":
            return not should_retry(kind, meta, self.config)
        return False

    def _ledger(
        self,
        item: Item,
        label: str,
        state: str,
        *,
        image_id: int | None = None,
        kind: str | None = None,
        error: str | None = None,
        attempts: int = 0,
    ) -> None:
        meta: dict[str, Any] = {"label": label}
        if state == "failed":
            settings = settings_snapshot(kind, self.config)
            if settings:
                meta[SETTINGS_META] = settings
        self.cat.record_item(
            item.source,
            item.source_id,
            state,
            url=_where(item),
            image_id=image_id,
            error_kind=kind,
            error=error,
            attempts=attempts,
            meta=meta,
        )

    # ------------------------------------------------------------------ one source
    def run_source(self, source: Source, executor: ThreadPoolExecutor) -> None:
        cfg = self.config
        counts = self.report.counts(source.label, source.kind)
        # results are committed in source order (deterministic keep/drop decisions whatever
        # the thread timing); the window bounds memory to ~4 * workers originals
        in_flight: deque[tuple[Future, Item]] = deque()
        max_in_flight = max(2, 4 * cfg.workers)
        # where each source id of this run points (probe 1.30: two rows with one id)
        seen: dict[str, str] = {}
        new = 0
        done = False
        for chunk in _batched(source.items(), 256):
            entries = self.cat.ledger_items(source.kind, [it.source_id for it in chunk])
            for item in chunk:
                if cfg.limit > 0 and new >= cfg.limit:
                    done = True
                    break
                counts.seen += 1
                where = _where(item)
                first = seen.get(item.source_id)
                if first is not None:  # the id again: a repeated row, or a conflict
                    if first != where:
                        self._id_conflict(source, item, first, where)
                    else:
                        counts.skipped += 1
                        self.emit(source.label, "skipped")
                    continue
                seen[item.source_id] = where
                entry = entries.get(item.source_id)
                if entry is not None and self._is_final(entry.state, entry.error_kind, entry.meta):
                    counts.skipped += 1
                    self.emit(source.label, "skipped")
                    continue
                new += 1
                pre = prefilter(item, cfg)
                if pre is not None:
                    with self.cat.transaction():
                        self._ledger(
                            item, source.label, "rejected", kind=pre.filter, error=pre.reason
                        )
                    counts.filtered[pre.filter] += 1
                    self.emit(source.label, "rejected")
                    continue
                fut = executor.submit(process_item, item, cfg, self.downloader)
                in_flight.append((fut, item))
                while len(in_flight) >= max_in_flight:
                    self._drain(in_flight, source.label)
            if done:
                break
        while in_flight:
            self._drain(in_flight, source.label)
        # records the source itself left out (a COCO image without a size, a corrupt RLE...)
        for problem in getattr(source, "problems", ()):
            counts.note(str(problem))

    def _id_conflict(self, source: Source, item: Item, first: str, where: str) -> None:
        """A source id used by two different rows: the later row is not ingested (its id
        would overwrite the first's ledger entry), and the report names both (probe 1.30)."""
        counts = self.report.counts(source.label, source.kind)
        message = (
            f"{source.label}: id {item.source_id!r} is used by two rows ({first} and {where}); "
            "the second is not ingested: give every row its own id"
        )
        log.warning("%s", message)
        counts.failed["duplicate_id"] += 1
        counts.note(message)
        self.emit(source.label, "failed")

    def _drain(self, in_flight: deque[tuple[Future, Item]], label: str) -> None:
        """Commit the oldest in-flight item (waiting for it)."""
        fut, item = in_flight.popleft()
        try:
            out = fut.result()
        except Exception as exc:  # a bug or an unforeseen decoder error: report, go on
            log.exception("%s %s: unexpected error", item.source, item.source_id)
            out = Outcome(False, "internal_error", f"{type(exc).__name__}: {exc}")
        self.handle(item, label, out)

    # ------------------------------------------------------------------ commit one item
    def handle(self, item: Item, label: str, out: Outcome) -> None:
        """Commit one processed item: ledger entry, image row, verdicts, duplicate audit and
        pre-annotation, in one transaction (which holds the catalog's write lock, so the
        duplicate checks see every commit of concurrent runs)."""
        counts = self.report.counts(label, item.source)
        cfg = self.config
        with self.cat.transaction():
            entry = self.cat.ledger_item(item.source, item.source_id)
            if entry is not None and self._is_final(entry.state, entry.error_kind, entry.meta):
                counts.skipped += 1  # committed meanwhile by a concurrent run
                self.emit(label, "skipped")
                return
            if not out.ok:
                self._ledger(
                    item, label, "failed", kind=out.kind, error=out.message, attempts=out.attempts
                )
                counts.failed[out.kind] += 1
                self.emit(label, "failed")
                return
            counts.fetched += 1
            counts.bytes += len(out.data)
            dec = out.decoded
            assert dec is not None
            existing = self.cat.image_by_sha256(out.sha256)
            if existing is not None:
                self._duplicate(item, label, existing.id, out, "exact", 0)
                return
            passed = all(v.passed for v in out.verdicts)
            near = self._nearest(dec.phash) if passed else None
            replace_id = None
            if near is not None:
                kept_id, dist = near
                if cfg.near_duplicate_keep == "largest" and self._replaceable(kept_id, dec):
                    replace_id = kept_id
                else:
                    self._duplicate(item, label, kept_id, out, "near", dist)
                    return
            image_id = self._insert_image(item, out, "accepted" if passed else "rejected")
            for v in out.verdicts:
                self.cat.set_verdict(image_id, v.filter, v.verdict, v.reason, v.score)
            if replace_id is not None and near is not None:
                self._replace(replace_id, image_id, near[1], label)
            if passed:
                self.index.add(image_id, dec.phash)
                self.image_labels[image_id] = label
                counts.accepted += 1
            else:
                for v in out.verdicts:
                    if not v.passed:
                        counts.filtered[v.filter] += 1
            if out.pre is not None and passed:
                if item.annotations_approved:  # export convert: approved stage-1 + 2 files
                    write_approved(self.ws, self.cat, image_id, out.pre, origin=item.source)
                else:
                    payload = out.pre.payload(image_id)
                    write_prediction(self.ws.root, self.cat, payload, out.pre.model_version)
            self._ledger(
                item,
                label,
                "done" if passed else "rejected",
                image_id=image_id,
                attempts=out.attempts,
            )
        self.emit(label, "accepted" if passed else "rejected")

    def _duplicate(
        self, item: Item, label: str, kept_id: int, out: Outcome, kind: str, dist: int
    ) -> None:
        self.cat.add_duplicate(
            kept_id, item.source, item.source_id, kind, dropped_sha256=out.sha256, distance=dist
        )
        self._ledger(item, label, "duplicate", image_id=kept_id, attempts=out.attempts)
        self.report.counts(label, item.source).duplicates[kind] += 1
        self.emit(label, "duplicate")

    def _replaceable(self, kept_id: int, dec: normalize.Decoded) -> bool:
        kept = self.cat.image(kept_id)
        if (kept.width or 0) * (kept.height or 0) >= dec.width * dec.height:
            return False
        return self.cat.count_annotations(kept_id) == 0

    def _replace(self, old_id: int, new_id: int, dist: int, label: str) -> None:
        old = self.cat.image(old_id)
        self.cat.set_image_status(old_id, "duplicate")
        self.cat.add_duplicate(
            new_id, old.source, old.source_id, "near", dropped_sha256=old.sha256, distance=dist
        )
        self.cat.set_item_state(old.source, old.source_id, "duplicate")
        self.index.remove(old_id)
        self.report.counts(label).duplicates["replaced"] += 1

    def _insert_image(self, item: Item, out: Outcome, status: str) -> int:
        dec = out.decoded
        assert dec is not None
        rel = image_relpath(out.sha256, dec.ext)
        path = self.ws.abspath(rel)
        if not path.exists() or path.stat().st_size != len(out.data):
            atomic_write_bytes(path, out.data)
        norm_rel = None
        if dec.normalized is not None:
            norm_rel = image_relpath(out.sha256, dec.normalized_ext or ".png", "images_norm")
            npath = self.ws.abspath(norm_rel)
            if not npath.exists():
                atomic_write_bytes(npath, dec.normalized)
        extra: dict[str, Any] = dict(item.extra)
        extra.update(
            {
                "raw_width": dec.raw_width,
                "raw_height": dec.raw_height,
                "mode": dec.mode,
            }
        )
        if dec.changes:
            extra["normalized"] = list(dec.changes)
        if item.path is not None:
            extra["local_path"] = item.path
        if out.final_url and out.final_url != item.url:
            extra["final_url"] = out.final_url
        if out.content_type:
            extra["content_type"] = out.content_type
        if item.declared_width and item.declared_height:
            extra["declared_size"] = [item.declared_width, item.declared_height]
        if out.pre_error:
            extra["pre_annotation_error"] = out.pre_error
        tags = list(dict.fromkeys((*item.domain_tags, *self.config.domain_tags)))
        return self.cat.add_image(
            sha256=out.sha256,
            phash=dec.phash,
            source=item.source,
            source_id=item.source_id,
            url=item.url,
            license=item.license,
            author=item.author,
            attribution=item.attribution,
            width=dec.width,
            height=dec.height,
            orig_orientation=dec.orientation,
            file_path=rel,
            norm_path=norm_rel,
            mime=dec.mime,
            bytes=len(out.data),
            domain_tags=tags,
            status=status,
            extra=json.dumps(extra, sort_keys=True, default=str),
        )

    # ------------------------------------------------------------------ NSFW
    def run_nsfw(self) -> None:
        images = self.cat.images(without_verdict="nsfw")
        if not images:
            return
        labels = {r.id: self.image_labels.get(r.id, f"{r.source} (earlier run)") for r in images}

        def on_scored(image_id: int, verdict: Verdict) -> None:
            label = labels[image_id]
            counts = self.report.counts(label, "")
            if not verdict.passed:
                counts.filtered["nsfw"] += 1
                if image_id in self.image_labels:
                    counts.accepted -= 1

        key, n = score_nsfw(self.ws, self.cat, self.config, images, on_scored, self.progress)
        self.report.nsfw_model = key
        self.report.nsfw_scored += n


def ingest(
    workspace: Workspace,
    sources: Sequence[Source],
    config: IngestConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    retry_failed: str | None = None,
) -> IngestReport:
    """Ingest ``sources`` into ``workspace``; returns the per-source :class:`IngestReport`.

    ``config`` defaults to the workspace's ``ingest`` section. Resumable: items already
    committed by an earlier (possibly killed) run are skipped; failed items are retried as the
    failure policy says (:mod:`entityseg_data.ingest.failures`). ``retry_failed`` (``"all"`` or
    a failure kind such as ``http_404``) first makes those failed items pending, so this run
    fetches them again whatever their kind. ``progress`` receives a :class:`ProgressEvent` per
    item and per NSFW batch. Safe to run concurrently with another ingest of the same
    workspace: every commit re-checks exact and near duplicates under the catalog's lock."""
    config = config or workspace.config().ingest
    start = time.monotonic()
    if config.nsfw_enabled:
        # fail before fetching anything when the CLIP weights cannot be had (offline)
        from entityseg_data.ingest.filters.clip import resolve_pretrained

        resolve_pretrained(
            config.clip_model, config.clip_pretrained, allow_random=config.allow_random_clip
        )
    stale = remove_stale_temp_files(workspace)
    if stale:
        log.info("removed %d temporary files left by an interrupted run", stale)
    with workspace.catalog(read_only=False) as cat, Downloader(config=config) as downloader:
        reset = 0
        if retry_failed is not None:
            reset = cat.reset_failed(None if retry_failed == "all" else retry_failed)
            log.info("%d failed items (%s) will be fetched again", reset, retry_failed)
        run = _Run(workspace, cat, config, downloader, progress)
        run.report.reset = reset
        executor = ThreadPoolExecutor(max_workers=max(1, config.workers))
        try:
            for source in sources:
                log.info("ingesting %s", source.label)
                run.run_source(source, executor)
        finally:
            # on Ctrl-C / errors: drop queued items (they are not committed, the rerun does them)
            executor.shutdown(wait=True, cancel_futures=True)
        if config.nsfw_enabled:
            run.run_nsfw()
    run.report.elapsed = time.monotonic() - start
    return run.report
