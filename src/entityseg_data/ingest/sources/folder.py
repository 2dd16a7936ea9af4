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
from entityseg_data.ingest.sources.base import Item, Source, clean

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".avif")
_GLOB_CHARS = set("*?[")
SIDECAR_EXTRA = ("caption", "key", "sample_id", "similarity", "text", "nsfw", "punsafe")


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

    def paths(self) -> Iterator[Path]:
        """Image files in a stable (sorted) order."""
        if _GLOB_CHARS & set(self.root):
            for p in sorted(glob.iglob(self.root, recursive=True)):
                path = Path(p)
                if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                    yield path
            return
        root = Path(self.root)
        if root.is_file():
            yield root
            return
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    yield Path(dirpath) / name

    def items(self) -> Iterator[Item]:
        for path in self.paths():
            path = path.resolve()
            meta = _sidecar(path)
            yield Item(
                source=self.kind,
                source_id=path.as_posix(),
                path=str(path),
                url=clean(meta.get("url")),
                license=clean(meta.get("license")) or self.license,
                author=clean(meta.get("author")) or self.author,
                attribution=clean(meta.get("attribution")) or self.attribution,
                domain_tags=self.domain_tags,
                extra={
                    k: meta[k]
                    for k in (
                        "caption",
                        "key",
                        "sample_id",
                        "similarity",
                        "text",
                        "nsfw",
                        "punsafe",
                    )
                    if meta.get(k) is not None
                },
            )


def _sidecar(path: Path) -> dict:
    side = path.with_suffix(".json")
    if not side.exists():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable sidecar %s: %s", side, exc)
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k).lower(): v for k, v in data.items()}  # img2dataset keeps column case
