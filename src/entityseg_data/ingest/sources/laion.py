"""LAION metadata source: the Parquet files of LAION-400M / LAION-5B (and re-releases).

Columns used (case-insensitive): ``URL``, ``TEXT`` (caption), ``WIDTH``, ``HEIGHT``,
``SAMPLE_ID`` (LAION-400M) or ``hash`` / ``key`` (LAION-5B), ``LICENSE``, ``NSFW`` (LAION-400M
tag: ``UNLIKELY`` / ``UNSURE`` / ``NSFW``), ``punsafe`` (LAION-5B), ``similarity``.
The declared WIDTH/HEIGHT and the NSFW tag feed the pre-download filters; the measured size
and our own CLIP NSFW score decide in the end.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source, clean, to_int
from entityseg_data.ingest.sources.tables import iter_rows, pick


class LaionSource(Source):
    """Image URLs listed in a LAION metadata Parquet file."""

    kind = "laion"

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        domain_tags: tuple[str, ...] = ("web",),
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"laion:{path}")
        self.path = str(path)
        self.domain_tags = tuple(domain_tags)
        if not os.path.exists(self.path):
            raise DataError(f"laion source: {self.path} does not exist")

    def items(self) -> Iterator[Item]:
        stem = os.path.basename(self.path)
        for n, row in enumerate(iter_rows(self.path, fmt="parquet"), start=1):
            url = clean(pick(row, "URL", "url"))
            if url is None:
                raise DataError(f"{self.path}: row {n} has no URL (is this LAION metadata?)")
            sid = clean(pick(row, "SAMPLE_ID", "key", "hash"))
            if sid is None:
                sid = hashlib.sha1(url.encode("utf-8")).hexdigest()[:20]
            flags: dict[str, Any] = {}
            tag = clean(pick(row, "NSFW"))
            if tag is not None:
                flags["NSFW"] = tag.upper()
            punsafe = pick(row, "punsafe")
            if punsafe is not None:
                flags["punsafe"] = float(punsafe)
            extra = {"parquet": stem, "row": n}
            caption = clean(pick(row, "TEXT", "caption"))
            if caption:
                extra["caption"] = caption
            sim = pick(row, "similarity")
            if sim is not None:
                extra["clip_similarity"] = float(sim)
            extra.update({f"laion_{k}": v for k, v in flags.items()})
            yield Item(
                source=self.kind,
                source_id=str(sid),
                url=url,
                license=clean(pick(row, "LICENSE")),
                attribution=f"LAION metadata {stem} row {n}; original at {url}",
                domain_tags=self.domain_tags,
                declared_width=to_int(pick(row, "WIDTH", "original_width")),
                declared_height=to_int(pick(row, "HEIGHT", "original_height")),
                declared_flags=flags,
                extra=extra,
            )
