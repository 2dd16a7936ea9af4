"""Unsplash dataset source: the ``photos.tsv*`` file of the Unsplash Lite or Full dataset.

Columns used: ``photo_id``, ``photo_url`` (the photo page), ``photo_image_url`` (the image),
``photo_width``, ``photo_height``, ``photographer_username``, ``photographer_first_name``,
``photographer_last_name``, ``photo_description`` / ``ai_description``.
Licence: the Unsplash License (Lite) or the Full dataset's non-commercial terms; attribution is
"Photo by <name> on Unsplash" with the page URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source, clean, to_int
from entityseg_data.ingest.sources.tables import iter_rows, pick, ragged

UNSPLASH_LICENSE = "Unsplash License (https://unsplash.com/license)"


class UnsplashSource(Source):
    """Photos listed in an Unsplash dataset TSV.

    Args:
        path: the ``photos.tsv000`` file (any ``.tsv*``/``.csv`` works).
        max_width: when > 0, ask the image CDN for at most this width (``?w=``); 0 = original.
        license: licence text recorded per image.
    """

    kind = "unsplash"

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        max_width: int = 0,
        license: str = UNSPLASH_LICENSE,
        domain_tags: tuple[str, ...] = ("photo",),
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"unsplash:{path}")
        self.path = str(path)
        self.max_width = max_width
        self.license = license
        self.domain_tags = tuple(domain_tags)
        if not os.path.exists(self.path):
            raise DataError(f"unsplash source: {self.path} does not exist")

    def items(self) -> Iterator[Item]:
        fmt = "csv" if self.path.lower().endswith(".csv") else "tsv"
        for n, row in enumerate(iter_rows(self.path, fmt=fmt), start=1):
            photo_id = clean(pick(row, "photo_id"))
            image_url = clean(pick(row, "photo_image_url"))
            problem = ragged(row)
            if problem is not None:  # shifted columns: report the row, go on
                yield Item(
                    source=self.kind,
                    source_id=photo_id or f"{self.path}#row{n}",
                    url=image_url,
                    problem=f"{self.path}: row {n}: {problem}",
                    problem_kind="bad_record",
                )
                continue
            if photo_id is None or image_url is None:
                raise DataError(
                    f"{self.path}: row {n} lacks photo_id/photo_image_url (is this an Unsplash "
                    f"photos.tsv file?)"
                )
            if self.max_width > 0:
                sep = "&" if "?" in image_url else "?"
                image_url = f"{image_url}{sep}w={self.max_width}"
            first = clean(pick(row, "photographer_first_name")) or ""
            last = clean(pick(row, "photographer_last_name")) or ""
            name = f"{first} {last}".strip() or clean(pick(row, "photographer_username"))
            page = clean(pick(row, "photo_url")) or f"https://unsplash.com/photos/{photo_id}"
            caption = clean(pick(row, "photo_description", "ai_description"))
            yield Item(
                source=self.kind,
                source_id=photo_id,
                url=image_url,
                license=self.license,
                author=name,
                attribution=f"Photo by {name} on Unsplash ({page})" if name else page,
                domain_tags=self.domain_tags,
                declared_width=to_int(pick(row, "photo_width")),
                declared_height=to_int(pick(row, "photo_height")),
                extra={
                    k: v
                    for k, v in (
                        ("caption", caption),
                        ("page_url", page),
                        ("photographer_username", clean(pick(row, "photographer_username"))),
                    )
                    if v
                },
            )
