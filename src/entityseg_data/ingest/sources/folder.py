"""Local folder source: a folder (recursive), a glob pattern, or a single file.

When an image has a JSON sidecar with the same stem (as img2dataset's ``files`` output writes:
``00000.jpg`` + ``00000.json``), its ``url``, ``caption``, ``license``, ``author`` and
``attribution`` keys are kept as provenance.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source, clean, text_id
from entityseg_data.io import read_bytes

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".avif")
_GLOB_CHARS = set("*?[")
SIDECAR_EXTRA = ("caption", "key", "sample_id", "similarity", "text", "nsfw", "punsafe")
_SIDECAR_MAX_BYTES = 1 << 20  # a sidecar is a few hundred bytes: a larger one is not ours


class FolderSource(Source):
    """Images under ``root``.

    Args:
        root: a folder (walked recursively), a glob pattern (``photos/**/*.jpg``; ``**`` recurses)
            or one image file.
        license / author / attribution: provenance recorded for every image of the folder.
        domain_tags: tags recorded for every image.
    """

    kind = "folder"

    def __init__(
        self,
        *,
        root: str | os.PathLike[str],
        license: str | None = None,
        author: str | None = None,
        attribution: str | None = None,
        domain_tags: tuple[str, ...] = (),
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"folder:{root}")
        self.root = str(root)
        self.license = license
        self.author = author
        self.attribution = attribution
        self.domain_tags = tuple(domain_tags)
        if not (_GLOB_CHARS & set(self.root)) and not os.path.exists(self.root):
            raise DataError(f"folder source: {self.root} does not exist")

    def entries(self) -> Iterator[tuple[Path, str | None]]:
        """``(path, problem)`` for every image entry in a stable (sorted) order; ``problem`` is
        None, or why a sub-folder could not be listed (then ``path`` is that folder).

        Entries are not opened here: special files (a FIFO, a device) named like images are
        yielded and refused by the reader, so that they are reported instead of skipped."""
        if _GLOB_CHARS & set(self.root):
            for p in sorted(glob.iglob(self.root, recursive=True)):
                path = Path(p)
                if not path.is_dir() and path.suffix.lower() in IMAGE_EXTENSIONS:
                    yield path, None
            return
        root = Path(self.root)
        if not root.is_dir():
            yield root, None
            return
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
            while errors:  # a sub-folder os.walk could not list: report it, go on
                exc = errors.pop(0)
                where = Path(exc.filename) if exc.filename else Path(dirpath)
                yield where, f"{where}: cannot list the folder: {exc.strerror or exc}"
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    yield Path(dirpath) / name, None
        while errors:
            exc = errors.pop(0)
            where = Path(exc.filename) if exc.filename else root
            yield where, f"{where}: cannot list the folder: {exc.strerror or exc}"

    def paths(self) -> Iterator[Path]:
        """Image files in a stable (sorted) order (entries with a problem left out)."""
        for path, problem in self.entries():
            if problem is None:
                yield path

    def items(self) -> Iterator[Item]:
        for path, problem in self.entries():
            if problem is not None:
                yield self._problem(path, problem)
                continue
            try:  # one bad entry (a symlink loop...) is reported, never stops the folder
                yield self._item(path)
            except (OSError, RuntimeError, ValueError) as exc:
                yield self._problem(path.absolute(), f"{path}: {exc}")

    def _problem(self, path: Path, message: str) -> Item:
        return Item(
            source=self.kind,
            source_id=text_id(path.as_posix()),
            path=str(path),
            domain_tags=self.domain_tags,
            problem=text_id(message),
            problem_kind="io_error",
        )

    def _item(self, path: Path) -> Item:
        path = path.resolve(strict=False)
        meta = _sidecar(path)
        return Item(
            source=self.kind,
            source_id=text_id(path.as_posix()),
            path=str(path),
            url=clean(meta.get("url")),
            license=clean(meta.get("license")) or self.license,
            author=clean(meta.get("author")) or self.author,
            attribution=clean(meta.get("attribution")) or self.attribution,
            domain_tags=self.domain_tags,
            extra={k: meta[k] for k in SIDECAR_EXTRA if meta.get(k) is not None},
        )


def _sidecar(path: Path) -> dict:
    side = path.with_suffix(".json")
    if not side.exists():
        return {}
    try:
        data = json.loads(read_bytes(side, max_bytes=_SIDECAR_MAX_BYTES).decode("utf-8"))
    except (OSError, ValueError, DataError) as exc:
        log.warning("ignoring unreadable sidecar %s: %s", side, exc)
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k).lower(): v for k, v in data.items()}  # img2dataset keeps column case
