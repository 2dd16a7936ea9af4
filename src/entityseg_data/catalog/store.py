"""The catalog: the curated set's state in one embedded SQLite file.

* WAL journal, so readers never block the writer and see a consistent snapshot;
* every write goes through :meth:`Catalog.transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a
  crash mid-batch leaves the catalog as it was before the batch;
* reads return typed frozen records (:mod:`entityseg_data.catalog.records`), never raw rows;
* a workspace that is not writable is opened read-only (reads work, writes raise CatalogError);
* the schema is versioned (``schema_migrations``) and migrated forward on open; a catalog written by
  a newer version of the toolkit is refused with a clear error.

A :class:`Catalog` holds one connection and is meant for one thread; open one per thread/process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from entityseg_data.catalog.records import (
    AnnotationRecord,
    DuplicateRecord,
    EditRecord,
    ImageRecord,
    LedgerItem,
    PredictionRecord,
    RoundRecord,
    SelectionItem,
    SelectionRecord,
    VerdictRecord,
)
from entityseg_data.catalog.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from entityseg_data.errors import CatalogError

IMAGE_COLUMNS = (
    "sha256",
    "phash",
    "source",
    "source_id",
    "url",
    "license",
    "author",
    "attribution",
    "width",
    "height",
    "orig_orientation",
    "file_path",
    "norm_path",
    "mime",
    "bytes",
    "domain_tags",
    "status",
    "split",
    "extra",
)
_JSON_COLUMNS = {"domain_tags", "extra", "qa", "meta", "seed_versions", "iou_bins"}
ANNOTATION_FIELDS = (
    "status",
    "ls_project_id",
    "ls_task_id",
    "ls_annotation_id",
    "mask_path",
    "n_entities",
    "qa",
    "round_id",
)
EDIT_FIELDS = tuple(
    f for f in EditRecord.__dataclass_fields__ if f not in ("image_id", "stage", "annotator")
)
IMAGE_STATUSES = ("accepted", "rejected", "duplicate")
LEDGER_STATES = ("pending", "done", "failed", "duplicate", "rejected")
_CHUNK = 500  # ids per IN (...) query (SQLite's default variable limit is 999 before 3.32)


def _encode(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS and not isinstance(value, str) and value is not None:
        return json.dumps(value, sort_keys=True)
    return value


class Catalog:
    """An open catalog database: the only place the toolkit runs SQL.

    Reads return typed frozen records (:mod:`entityseg_data.catalog.records`); writes are
    methods that run in :meth:`transaction` (one per call, or joined to an enclosing one, so a
    caller groups several writes into one atomic commit with ``with cat.transaction(): ...``).

    Args:
        path: the SQLite file (created when missing, unless read-only).
        migrations: the migration list to apply (the package's by default; tests pass others).
        timeout: seconds to wait for another writer's lock before failing.
        read_only: open without write access (``mode=ro``; for a workspace on read-only media
            or owned by someone else). ``None``: read-only exactly when the file or its folder is
            not writable by this process. Writes on a read-only catalog raise CatalogError.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        timeout: float = 30.0,
        read_only: bool | None = False,
    ) -> None:
        self.path = Path(path)
        if read_only is None:
            read_only = self.path.exists() and not (
                os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)
            )
        self.read_only = bool(read_only)
        self._depth = 0
        if self.read_only:
            self.conn = self._connect_read_only(timeout)
            self._check_version(migrations)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: cannot open the catalog: {exc}") from None
        self.migrate(migrations)

    def _connect_read_only(self, timeout: float) -> sqlite3.Connection:
        """``mode=ro`` (sees other writers; needs the WAL index, which a read-only folder may
        not let SQLite create), else ``immutable=1`` (nobody can write a read-only folder)."""
        if not self.path.exists():
            raise CatalogError(f"{self.path}: cannot open the catalog: no such file")
        base = "file:" + quote(str(self.path.resolve()))
        last: Exception | None = None
        for params in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    f"{base}?{params}",
                    uri=True,
                    timeout=timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.DatabaseError as exc:
                last = exc
        raise CatalogError(f"{self.path}: cannot open the catalog read-only: {last}") from None

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def writable(self) -> bool:
        return not self.read_only

    # ---------------------------------------------------------------- schema
    @property
    def version(self) -> int:
        row = self.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def _check_version(self, migrations: Sequence[Migration]) -> None:
        try:
            current = self.version
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: not a catalog database: {exc}") from None
        latest = migrations[-1].version if migrations else 0
        if current > latest:
            raise CatalogError(
                f"{self.path}: catalog schema version {current} is newer than this toolkit "
                f"supports ({latest}); upgrade entityseg-data"
            )
        if current < latest and self.read_only:
            raise CatalogError(
                f"{self.path}: the catalog (schema {current}) needs an upgrade to {latest}, "
                "which a read-only workspace does not allow; open it once with write access"
            )

    def migrate(self, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
        """Apply the migrations not applied yet, each in its own transaction.

        Returns the versions applied."""
        try:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT "
                "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
            )
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: not a catalog database: {exc}") from None
        self._check_version(migrations)
        current = self.version
        applied = []
        for mig in migrations:
            if mig.version <= current:
                continue
            with self.transaction() as conn:
                _exec_script(conn, mig.sql)
                conn.execute(
                    "INSERT INTO schema_migrations(version, name) VALUES (?, ?)",
                    (mig.version, mig.name),
                )
            applied.append(mig.version)
        return applied

    # ---------------------------------------------------------------- transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception. Nested calls join the
        outer transaction. ``BEGIN IMMEDIATE`` takes the write lock at once, so what a
        transaction reads is not changed by another process before it commits."""
        if self.read_only:
            raise CatalogError(
                f"{self.path}: the catalog is open read-only (the workspace is not writable "
                "by this user); this command needs write access"
            )
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    # ---------------------------------------------------------------- ad-hoc reads
    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        """Raw rows of a read query, for inspection in notebooks and tests; the toolkit's own
        code uses the typed methods below."""
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """The first column of the first row of a read query (inspection, like :meth:`query`)."""
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    # ---------------------------------------------------------------- images
    def add_image(self, **fields: Any) -> int:
        """Insert one image row (see :data:`IMAGE_COLUMNS`); returns its id."""
        unknown = set(fields) - set(IMAGE_COLUMNS)
        if unknown:
            raise CatalogError(f"unknown image fields: {sorted(unknown)}")
        cols = list(fields)
        values = [_encode(c, fields[c]) for c in cols]
        with self.transaction() as conn:
            cur = conn.execute(
                f"INSERT INTO images({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                values,
            )
            return int(cur.lastrowid or 0)

    def update_image(self, image_id: int, **fields: Any) -> None:
        """Set columns of one image row (see :data:`IMAGE_COLUMNS`)."""
        unknown = set(fields) - set(IMAGE_COLUMNS)
        if unknown:
            raise CatalogError(f"unknown image fields: {sorted(unknown)}")
        if not fields:
            return
        sets = ", ".join(f"{c} = ?" for c in fields)
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE images SET {sets} WHERE id = ?",
                [_encode(c, v) for c, v in fields.items()] + [image_id],
            )

    def set_image_status(self, image_id: int, status: str, *, only_if: str | None = None) -> bool:
        """Set an image's status (``accepted`` | ``rejected`` | ``duplicate``); with ``only_if``
        only when its current status is that. Returns whether the row changed."""
        if status not in IMAGE_STATUSES:
            raise CatalogError(f"image status must be one of {IMAGE_STATUSES}, got {status!r}")
        sql, params = "UPDATE images SET status = ? WHERE id = ?", [status, image_id]
        if only_if is not None:
            sql += " AND status = ?"
            params.append(only_if)
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount > 0

    def set_splits(self, splits: Mapping[int, str | None]) -> None:
        """Record the split (``train``/``val``/``test``/None) of each image id, in one commit."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE images SET split = ? WHERE id = ?", [(s, i) for i, s in splits.items()]
            )

    def image(self, image_id: int) -> ImageRecord:
        row = self.conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise CatalogError(f"no image with id {image_id} in {self.path}")
        return ImageRecord.from_row(row)

    def image_by_sha256(self, sha256: str) -> ImageRecord | None:
        row = self.conn.execute("SELECT * FROM images WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else ImageRecord.from_row(row)

    def images(
        self,
        status: str | None = "accepted",
        split: str | None = None,
        *,
        ids: Iterable[int] | None = None,
        without_verdict: str | None = None,
    ) -> list[ImageRecord]:
        """Image records ordered by id.

        Args:
            status: only this status (None: all).
            split: only this split.
            ids: only these ids.
            without_verdict: only images that have no verdict of this filter yet (``nsfw``).
        """
        sql, params = "SELECT * FROM images WHERE 1=1", []
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        if without_verdict is not None:
            sql += " AND id NOT IN (SELECT image_id FROM verdicts WHERE filter = ?)"
            params.append(without_verdict)
        if ids is not None:
            wanted = sorted({int(i) for i in ids})
            out: list[ImageRecord] = []
            for k in range(0, len(wanted), _CHUNK):
                chunk = wanted[k : k + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._rows(f"{sql} AND id IN ({marks}) ORDER BY id", [*params, *chunk])
                out.extend(ImageRecord.from_row(r) for r in rows)
            return out
        return [ImageRecord.from_row(r) for r in self._rows(sql + " ORDER BY id", params)]

    def count_images(self, status: str | None = None) -> int:
        if status is None:
            return int(self.scalar("SELECT COUNT(*) FROM images") or 0)
        return int(self.scalar("SELECT COUNT(*) FROM images WHERE status = ?", (status,)) or 0)

    def phashes(self, *, after_id: int = 0, status: str = "accepted") -> list[tuple[int, str]]:
        """``(image_id, phash)`` of the images of ``status`` with an id above ``after_id``,
        by id (the near-duplicate index loads them, then refreshes with what others added)."""
        rows = self._rows(
            "SELECT id, phash FROM images WHERE status = ? AND phash IS NOT NULL AND id > ? "
            "ORDER BY id",
            (status, after_id),
        )
        return [(int(r["id"]), str(r["phash"])) for r in rows]

    def image_status(self, image_id: int) -> str | None:
        """The status of one image, or None when there is no such image."""
        value = self.scalar("SELECT status FROM images WHERE id = ?", (image_id,))
        return None if value is None else str(value)

    # ---------------------------------------------------------------- verdicts
    def set_verdict(
        self,
        image_id: int,
        filter_name: str,
        verdict: str,
        reason: str | None = None,
        score: float | None = None,
    ) -> None:
        """Insert or replace the verdict of ``filter_name`` on one image."""
        if verdict not in ("pass", "reject"):
            raise CatalogError(f"verdict must be 'pass' or 'reject', got {verdict!r}")
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO verdicts(image_id, filter, verdict, reason, score) VALUES (?,?,?,?,?) "
                "ON CONFLICT(image_id, filter) DO UPDATE SET verdict=excluded.verdict, "
                "reason=excluded.reason, score=excluded.score, "
                "created_at=strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (image_id, filter_name, verdict, reason, score),
            )

    def verdicts(
        self,
        image_id: int | None = None,
        *,
        filter_name: str | None = None,
        verdict: str | None = None,
    ) -> list[VerdictRecord]:
        """Verdicts ordered by image id and filter, optionally of one image, filter or verdict."""
        sql, params = "SELECT * FROM verdicts WHERE 1=1", []
        for col, val in (("image_id", image_id), ("filter", filter_name), ("verdict", verdict)):
            if val is not None:
                sql += f" AND {col} = ?"
                params.append(val)
        return [
            VerdictRecord.from_row(r)
            for r in self._rows(sql + " ORDER BY image_id, filter", params)
        ]

    def delete_verdicts(self, filter_name: str) -> int:
        """Remove every verdict of one filter (a filter that was switched off); returns how many."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM verdicts WHERE filter = ?", (filter_name,)).rowcount

    def rejecting_filters(self) -> dict[int, list[str]]:
        """For each image with at least one ``reject`` verdict, the filters that rejected it."""
        out: dict[int, list[str]] = {}
        for r in self._rows(
            "SELECT image_id, filter FROM verdicts WHERE verdict = 'reject' "
            "ORDER BY image_id, filter"
        ):
            out.setdefault(int(r["image_id"]), []).append(str(r["filter"]))
        return out

    # ---------------------------------------------------------------- annotation state
    def set_annotation(self, image_id: int, stage: int, annotator: str, **fields: Any) -> None:
        """Upsert the (image, stage, annotator) annotation row with the given fields (see
        :class:`AnnotationRecord`)."""
        unknown = set(fields) - set(ANNOTATION_FIELDS)
        if unknown:
            raise CatalogError(f"unknown annotation fields: {sorted(unknown)}")
        cols = ["image_id", "stage", "annotator", *fields]
        values = [image_id, stage, annotator, *(_encode(c, v) for c, v in fields.items())]
        updates = ", ".join(f"{c}=excluded.{c}" for c in fields) or "status=status"
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO annotations({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT(image_id, stage, annotator) DO UPDATE SET {updates}, "
                "updated_at=strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                values,
            )

    def annotation(self, image_id: int, stage: int, annotator: str) -> AnnotationRecord | None:
        """The annotation state of one (image, stage, annotator), or None."""
        row = self.conn.execute(
            "SELECT * FROM annotations WHERE image_id = ? AND stage = ? AND annotator = ?",
            (image_id, stage, annotator),
        ).fetchone()
        return None if row is None else AnnotationRecord.from_row(row)

    def annotations(
        self,
        stage: int | None = None,
        status: str | None = None,
        annotator: str | None = None,
        *,
        image_id: int | None = None,
    ) -> list[AnnotationRecord]:
        """Annotation states ordered by image id and annotator, optionally filtered."""
        sql, params = "SELECT * FROM annotations WHERE 1=1", []
        for col, val in (
            ("stage", stage),
            ("status", status),
            ("annotator", annotator),
            ("image_id", image_id),
        ):
            if val is not None:
                sql += f" AND {col} = ?"
                params.append(val)
        rows = self._rows(sql + " ORDER BY image_id, stage, annotator", params)
        return [AnnotationRecord.from_row(r) for r in rows]

    def count_annotations(self, image_id: int | None = None) -> int:
        """Annotation rows (of one image, or all)."""
        if image_id is None:
            return int(self.scalar("SELECT COUNT(*) FROM annotations") or 0)
        return int(
            self.scalar("SELECT COUNT(*) FROM annotations WHERE image_id = ?", (image_id,)) or 0
        )

    # ---------------------------------------------------------------- predictions
    def set_prediction(
        self, image_id: int, model_version: str, path: str, n_entities: int | None
    ) -> None:
        """Record (or replace) the prediction file of (image, model version); ``path`` relative
        to the workspace. Write the file first (see :mod:`entityseg_data.catalog.predictions`)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO predictions(image_id, model_version, path, n_entities) "
                "VALUES (?,?,?,?)",
                (image_id, model_version, path, n_entities),
            )

    def predictions(
        self, image_id: int | None = None, model_version: str | None = None
    ) -> list[PredictionRecord]:
        """Prediction rows ordered by image id and model version, optionally filtered."""
        sql, params = "SELECT * FROM predictions WHERE 1=1", []
        for col, val in (("image_id", image_id), ("model_version", model_version)):
            if val is not None:
                sql += f" AND {col} = ?"
                params.append(val)
        rows = self._rows(sql + " ORDER BY image_id, model_version", params)
        return [PredictionRecord.from_row(r) for r in rows]

    def latest_prediction(
        self, image_id: int, model_version: str | None = None
    ) -> PredictionRecord | None:
        """The newest prediction of an image (of ``model_version`` when given; ties broken by
        model version name), or None."""
        sql = "SELECT * FROM predictions WHERE image_id = ?"
        params: list[Any] = [image_id]
        if model_version:
            sql += " AND model_version = ?"
            params.append(model_version)
        row = self.conn.execute(
            sql + " ORDER BY created_at DESC, model_version LIMIT 1", params
        ).fetchone()
        return None if row is None else PredictionRecord.from_row(row)

    # ---------------------------------------------------------------- annotation rounds
    def add_round(
        self,
        stage: int,
        *,
        selection: str | None = None,
        annotators: Iterable[str] = (),
    ) -> int:
        """Record a new annotation round of ``stage`` (images are added by
        :meth:`extend_round` as the push creates their tasks); returns its id."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO rounds(stage, selection, annotators) VALUES (?,?,?)",
                (int(stage), selection, json.dumps(sorted(set(annotators)))),
            )
            return int(cur.lastrowid or 0)

    def extend_round(
        self,
        round_id: int,
        *,
        images: Iterable[int] = (),
        seed_versions: Mapping[int, str] | None = None,
        n_tasks: int = 0,
    ) -> RoundRecord:
        """Add images pushed in round ``round_id`` (``seed_versions``: image id -> the seed
        version its tasks carry; an image already in the round is not counted again) and
        ``n_tasks`` created tasks; the round's model version
        becomes its most common stage-1 seed version (ties: by name). Join the transaction that
        records the images' annotation rows so both commit together."""
        with self.transaction():
            rec = self.round(round_id)
            ids = dict.fromkeys(rec.images)
            ids.update(dict.fromkeys(int(i) for i in images))
            counts = dict(rec.seed_versions)
            for image_id, version in sorted((seed_versions or {}).items()):
                if int(image_id) not in rec.images:  # counted once per image
                    counts[version] = counts.get(version, 0) + 1
            models = sorted(
                ((-n, v) for v, n in counts.items() if v and not v.startswith("stage1:")),
            )
            self.conn.execute(
                "UPDATE rounds SET images = ?, seed_versions = ?, n_tasks = n_tasks + ?, "
                "model_version = ? WHERE id = ?",
                (
                    json.dumps(list(ids)),
                    json.dumps(counts, sort_keys=True),
                    int(n_tasks),
                    models[0][1] if models else None,
                    int(round_id),
                ),
            )
            return self.round(round_id)

    def round(self, round_id: int) -> RoundRecord:
        row = self.conn.execute("SELECT * FROM rounds WHERE id = ?", (round_id,)).fetchone()
        if row is None:
            raise CatalogError(f"no annotation round {round_id} in {self.path}")
        return RoundRecord.from_row(row)

    def rounds(self, stage: int | None = None) -> list[RoundRecord]:
        """Annotation rounds in push order (of one stage when given)."""
        if stage is None:
            rows = self._rows("SELECT * FROM rounds ORDER BY id")
        else:
            rows = self._rows("SELECT * FROM rounds WHERE stage = ? ORDER BY id", (stage,))
        return [RoundRecord.from_row(r) for r in rows]

    def set_edit(self, record: EditRecord) -> None:
        """Insert or replace the row of one pulled submission (same image, stage, annotator and
        submission id: a submission updated in place replaces its row)."""
        values = record.to_dict()
        values.pop("pulled_at", None)
        cols = [c for c in values if c in EDIT_FIELDS or c in ("image_id", "stage", "annotator")]
        with self.transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO annotation_edits({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})",
                [_encode(c, values[c]) for c in cols],
            )

    def edits(
        self,
        stage: int | None = None,
        *,
        round_id: int | None = None,
        annotator: str | None = None,
        image_id: int | None = None,
    ) -> list[EditRecord]:
        """Pulled submissions, ordered by image, stage, annotator and pull time."""
        sql, params = "SELECT * FROM annotation_edits WHERE 1=1", []
        for col, val in (
            ("stage", stage),
            ("round_id", round_id),
            ("annotator", annotator),
            ("image_id", image_id),
        ):
            if val is not None:
                sql += f" AND {col} = ?"
                params.append(val)
        rows = self._rows(sql + " ORDER BY image_id, stage, annotator, pulled_at, rowid", params)
        return [EditRecord.from_row(r) for r in rows]

    def mark_simulated(
        self,
        image_id: int,
        stage: int,
        annotator: str,
        submission: str,
        lead_time: float | None = None,
    ) -> None:
        """Record that a submission (the tool's id) came from a SIMULATED annotator, whose lead
        time is modelled, not measured: the pull labels its row ``simulated``."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO simulated_submissions(image_id, stage, annotator, "
                "submission, lead_time) VALUES (?,?,?,?,?)",
                (int(image_id), int(stage), annotator, str(submission), lead_time),
            )

    def is_simulated(self, image_id: int, stage: int, annotator: str, submission: str) -> bool:
        """Whether :meth:`mark_simulated` recorded this submission."""
        return (
            self.scalar(
                "SELECT 1 FROM simulated_submissions WHERE image_id = ? AND stage = ? AND "
                "annotator = ? AND submission = ?",
                (int(image_id), int(stage), annotator, str(submission)),
            )
            is not None
        )

    # ---------------------------------------------------------------- ingest ledger
    def ledger_items(self, source: str, source_ids: Sequence[str]) -> dict[str, LedgerItem]:
        """Ledger entries of ``source`` for these ids, by source id (missing ids: absent)."""
        out: dict[str, LedgerItem] = {}
        ids = list(dict.fromkeys(source_ids))
        for k in range(0, len(ids), _CHUNK):
            chunk = ids[k : k + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                f"SELECT * FROM items WHERE source = ? AND source_id IN ({marks})",
                [source, *chunk],
            )
            out.update((str(r["source_id"]), LedgerItem.from_row(r)) for r in rows)
        return out

    def ledger_item(self, source: str, source_id: str) -> LedgerItem | None:
        row = self.conn.execute(
            "SELECT * FROM items WHERE source = ? AND source_id = ?", (source, source_id)
        ).fetchone()
        return None if row is None else LedgerItem.from_row(row)

    def record_item(
        self,
        source: str,
        source_id: str,
        state: str,
        *,
        url: str | None = None,
        image_id: int | None = None,
        error_kind: str | None = None,
        error: str | None = None,
        attempts: int = 0,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert or update one ledger entry (``attempts`` adds to the stored count)."""
        if state not in LEDGER_STATES:
            raise CatalogError(f"ledger state must be one of {LEDGER_STATES}, got {state!r}")
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO items(source, source_id, url, state, image_id, error_kind, error, "
                "attempts, meta) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(source, source_id) DO "
                "UPDATE SET url=excluded.url, state=excluded.state, image_id=excluded.image_id, "
                "error_kind=excluded.error_kind, error=excluded.error, "
                "attempts=items.attempts+excluded.attempts, meta=excluded.meta, "
                "updated_at=strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (
                    source,
                    source_id,
                    url,
                    state,
                    image_id,
                    error_kind,
                    error,
                    attempts,
                    json.dumps(dict(meta or {}), sort_keys=True, default=str),
                ),
            )

    def set_item_state(self, source: str, source_id: str, state: str) -> None:
        """Change the state of an existing ledger entry (e.g. to ``duplicate`` when its image is
        replaced by a larger near-duplicate)."""
        if state not in LEDGER_STATES:
            raise CatalogError(f"ledger state must be one of {LEDGER_STATES}, got {state!r}")
        with self.transaction() as conn:
            conn.execute(
                "UPDATE items SET state = ?, updated_at=strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                "WHERE source = ? AND source_id = ?",
                (state, source, source_id),
            )

    def failure_counts(self) -> dict[str | None, int]:
        """Failed ledger entries by failure kind, most frequent first."""
        rows = self._rows(
            "SELECT error_kind, COUNT(*) AS n FROM items WHERE state = 'failed' "
            "GROUP BY error_kind ORDER BY n DESC, error_kind"
        )
        return {r["error_kind"]: int(r["n"]) for r in rows}

    def failed_items(
        self, kind: str | None = None, *, limit: int | None = None, any_kind: bool = False
    ) -> list[LedgerItem]:
        """Failed ledger entries by id: of failure ``kind`` (``any_kind=True``: all kinds)."""
        sql = "SELECT * FROM items WHERE state = 'failed'"
        params: list[Any] = []
        if not any_kind:
            sql += " AND error_kind IS ?"
            params.append(kind)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [LedgerItem.from_row(r) for r in self._rows(sql, params)]

    def reset_failed(self, kind: str | None = None) -> int:
        """Make failed ledger entries (of failure ``kind``, or all) ``pending`` again, so the next
        run of their source fetches them; returns how many."""
        sql, params = "UPDATE items SET state = 'pending' WHERE state = 'failed'", []
        if kind is not None:
            sql += " AND error_kind = ?"
            params.append(kind)
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount

    # ---------------------------------------------------------------- duplicates
    def add_duplicate(
        self,
        kept_image_id: int,
        dropped_source: str,
        dropped_source_id: str,
        kind: str,
        *,
        dropped_sha256: str | None = None,
        distance: int | None = None,
    ) -> None:
        """Record a dropped duplicate (replacing an earlier record of the same candidate)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO duplicates(kept_image_id, dropped_source, "
                "dropped_source_id, dropped_sha256, kind, distance) VALUES (?,?,?,?,?,?)",
                (kept_image_id, dropped_source, dropped_source_id, dropped_sha256, kind, distance),
            )

    def duplicates(self, kind: str | None = None) -> list[DuplicateRecord]:
        """Duplicate audit rows by id (of one kind when given)."""
        if kind is None:
            rows = self._rows("SELECT * FROM duplicates ORDER BY id")
        else:
            rows = self._rows("SELECT * FROM duplicates WHERE kind = ? ORDER BY id", (kind,))
        return [DuplicateRecord.from_row(r) for r in rows]

    def count_duplicates(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM duplicates") or 0)

    # ---------------------------------------------------------------- selections
    def add_selection(
        self,
        record: SelectionRecord,
        items: Sequence[SelectionItem],
        *,
        replace: bool = False,
    ) -> None:
        """Store a named selection and its items (ranks 1..n in order) in one transaction.

        An existing selection of that name is an error unless ``replace`` (then it is
        replaced whole)."""
        ranks = [it.rank for it in items]
        if ranks != list(range(1, len(items) + 1)):
            raise CatalogError(f"selection {record.name!r}: ranks must be 1..{len(items)}")
        if any(it.selection != record.name for it in items):
            raise CatalogError(f"selection {record.name!r}: an item names another selection")
        with self.transaction() as conn:
            exists = conn.execute(
                "SELECT 1 FROM selections WHERE name = ?", (record.name,)
            ).fetchone()
            if exists and not replace:
                raise CatalogError(
                    f"a selection named {record.name!r} exists already (choose another name, "
                    "or replace it)"
                )
            conn.execute("DELETE FROM selections WHERE name = ?", (record.name,))
            conn.execute(
                "INSERT INTO selections(name, strategy, n_requested, n_selected, seed, "
                "model_version, params) VALUES (?,?,?,?,?,?,?)",
                (
                    record.name,
                    record.strategy,
                    int(record.n_requested),
                    len(items),
                    int(record.seed),
                    record.model_version,
                    json.dumps(dict(record.params), sort_keys=True, default=str),
                ),
            )
            conn.executemany(
                "INSERT INTO selection_items(selection, rank, image_id, source, score, "
                "uncertainty, distance, signals, reasons) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        record.name,
                        it.rank,
                        int(it.image_id),
                        it.source,
                        float(it.score),
                        it.uncertainty,
                        it.distance,
                        json.dumps(dict(it.signals), sort_keys=True),
                        json.dumps(list(it.reasons)),
                    )
                    for it in items
                ],
            )

    def selection_info(self, name: str) -> SelectionRecord | None:
        """The record of selection ``name``, or None."""
        row = self.conn.execute("SELECT * FROM selections WHERE name = ?", (name,)).fetchone()
        return None if row is None else SelectionRecord.from_row(row)

    def selection(self, name: str) -> tuple[SelectionItem, ...]:
        """The items of selection ``name`` in the order chosen (rank 1 first); CatalogError
        naming the known selections when there is none of that name."""
        if self.selection_info(name) is None:
            known = [r.name for r in self.selections()]
            raise CatalogError(
                f"no selection named {name!r} in {self.path} (known: {known or 'none'}; "
                "make one with `entityseg-data select --n N --name NAME`)"
            )
        rows = self._rows(
            "SELECT * FROM selection_items WHERE selection = ? ORDER BY rank", (name,)
        )
        return tuple(SelectionItem.from_row(r) for r in rows)

    def selections(self) -> list[SelectionRecord]:
        """Every selection's record, oldest first (ties by name)."""
        rows = self._rows("SELECT * FROM selections ORDER BY created_at, name")
        return [SelectionRecord.from_row(r) for r in rows]

    def selections_of(self, image_id: int) -> list[str]:
        """Names of the selections holding an image, by name."""
        rows = self._rows(
            "SELECT selection FROM selection_items WHERE image_id = ? ORDER BY selection",
            (image_id,),
        )
        return [str(r[0]) for r in rows]

    def delete_selection(self, name: str) -> bool:
        """Remove a selection (its items too); returns whether it existed."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM selections WHERE name = ?", (name,)).rowcount > 0

    # ---------------------------------------------------------------- key/value
    def get_kv(self, key: str, default: Any = None) -> Any:
        value = self.scalar("SELECT value FROM kv WHERE key = ?", (key,))
        return default if value is None else json.loads(value)

    def set_kv(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value=excluded.value",
                (key, json.dumps(value)),
            )

    # ---------------------------------------------------------------- summaries and exports
    def summary(self) -> dict[str, Any]:
        """Counts by source, status, verdict and annotation stage/status."""

        def counts(sql: str) -> dict[str, int]:
            return {str(k): int(v) for k, v in self.conn.execute(sql).fetchall()}

        return {
            "schema_version": self.version,
            "images": self.count_images(),
            "by_status": counts("SELECT status, COUNT(*) FROM images GROUP BY status ORDER BY 1"),
            "by_source": counts("SELECT source, COUNT(*) FROM images GROUP BY source ORDER BY 1"),
            "by_split": counts(
                "SELECT COALESCE(split, 'unassigned'), COUNT(*) FROM images GROUP BY 1 ORDER BY 1"
            ),
            "by_verdict": counts(
                "SELECT filter || ':' || verdict, COUNT(*) FROM verdicts GROUP BY 1 ORDER BY 1"
            ),
            "by_stage": counts(
                "SELECT 'stage' || stage || ':' || status, COUNT(*) FROM annotations "
                "GROUP BY 1 ORDER BY 1"
            ),
            "items": counts("SELECT state, COUNT(*) FROM items GROUP BY state ORDER BY 1"),
        }

    def _table(self, table: str) -> str:
        tables = {
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if table not in tables:
            raise CatalogError(f"no table '{table}' in the catalog (tables: {sorted(tables)})")
        return table

    def to_pandas(self, table: str = "images") -> Any:
        """One table as a pandas DataFrame (JSON columns decoded)."""
        import pandas as pd

        df = pd.read_sql_query(f"SELECT * FROM {self._table(table)}", self.conn)
        for col in df.columns:
            if col in _JSON_COLUMNS:
                df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else s)
        return df

    def to_parquet(self, path: str | Path, table: str = "images") -> Path:
        """Write one table to Parquet atomically (JSON columns kept as JSON text)."""
        import pandas as pd

        from entityseg_data.io import atomic_open

        df = pd.read_sql_query(f"SELECT * FROM {self._table(table)}", self.conn)
        with atomic_open(path, "wb") as fh:
            df.to_parquet(fh, index=False)
        return Path(path)


def _exec_script(conn: sqlite3.Connection, script: str) -> None:
    """Run a multi-statement script inside the current transaction (``executescript`` would
    commit first)."""
    for statement in _split_sql(script):
        conn.execute(statement)


def _split_sql(script: str) -> Iterable[str]:
    buf = []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.rstrip(";").strip():
                yield stmt
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        yield rest


__all__ = ["ANNOTATION_FIELDS", "EDIT_FIELDS", "IMAGE_COLUMNS", "SCHEMA_VERSION", "Catalog"]
