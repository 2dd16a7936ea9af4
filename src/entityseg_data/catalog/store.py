"""The catalog: the curated set's state in one embedded SQLite file.

* WAL journal, so readers never block the writer and see a consistent snapshot;
* every write goes through :meth:`Catalog.transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a
  crash mid-batch leaves the catalog as it was before the batch;
* the schema is versioned (``schema_migrations``) and migrated forward on open; a catalog written by
  a newer version of the toolkit is refused with a clear error.

A :class:`Catalog` holds one connection and is meant for one thread; open one per thread/process.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

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
_JSON_COLUMNS = {"domain_tags", "extra", "qa", "meta"}


def _encode(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS and not isinstance(value, str) and value is not None:
        return json.dumps(value, sort_keys=True)
    return value


class Catalog:
    """An open catalog database.

    Args:
        path: the SQLite file (created when missing).
        migrations: the migration list to apply (the package's by default; tests pass others).
        timeout: seconds to wait for another writer's lock before failing.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
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
        self._depth = 0
        self.migrate(migrations)

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- schema
    @property
    def version(self) -> int:
        row = self.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

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
        current = self.version
        latest = migrations[-1].version if migrations else 0
        if current > latest:
            raise CatalogError(
                f"{self.path}: catalog schema version {current} is newer than this toolkit "
                f"supports ({latest}); upgrade entityseg-data"
            )
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
        outer transaction."""
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

    # ---------------------------------------------------------------- generic queries
    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

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
            return int(cur.lastrowid)

    def update_image(self, image_id: int, **fields: Any) -> None:
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

    def image(self, image_id: int) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise CatalogError(f"no image with id {image_id} in {self.path}")
        return row_to_dict(row)

    def image_by_sha256(self, sha256: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM images WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else row_to_dict(row)

    def images(
        self, status: str | None = "accepted", split: str | None = None
    ) -> list[dict[str, Any]]:
        """Image rows ordered by id (``status=None`` for all)."""
        sql, params = "SELECT * FROM images WHERE 1=1", []
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        return [row_to_dict(r) for r in self.conn.execute(sql + " ORDER BY id", params)]

    def set_verdict(
        self,
        image_id: int,
        filter_name: str,
        verdict: str,
        reason: str | None = None,
        score: float | None = None,
    ) -> None:
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

    def verdicts(self, image_id: int) -> list[dict[str, Any]]:
        return [
            row_to_dict(r)
            for r in self.conn.execute(
                "SELECT * FROM verdicts WHERE image_id = ? ORDER BY filter", (image_id,)
            )
        ]

    # ---------------------------------------------------------------- annotation state
    def set_annotation(self, image_id: int, stage: int, annotator: str, **fields: Any) -> None:
        """Upsert the (image, stage, annotator) annotation row with the given fields."""
        allowed = {
            "status",
            "ls_project_id",
            "ls_task_id",
            "ls_annotation_id",
            "mask_path",
            "n_entities",
            "qa",
        }
        unknown = set(fields) - allowed
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

    def annotations(
        self, stage: int | None = None, status: str | None = None, annotator: str | None = None
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM annotations WHERE 1=1", []
        for col, val in (("stage", stage), ("status", status), ("annotator", annotator)):
            if val is not None:
                sql += f" AND {col} = ?"
                params.append(val)
        return [
            row_to_dict(r) for r in self.conn.execute(sql + " ORDER BY image_id, annotator", params)
        ]

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
            "images": int(self.scalar("SELECT COUNT(*) FROM images") or 0),
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

    def to_pandas(self, table: str = "images"):
        """One table as a pandas DataFrame (JSON columns decoded)."""
        import pandas as pd

        tables = {
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if table not in tables:
            raise CatalogError(f"no table '{table}' in the catalog (tables: {sorted(tables)})")
        df = pd.read_sql_query(f"SELECT * FROM {table}", self.conn)
        for col in df.columns:
            if col in _JSON_COLUMNS:
                df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else s)
        return df

    def to_parquet(self, path: str | Path, table: str = "images") -> Path:
        """Write one table to Parquet atomically (JSON columns kept as JSON text)."""
        import pandas as pd

        from entityseg_data.io import atomic_open

        df = pd.read_sql_query(f"SELECT * FROM {table}", self.conn)
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


def row_to_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in _JSON_COLUMNS & out.keys():
        if isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


__all__ = ["IMAGE_COLUMNS", "SCHEMA_VERSION", "Catalog", "row_to_dict"]
