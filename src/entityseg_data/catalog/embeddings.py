"""Per-model cache of CLIP embeddings in the workspace (``cache/clip/<model key>.sqlite``).

Image embeddings are keyed by the sha256 of the original bytes, text embeddings by the prompt;
vectors are L2-normalised float32. Re-filtering with another threshold or other prompts never
re-embeds an image. The ingest NSFW stage writes them; selection (choosing what to annotate
next) reads them. Core: :func:`cache_key` and :func:`cache_path` name the file of a CLIP model
+ weights without loading the model.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

RANDOM_TAGS = ("", "none", "random")


def cache_key(model_name: str, pretrained: str) -> str:
    """Filesystem-safe name of an open_clip model + weights pair (the cache file's stem)."""
    if model_name.startswith("local-dir:"):
        d = Path(model_name[len("local-dir:") :]).resolve()
        weights = d / "open_clip_model.safetensors"
        stamp = int(weights.stat().st_mtime) if weights.exists() else 0
        base = f"localdir-{d.name}-{stamp}"
    else:
        tag = pretrained.strip() or "random"
        if tag.lower() in RANDOM_TAGS:
            tag = "random-seed0"
        elif os.path.isfile(tag):
            p = Path(tag).resolve()
            tag = f"file-{p.stem}-{p.stat().st_size}"
        base = f"{model_name}__{tag}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)


def cache_path(cache_dir: str | Path, key: str) -> Path:
    """The cache file of model key ``key`` under a workspace's ``cache/`` folder."""
    return Path(cache_dir) / "clip" / f"{key}.sqlite"


class EmbeddingCache:
    """A small SQLite store of vectors. One instance per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS image (sha256 TEXT PRIMARY KEY, vec BLOB NOT NULL)"
        )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS text (prompt TEXT PRIMARY KEY, vec BLOB NOT NULL)"
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, table: str, column: str, keys: Iterable[str]) -> dict[str, np.ndarray]:
        keys = list(keys)
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self.conn.execute(
                f"SELECT {column}, vec FROM {table} WHERE {column} IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for key, blob in rows:
                out[key] = np.frombuffer(blob, np.float32)
        return out

    def _put(self, table: str, column: str, items: dict[str, np.ndarray]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                f"INSERT OR REPLACE INTO {table}({column}, vec) VALUES (?, ?)",
                [(k, np.asarray(v, np.float32).tobytes()) for k, v in items.items()],
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def get_images(self, sha256s: Iterable[str]) -> dict[str, np.ndarray]:
        return self._get("image", "sha256", sha256s)

    def put_images(self, items: dict[str, np.ndarray]) -> None:
        self._put("image", "sha256", items)

    def get_texts(self, prompts: Iterable[str]) -> dict[str, np.ndarray]:
        return self._get("text", "prompt", prompts)

    def put_texts(self, items: dict[str, np.ndarray]) -> None:
        self._put("text", "prompt", items)

    def count_images(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM image").fetchone()[0])
