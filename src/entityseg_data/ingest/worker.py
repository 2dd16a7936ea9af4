"""Per-item work done in the pipeline's worker threads: fetch, decode/normalise, cheap filters,
pre-annotations; plus the pre-download filter on source metadata. No catalog access here."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from entityseg_data.config.ingest import IngestConfig
from entityseg_data.errors import DataError
from entityseg_data.ingest import normalize
from entityseg_data.ingest.dedupe import sha256_hex
from entityseg_data.ingest.downloader import Downloader, FetchError
from entityseg_data.ingest.filters import Verdict, check_aspect, check_resolution
from entityseg_data.ingest.preannotations import PreAnnotation
from entityseg_data.ingest.sources.base import Item
from entityseg_data.io import check_regular_file, read_bytes

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """The result of :func:`process_item` (``ok=False`` with a failure ``kind`` or the bytes,
    decoded facts, verdicts and pre-annotation)."""

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


def process_item(item: Item, config: IngestConfig, downloader: Downloader | None) -> Outcome:
    """Fetch, decode, normalise and run the cheap filters on one item (thread-safe, no catalog
    access). Failures come back as ``Outcome(ok=False, kind=...)``, never as exceptions."""
    final_url = content_type = None
    attempts = 1
    if item.problem is not None:  # the source could not describe this entry: report it
        return Outcome(False, item.problem_kind, item.problem)
    try:
        if item.path is not None:
            path = Path(item.path)
            try:  # regular files only (a FIFO would block, /dev/zero never ends)
                size = check_regular_file(path)
            except DataError as exc:
                return Outcome(False, "io_error", str(exc))
            if config.max_bytes > 0 and size > config.max_bytes:
                return Outcome(False, "too_large", f"{path}: {size} bytes > max_bytes")
            try:
                data = read_bytes(path, max_bytes=config.max_bytes)  # bounded, even if it grew
            except DataError as exc:
                return Outcome(False, "io_error", str(exc))
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
        return Outcome(False, exc.kind, exc.message, attempts=exc.attempts)
    except OSError as exc:
        return Outcome(False, "io_error", f"{item.path}: {exc}")
    sha = sha256_hex(data)
    try:
        dec = normalize.decode(
            data, max_pixels=config.max_pixels, quality=config.normalized_quality
        )
    except normalize.ImageRejected as exc:
        return Outcome(False, exc.kind, exc.message, attempts=attempts)
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
    return Outcome(
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
