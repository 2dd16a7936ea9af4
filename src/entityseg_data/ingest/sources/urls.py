"""URL-list source: a text file (one URL per line), a CSV/TSV or a Parquet file with a ``url``
column and optional ``id``, ``license``, ``author``, ``attribution``, ``caption`` columns.

A malformed row (more fields than the header, no URL) becomes a failed item naming the file and
row (kind ``bad_record``); the other rows go on. A file without a URL column, a folder, or text
that is neither UTF-8 nor BOM-marked UTF-16 is refused with one error naming the file (and the
line)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source, clean
from entityseg_data.ingest.sources.tables import iter_rows, pick, ragged

_URL_COLUMNS = ("url", "image_url")


class UrlListSource(Source):
    """URLs listed in ``path`` (format from the suffix: ``.txt``, ``.csv``, ``.tsv``, ``.parquet``).

    The source id is the ``id`` column when present, else the URL itself.
    """

    kind = "urls"

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        license: str | None = None,
        domain_tags: tuple[str, ...] = (),
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"urls:{path}")
        self.path = str(path)
        self.license = license
        self.domain_tags = tuple(domain_tags)
        if not os.path.exists(self.path):
            raise DataError(f"urls source: {self.path} does not exist")
        if os.path.isdir(self.path):
            raise DataError(
                f"urls source: {self.path} is a folder; give a URL list file (.txt, .csv, .tsv, "
                f".parquet), or use folder:{self.path} for the images in a folder"
            )

    def items(self) -> Iterator[Item]:
        for n, row in enumerate(iter_rows(self.path), start=1):
            url = clean(pick(row, *_URL_COLUMNS))
            source_id = clean(pick(row, "id", "key", "source_id")) or url
            if n == 1 and not any(str(k).lower() in _URL_COLUMNS for k in row):
                raise DataError(
                    f"{self.path}: row 1 has no 'url' value (no url column among "
                    f"{[k for k in row if isinstance(k, str)]}; is the separator a comma?)"
                )
            problem = ragged(row) or (None if url else "no 'url' value")
            if problem is not None or url is None:
                yield Item(
                    source=self.kind,
                    source_id=source_id or f"{self.path}#row{n}",
                    url=url,
                    problem=f"{self.path}: row {n}: {problem or 'no url'}",
                    problem_kind="bad_record",
                )
                continue
            caption = clean(pick(row, "caption", "text"))
            yield Item(
                source=self.kind,
                source_id=source_id or url,
                url=url,
                license=clean(pick(row, "license")) or self.license,
                author=clean(pick(row, "author")),
                attribution=clean(pick(row, "attribution")),
                domain_tags=self.domain_tags,
                extra={"caption": caption} if caption else {},
            )
