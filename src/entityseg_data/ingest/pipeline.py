"""The ingest pipeline: sources -> fetch -> decode/normalise -> de-duplicate -> filter -> catalog.

Worker threads fetch and decode (I/O and PIL release the GIL); the calling thread owns the
catalog and commits every item in one transaction (image row, verdicts, duplicate audit,
pre-annotation row, resume ledger). Files are content-addressed (``images/ab/<sha256>.<ext>``)
and written atomically before the commit, so a crash at any point loses nothing that was
committed and duplicates nothing on the rerun: committed items are skipped through the
``items`` ledger and re-fetched bytes of an uncommitted item land on the same file name.

NSFW scoring runs after the stream, in batches, over the accepted images that have no NSFW
verdict yet (so an interrupted run resumes it as well).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

from entityseg_data.catalog import Catalog
from entityseg_data.ingest import normalize
from entityseg_data.config.ingest import IngestConfig
from entityseg_data.ingest.dedupe import PhashIndex
from entityseg_data.ingest.downloader import Downloader
from entityseg_data.ingest.filters import Verdict
from entityseg_data.ingest.nsfw_stage import score_nsfw
from entityseg_data.ingest.preannotations import PreAnnotation
from entityseg_data.ingest.report import IngestReport
from entityseg_data.ingest.sources.base import Item, Source
from entityseg_data.ingest.storage import image_relpath, remove_stale_temp_files
from entityseg_data.ingest.worker import Outcome, is_transient, prefilter, process_item
from entityseg_data.io import atomic_write_bytes, atomic_write_json
from entityseg_data.workspace import Workspace

__all__ = [
    "ProgressEvent",
    "image_relpath",
    "ingest",
    "prefilter",
    "process_item",
    "remove_stale_temp_files",
    "score_nsfw",
]

log = logging.getLogger(__name__)

FINAL_STATES = ("done", "duplicate", "rejected")


@dataclass(frozen=True)
class ProgressEvent:
    """Passed to the ``progress`` callback once per item (``stage="item"``; ``outcome`` one of
    accepted, rejected, duplicate, failed, skipped) and once per NSFW batch (``stage="nsfw"``,
    ``n`` images scored)."""

    stage: str
    source: str
    outcome: str
    n: int = 1


ProgressFn = Callable[[ProgressEvent], None]


def _batched(it: Iterable[Item], n: int) -> Iterator[list[Item]]:
    it = iter(it)
    while chunk := list(islice(it, n)):
        yield chunk


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
        self.index = PhashIndex()
        for row in cat.query(
            "SELECT id, phash FROM images WHERE status = 'accepted' AND phash IS NOT NULL"
        ):
            self.index.add(int(row["id"]), row["phash"])
        self.image_labels: dict[int, str] = {}

    def emit(self, label: str, outcome: str) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent("item", label, outcome))

    # ------------------------------------------------------------------ ledger
    def _states(self, kind: str, ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        rows = self.cat.query(
            f"SELECT source_id, state, error_kind FROM items WHERE source = ? AND source_id IN "
            f"({','.join('?' * len(ids))})",
            [kind, *ids],
        )
        return {r["source_id"]: (r["state"], r["error_kind"]) for r in rows}

    def _is_final(self, state: str | None, kind: str | None) -> bool:
        if state is None:
            return False
        if state == "rejected" and (kind or "").startswith("prefilter:"):
            return False  # re-evaluated: the limits may have changed
        if state in FINAL_STATES:
            return True
        if state == "failed":
            return not (self.config.retry_failed and is_transient(kind))
        return False

    def _ledger(
        self,
        conn,
        item: Item,
        label: str,
        state: str,
        *,
        image_id: int | None = None,
        kind: str | None = None,
        error: str | None = None,
        attempts: int = 0,
    ) -> None:
        conn.execute(
            "INSERT INTO items(source, source_id, url, state, image_id, error_kind, error, "
            "attempts, meta) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(source, source_id) DO UPDATE "
            "SET url=excluded.url, state=excluded.state, image_id=excluded.image_id, "
            "error_kind=excluded.error_kind, error=excluded.error, "
            "attempts=items.attempts+excluded.attempts, meta=excluded.meta, "
            "updated_at=strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            (
                item.source,
                item.source_id,
                item.url or item.path,
                state,
                image_id,
                kind,
                error,
                attempts,
                json.dumps({"label": label}),
            ),
        )

    # ------------------------------------------------------------------ one source
    def run_source(self, source: Source, executor: ThreadPoolExecutor) -> None:
        cfg = self.config
        counts = self.report.counts(source.label, source.kind)
        # results are committed in source order (deterministic keep/drop decisions whatever
        # the thread timing); the window bounds memory to ~4 * workers originals
        in_flight: deque[tuple[Future, Item]] = deque()
        max_in_flight = max(2, 4 * cfg.workers)
        new = 0
        done = False
        for chunk in _batched(source.items(), 256):
            states = self._states(source.kind, [it.source_id for it in chunk])
            for item in chunk:
                if cfg.limit > 0 and new >= cfg.limit:
                    done = True
                    break
                counts.seen += 1
                state, kind = states.get(item.source_id, (None, None))
                if self._is_final(state, kind):
                    counts.skipped += 1
                    self.emit(source.label, "skipped")
                    continue
                new += 1
                pre = prefilter(item, cfg)
                if pre is not None:
                    with self.cat.transaction() as conn:
                        self._ledger(
                            conn, item, source.label, "rejected", kind=pre.filter, error=pre.reason
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
        counts = self.report.counts(label, item.source)
        cfg = self.config
        with self.cat.transaction() as conn:
            row = conn.execute(
                "SELECT state, error_kind FROM items WHERE source = ? AND source_id = ?",
                (item.source, item.source_id),
            ).fetchone()
            if row is not None and self._is_final(row["state"], row["error_kind"]):
                counts.skipped += 1  # the same id appeared twice in the source
                self.emit(label, "skipped")
                return
            if not out.ok:
                self._ledger(
                    conn,
                    item,
                    label,
                    "failed",
                    kind=out.kind,
                    error=out.message,
                    attempts=out.attempts,
                )
                counts.failed[out.kind] += 1
                self.emit(label, "failed")
                return
            counts.fetched += 1
            counts.bytes += len(out.data)
            dec = out.decoded
            assert dec is not None
            existing = conn.execute(
                "SELECT id FROM images WHERE sha256 = ?", (out.sha256,)
            ).fetchone()
            if existing is not None:
                self._duplicate(conn, item, label, int(existing["id"]), out, "exact", 0)
                return
            passed = all(v.passed for v in out.verdicts)
            near = self.index.nearest(dec.phash, cfg.phash_threshold) if passed else None
            replace_id = None
            if near is not None:
                kept_id, dist = near
                if cfg.near_duplicate_keep == "largest" and self._replaceable(conn, kept_id, dec):
                    replace_id = kept_id
                else:
                    self._duplicate(conn, item, label, kept_id, out, "near", dist)
                    return
            image_id = self._insert_image(conn, item, out, "accepted" if passed else "rejected")
            for v in out.verdicts:
                self.cat.set_verdict(image_id, v.filter, v.verdict, v.reason, v.score)
            if replace_id is not None:
                self._replace(conn, replace_id, image_id, near[1], label)
            if passed:
                self.index.add(image_id, dec.phash)
                self.image_labels[image_id] = label
                counts.accepted += 1
            else:
                for v in out.verdicts:
                    if not v.passed:
                        counts.filtered[v.filter] += 1
            if out.pre is not None and passed:
                self._write_pre(conn, image_id, out.pre)
            self._ledger(
                conn,
                item,
                label,
                "done" if passed else "rejected",
                image_id=image_id,
                attempts=out.attempts,
            )
        self.emit(label, "accepted" if passed else "rejected")

    def _duplicate(
        self, conn, item: Item, label: str, kept_id: int, out: Outcome, kind: str, dist: int
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO duplicates(kept_image_id, dropped_source, dropped_source_id, "
            "dropped_sha256, kind, distance) VALUES (?,?,?,?,?,?)",
            (kept_id, item.source, item.source_id, out.sha256, kind, dist),
        )
        self._ledger(conn, item, label, "duplicate", image_id=kept_id, attempts=out.attempts)
        self.report.counts(label, item.source).duplicates[kind] += 1
        self.emit(label, "duplicate")

    def _replaceable(self, conn, kept_id: int, dec: normalize.Decoded) -> bool:
        row = conn.execute("SELECT width, height FROM images WHERE id = ?", (kept_id,)).fetchone()
        if row is None or (row["width"] or 0) * (row["height"] or 0) >= dec.width * dec.height:
            return False
        annotated = conn.execute(
            "SELECT COUNT(*) FROM annotations WHERE image_id = ?", (kept_id,)
        ).fetchone()[0]
        return int(annotated) == 0

    def _replace(self, conn, old_id: int, new_id: int, dist: int, label: str) -> None:
        old = conn.execute(
            "SELECT source, source_id, sha256 FROM images WHERE id = ?", (old_id,)
        ).fetchone()
        conn.execute("UPDATE images SET status = 'duplicate' WHERE id = ?", (old_id,))
        conn.execute(
            "INSERT OR REPLACE INTO duplicates(kept_image_id, dropped_source, dropped_source_id, "
            "dropped_sha256, kind, distance) VALUES (?,?,?,?,?,?)",
            (new_id, old["source"], old["source_id"], old["sha256"], "near", dist),
        )
        conn.execute(
            "UPDATE items SET state = 'duplicate' WHERE source = ? AND source_id = ?",
            (old["source"], old["source_id"]),
        )
        self.index.remove(old_id)
        self.report.counts(label).duplicates["replaced"] += 1

    def _insert_image(self, conn, item: Item, out: Outcome, status: str) -> int:
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
        cur = conn.execute(
            "INSERT INTO images(sha256, phash, source, source_id, url, license, author, "
            "attribution, width, height, orig_orientation, file_path, norm_path, mime, bytes, "
            "domain_tags, status, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                out.sha256,
                dec.phash,
                item.source,
                item.source_id,
                item.url,
                item.license,
                item.author,
                item.attribution,
                dec.width,
                dec.height,
                dec.orientation,
                rel,
                norm_rel,
                dec.mime,
                len(out.data),
                json.dumps(tags),
                status,
                json.dumps(extra, sort_keys=True, default=str),
            ),
        )
        return int(cur.lastrowid)

    def _write_pre(self, conn, image_id: int, pre: PreAnnotation) -> None:
        folder = pre.model_version.replace(":", "_")
        rel = f"predictions/{folder}/{image_id}.json"
        atomic_write_json(self.ws.abspath(rel), pre.payload(image_id))
        conn.execute(
            "INSERT OR REPLACE INTO predictions(image_id, model_version, path, n_entities) "
            "VALUES (?,?,?,?)",
            (image_id, pre.model_version, rel, len(pre.entities)),
        )

    # ------------------------------------------------------------------ NSFW
    def run_nsfw(self) -> None:
        rows = self.cat.query(
            "SELECT id, sha256, file_path, norm_path, source FROM images WHERE status = "
            "'accepted' AND id NOT IN (SELECT image_id FROM verdicts WHERE filter = 'nsfw') "
            "ORDER BY id"
        )
        if not rows:
            return
        labels = {
            i: self.image_labels.get(int(r["id"]), f"{r['source']} (earlier run)")
            for i, r in ((int(r["id"]), r) for r in rows)
        }

        def on_scored(image_id: int, verdict: Verdict) -> None:
            label = labels[image_id]
            counts = self.report.counts(label, "")
            if not verdict.passed:
                counts.filtered["nsfw"] += 1
                if image_id in self.image_labels:
                    counts.accepted -= 1

        key, n = score_nsfw(self.ws, self.cat, self.config, rows, on_scored, self.progress)
        self.report.nsfw_model = key
        self.report.nsfw_scored += n


def ingest(
    workspace: Workspace,
    sources: Sequence[Source],
    config: IngestConfig | None = None,
    *,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest ``sources`` into ``workspace``; returns the per-source :class:`IngestReport`.

    ``config`` defaults to the workspace's ``ingest`` section. Resumable: items already
    committed by an earlier (possibly killed) run are skipped. ``progress`` receives a
    :class:`ProgressEvent` per item and per NSFW batch."""
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
    with workspace.catalog() as cat, Downloader(config=config) as downloader:
        run = _Run(workspace, cat, config, downloader, progress)
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
