"""Streaming readers for tabular metadata (txt, CSV, TSV, Parquet) shared by the URL sources."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from entityseg_data.errors import DataError


def iter_rows(path: str | Path, *, fmt: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a metadata file as dicts, streaming.

    ``fmt`` is one of ``txt`` (one URL per line, ``#`` comments; rows ``{"url": ...}``), ``csv``,
    ``tsv``, ``parquet``; by default it is taken from the suffix (``.tsv000`` counts as TSV).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    fmt = fmt or guess_format(path)
    if fmt == "txt":
        yield from _txt(path)
    elif fmt in ("csv", "tsv"):
        yield from _delimited(path, "\t" if fmt == "tsv" else ",")
    elif fmt == "parquet":
        yield from _parquet(path)
    else:
        raise DataError(f"{path}: unknown metadata format {fmt!r} (txt, csv, tsv, parquet)")


def guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix.startswith(".tsv"):
        return "tsv"
    if suffix.startswith(".csv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "txt"


def _txt(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                yield {"url": line.split()[0]}


def _delimited(path: Path, delimiter: str) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        if not reader.fieldnames:
            raise DataError(f"{path}: no header row")
        yield from reader


def _parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    for batch in pf.iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def pick(row: dict[str, Any], *names: str) -> Any:
    """The first present, non-empty value among column ``names`` (case-insensitive)."""
    lower = {k.lower(): v for k, v in row.items()}
    for name in names:
        value = lower.get(name.lower())
        if value is not None and value != "" and not (isinstance(value, float) and value != value):
            return value
    return None
