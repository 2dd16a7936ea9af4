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
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from entityseg_data.catalog import Catalog
from entityseg_data.errors import DataError
from entityseg_data.ingest import normalize
from entityseg_data.ingest.config import IngestConfig
from entityseg_data.ingest.dedupe import PhashIndex, sha256_hex
from entityseg_data.ingest.downloader import TRANSIENT_KINDS, Downloader, FetchError
from entityseg_data.ingest.filters import Verdict, check_aspect, check_resolution
from entityseg_data.ingest.preannotations import PreAnnotation
from entityseg_data.ingest.report import IngestReport
from entityseg_data.ingest.sources.base import Item, Source
from entityseg_data.io import atomic_write_bytes, atomic_write_json
from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)

FINAL_STATES = ("done", "duplicate", "rejected")
NSFW_BATCH = 256


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


@dataclass
class _Outcome:
    ok: bool
    kind: str = ""
    message: str = ""
    attempts: int = 1
    data: bytes = b""
    sha256: str = ""
    decoded: normalize.Decoded | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    pre: PreAnnotation | None = None
    pre_error: str | None = None
    final_url: str | None = None
    content_type: str | None = None


def _batched(it: Iterable[Item], n: int) -> Iterator[list[Item]]:
    it = iter(it)
    while chunk := list(islice(it, n)):
        yield chunk


def is_transient(kind: str | None) -> bool:
    return bool(kind) and (kind in TRANSIENT_KINDS or kind.startswith("http_5"))


def prefilter(item: Item, config: IngestConfig) -> Verdict | None:
    """A rejection decided from the source's metadata alone (no download), or None."""
    if not config.prefilter:
        return None
    reject_tags = {t.upper() for t in config.laion_reject_tags}
    value = item.declared_flags.get("NSFW")
    if value is not None and str(value).upper() in reject_tags:
        return Verdict("prefilter:laion_nsfw", False, f"source tag NSFW={value}")
    punsafe = item.declared_flags.get("punsafe")
    if punsafe is not None and 0 < config.laion_max_punsafe <= float(punsafe):
        return Verdict(
            "prefilter:laion_nsfw",
            False,
            f"source punsafe {float(punsafe):.3f} >= {config.laion_max_punsafe}",
            float(punsafe),
        )
    w, h = item.declared_width, item.declared_height
    if w and h and w > 0 and h > 0:
        v = check_resolution(w, h, config.min_side)
        if not v.passed:
            return Verdict("prefilter:resolution", False, f"declared {v.reason}", v.score)
        v = check_aspect(w, h, config.max_aspect)
        if not v.passed:
            return Verdict("prefilter:aspect", False, f"declared {v.reason}", v.score)
    return None


def process_item(item: Item, config: IngestConfig, downloader: Downloader | None) -> _Outcome:
    """Fetch, decode, normalise and run the cheap filters on one item (thread-safe, no catalog
    access). Failures come back as ``_Outcome(ok=False, kind=...)``, never as exceptions."""
    final_url = content_type = None
    attempts = 1
    try:
        if item.path is not None:
            path = Path(item.path)
            size = path.stat().st_size
            if config.max_bytes > 0 and size > config.max_bytes:
                return _Outcome(False, "too_large", f"{path}: {size} bytes > max_bytes")
            data = path.read_bytes()
        else:
            if downloader is None:
                raise DataError("a URL item needs a downloader")
            res = downloader.fetch(item.url or "")
            data, final_url, content_type, attempts = (
                res.data,
                res.url,
                res.content_type,
                res.attempts,
            )
    except FetchError as exc:
        return _Outcome(False, exc.kind, exc.message, attempts=exc.attempts)
    except OSError as exc:
        return _Outcome(False, "io_error", f"{item.path}: {exc}")
    sha = sha256_hex(data)
    try:
        dec = normalize.decode(
            data, max_pixels=config.max_pixels, quality=config.normalized_quality
        )
    except normalize.ImageRejected as exc:
        return _Outcome(False, exc.kind, exc.message, attempts=attempts)
    verdicts = [
        check_resolution(dec.width, dec.height, config.min_side),
        check_aspect(dec.width, dec.height, config.max_aspect),
    ]
    if config.iconic_enabled and dec.small is not None:
        from entityseg_data.ingest.filters.iconic import check_iconic

        verdicts.append(check_iconic(dec.small, config.iconic_threshold))
    pre = pre_error = None
    if item.pre_annotation is not None and all(v.passed for v in verdicts):
        try:
            pre = item.pre_annotation(dec.raw_height, dec.raw_width, dec.orientation)
        except (DataError, OSError, ValueError, KeyError) as exc:
            pre_error = str(exc)
            log.warning("%s %s: pre-annotation skipped: %s", item.source, item.source_id, exc)
    return _Outcome(
        True,
        attempts=attempts,
        data=data,
        sha256=sha,
        decoded=dec,
        verdicts=verdicts,
        pre=pre,
        pre_error=pre_error,
        final_url=final_url,
        content_type=content_type,
    )


def remove_stale_temp_files(ws: Workspace, min_age: float = 600.0) -> int:
    """Delete temporary files a killed run left in images/ and images_norm/ (atomic writes use
    ``.<name>.*.tmp`` siblings); only files older than ``min_age`` seconds, so a concurrent
    writer is never disturbed. Returns the number removed."""
    now = time.time()
    removed = 0
    for folder in ("images", "images_norm"):
        for path in ws.path(folder).glob("*/.*.tmp"):
            try:
                if now - path.stat().st_mtime >= min_age:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    return removed


def image_relpath(sha256: str, ext: str, folder: str = "images") -> str:
    """Content-addressed path of an image file, relative to the workspace."""
    return f"{folder}/{sha256[:2]}/{sha256}{ext}"


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
            out = _Outcome(False, "internal_error", f"{type(exc).__name__}: {exc}")
        self.handle(item, label, out)

    # ------------------------------------------------------------------ commit one item
    def handle(self, item: Item, label: str, out: _Outcome) -> None:
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
        self, conn, item: Item, label: str, kept_id: int, out: _Outcome, kind: str, dist: int
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

    def _insert_image(self, conn, item: Item, out: _Outcome, status: str) -> int:
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


def score_nsfw(
    ws: Workspace,
    cat: Catalog,
    config: IngestConfig,
    rows: Sequence[Any],
    on_scored: Callable[[int, Verdict], None] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[str, int]:
    """Score ``rows`` (image rows with id, sha256, file_path, norm_path) for NSFW, store the
    verdicts and set rejected images' status; returns (model key, number scored)."""
    import numpy as np

    from entityseg_data.ingest.filters import nsfw
    from entityseg_data.ingest.filters.clip import load_clip
    from entityseg_data.ingest.filters.embedding_cache import EmbeddingCache

    clip = load_clip(
        config.clip_model,
        config.clip_pretrained,
        allow_random=config.allow_random_clip,
        device=config.clip_device,
    )
    cache = EmbeddingCache(ws.cache_dir / "clip" / f"{clip.key}.sqlite")
    scored = 0
    try:
        if config.nsfw_method == "probe":
            if not config.nsfw_probe:
                raise DataError("nsfw_method=probe needs ingest.nsfw_probe=/path/to/probe.npz")
            weight, bias = nsfw.load_probe(config.nsfw_probe)
        else:
            nsfw_text = nsfw.embed_texts(clip, cache, list(config.nsfw_prompts))
            safe_text = nsfw.embed_texts(clip, cache, list(config.safe_prompts))
            scale = nsfw.logit_scale(clip)
        for i in range(0, len(rows), NSFW_BATCH):
            batch = rows[i : i + NSFW_BATCH]
            items = [
                (r["sha256"], str(ws.abspath(r["norm_path"] or r["file_path"]))) for r in batch
            ]
            emb = nsfw.embed_images(clip, cache, items, batch_size=config.clip_batch_size)
            have = [r for r in batch if r["sha256"] in emb]
            if not have:
                continue
            mat = np.stack([emb[r["sha256"]] for r in have])
            if config.nsfw_method == "probe":
                scores = nsfw.probe_scores(mat, weight, bias)
            else:
                scores = nsfw.zero_shot_scores(mat, nsfw_text, safe_text, scale)
            verdicts = nsfw.verdicts(
                scores,
                config.nsfw_threshold,
                method=config.nsfw_method,
                model_key=clip.key,
                random=clip.random,
            )
            with cat.transaction():
                for r, v in zip(have, verdicts):
                    cat.set_verdict(int(r["id"]), v.filter, v.verdict, v.reason, v.score)
                    if not v.passed:
                        cat.conn.execute(
                            "UPDATE images SET status = 'rejected' WHERE id = ? AND status = "
                            "'accepted'",
                            (int(r["id"]),),
                        )
            for r, v in zip(have, verdicts):
                if on_scored is not None:
                    on_scored(int(r["id"]), v)
            scored += len(have)
            if progress is not None:
                progress(ProgressEvent("nsfw", "nsfw", "scored", len(have)))
    finally:
        cache.close()
    return clip.key, scored


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
