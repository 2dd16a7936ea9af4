"""Streaming readers for tabular metadata (txt, CSV, TSV, Parquet) shared by the URL sources."""

from __future__ import annotations

import codecs
import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from entityseg_data.errors import DataError

#: one metadata row: column -> value (key None: a CSV row's fields past the header)
Row: TypeAlias = dict[str | None, Any]


def iter_rows(path: str | Path, *, fmt: str | None = None) -> Iterator[Row]:
    """Rows of a metadata file as dicts, streaming.

    ``fmt`` is one of ``txt`` (one URL per line, the whole line, ``#`` comments; rows
    ``{"url": ...}``), ``csv``, ``tsv``, ``parquet``; by default it is taken from the suffix
    (``.tsv000`` counts as TSV). Text files are UTF-8 (a byte-order mark is dropped) or UTF-16
    with a byte-order mark; other bytes raise one DataError naming the file and the line. A CSV
    row with more fields than the header is yielded with the key ``None`` holding the extra
    fields (:func:`ragged` tells which rows these are).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a metadata file (txt, csv, tsv, parquet)")
    fmt = fmt or guess_format(path)
    if fmt == "txt":
        yield from _txt(path)
    elif fmt in ("csv", "tsv"):
        yield from _delimited(path, "\t" if fmt == "tsv" else ",")
    elif fmt == "parquet":
        yield from _parquet(path)
    else:
        raise DataError(f"{path}: unknown metadata format {fmt!r} (txt, csv, tsv, parquet)")


def ragged(row: Row) -> str | None:
    """A message when a CSV/TSV row has more fields than the header, else None."""
    extra = row.get(None)  # csv.DictReader's restkey: the fields past the header
    if not extra:
        return None
    return f"{len(extra)} more field(s) than the header ({extra[0]!r}...): unquoted separator?"


def guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix.startswith(".tsv"):
        return "tsv"
    if suffix.startswith(".csv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "txt"


def _text_lines(path: Path) -> Iterator[str]:
    """Decoded lines (with their line ends) of a UTF-8 or BOM-marked UTF-16 text file."""
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            text = io.TextIOWrapper(fh, encoding="utf-16", newline="")
            n = 0
            try:
                for n, line in enumerate(text, start=1):  # noqa: B007 (n used below)
                    yield line
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}: line {n + 1}: not valid UTF-16 text ({exc.reason})"
                ) from None
            return
        for n, raw in enumerate(fh, start=1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}: line {n}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); save the file as UTF-8"
                ) from None


def _txt(path: Path) -> Iterator[Row]:
    for line in _text_lines(path):
        line = line.strip()
        if line and not line.startswith("#"):
            yield {"url": line}  # the whole line: a URL may hold spaces


def _delimited(path: Path, delimiter: str) -> Iterator[Row]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(_text_lines(path), delimiter=delimiter)
    try:
        if not reader.fieldnames:
            raise DataError(f"{path}: no header row")
        yield from reader
    except csv.Error as exc:
        raise DataError(
            f"{path}: line {reader.line_num}: malformed {delimiter!r}-separated text ({exc})"
        ) from None


def _parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    for batch in pf.iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def pick(row: Row, *names: str) -> Any:
    """The first present, non-empty value among column ``names`` (case-insensitive)."""
    lower = {k.lower(): v for k, v in row.items() if isinstance(k, str)}
    for name in names:
        value = lower.get(name.lower())
        if value is not None and value != "" and not (isinstance(value, float) and value != value):
            return value
    return None
