"""URL-list source: a text file (one URL per line), a CSV/TSV or a Parquet file with a ``url``
column and optional ``id``, ``license``, ``author``, ``attribution``, ``caption`` columns."""

from __future__ import annotations

import os
from collections.abc import Iterator

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source, clean
from entityseg_data.ingest.sources.tables import iter_rows, pick


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

    def items(self) -> Iterator[Item]:
        for n, row in enumerate(iter_rows(self.path), start=1):
            url = clean(pick(row, "url", "image_url", "URL"))
            if url is None:
                raise DataError(f"{self.path}: row {n} has no 'url' value")
            caption = clean(pick(row, "caption", "text"))
            yield Item(
                source=self.kind,
                source_id=clean(pick(row, "id", "key", "source_id")) or url,
                url=url,
                license=clean(pick(row, "license")) or self.license,
                author=clean(pick(row, "author")),
                attribution=clean(pick(row, "attribution")),
                domain_tags=self.domain_tags,
                extra={"caption": caption} if caption else {},
            )
