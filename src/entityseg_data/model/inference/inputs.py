"""Expanding prediction inputs (files, folders, globs, list files) and splitting the work.

Pure functions; no image is opened here.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from entityseg_data.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
    ".ppm",
    ".pgm",
    ".jp2",
)
LIST_EXTENSIONS = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class InputItem:
    """One image to predict: its path and the root that ``{relpath}`` is relative to."""

    path: Path
    root: Path


def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[InputItem]:
    """Every image named by ``inputs``, in order, without duplicates.

    A folder contributes its image files recursively (sorted, by extension); a ``.txt`` /
    ``.lst`` / ``.list`` file holds one path per line (relative to the list's folder; ``#``
    comments); any other existing file is taken as an image (even with an odd extension, so a
    bad file is reported rather than skipped); anything else is a glob pattern
    (``**`` recursive). An input that matches nothing raises DataError naming it.
    """
    out: list[InputItem] = []
    seen: set[Path] = set()

    def add(p: Path, root: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(InputItem(p, root))

    for raw in inputs:
        text = str(raw)
        p = Path(text).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and _is_image_name(q))
            if not found:
                raise DataError(f"{p}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            for q in found:
                add(q, p)
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            base = p.parent
            lines = p.read_text(encoding="utf-8").splitlines()
            for line in lines:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                q = Path(line).expanduser()
                add(q if q.is_absolute() else base / q, base)
        elif p.is_file():
            add(p, p.parent)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file() and _is_image_name(Path(m))]
            if not files:
                raise DataError(f"{text}: the pattern matches no image files")
            root = _glob_root(text)
            for q in files:
                add(q, root)
        else:
            raise DataError(f"{text}: no such file, folder or pattern")
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; ``"auto"`` reads torchrun's ``RANK`` /
    ``WORLD_SIZE``; None -> (0, 1)."""
    if text is None or text == "":
        return 0, 1
    if text == "auto":
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects i/n (e.g. 0/4) or auto, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return i, n


def select(
    items: Sequence[InputItem], *, stride: int = 1, shard: tuple[int, int] = (0, 1)
) -> list[InputItem]:
    """Every ``stride``-th item, then the ``shard = (i, n)`` part (items ``k`` with
    ``k % n == i``), order kept."""
    if stride < 1:
        raise ConfigError(f"--stride must be >= 1, got {stride}")
    i, n = shard
    strided = list(items)[::stride]
    return [it for k, it in enumerate(strided) if k % n == i]


def parse_resize(text: str | None) -> tuple[int, int] | int | None:
    """``"HxW"`` -> (H, W) exact size; ``"N"`` -> N (short side, aspect kept); None -> None."""
    if not text:
        return None
    try:
        if "x" in text.lower():
            h, w = (int(v) for v in text.lower().split("x"))
            if h < 1 or w < 1:
                raise ValueError
            return h, w
        n = int(text)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise ConfigError(
            f"--resize expects HxW (e.g. 480x640) or a short side N, got {text!r}"
        ) from None


def resize_input(image: np.ndarray, size: tuple[int, int] | int | None) -> np.ndarray:
    """Resize an (H, W, 3) uint8 array to ``size`` (see :func:`parse_resize`) with PIL bilinear."""
    if size is None:
        return image
    from entityseg_data.model.inference.views import resize_rgb

    h, w = image.shape[:2]
    if isinstance(size, tuple):
        return resize_rgb(image, size)
    scale = size / min(h, w)
    return resize_rgb(image, (max(1, round(h * scale)), max(1, round(w * scale))))
