"""Reading prediction inputs as upright 8-bit RGB arrays, with one clear error per bad file.

Decoding and mode conversion are ingest's (:mod:`entityseg_data.ingest.normalize`), so a file
predicted directly and the same file ingested into a workspace give the same pixels: EXIF
orientation applied, palette / gray / CMYK converted, 16-bit scaled to 8 bits, transparency
composited over white, the pixel limit checked from the header before decoding.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.errors import DataError

DEFAULT_MAX_PIXELS = 250_000_000


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, upright. Raises DataError naming the file."""
    from PIL import Image, ImageOps

    from entityseg_data.ingest.normalize import ImageRejected, open_image, to_rgb

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not data:
        raise DataError(f"{path}: empty file")
    try:
        im = open_image(data, max_pixels=max_pixels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im.load()
            except OSError as exc:
                kind = "truncated" if "truncated" in str(exc).lower() else "corrupt"
                raise DataError(f"{path}: {kind} image: {exc}") from None
            except (SyntaxError, ValueError, EOFError) as exc:
                raise DataError(f"{path}: corrupt image: {exc}") from None
            im = ImageOps.exif_transpose(im) or im
            rgb, _ = to_rgb(im)
    except ImageRejected as exc:
        what = {"too_many_pixels": "too large", "decode_error": "not a readable image"}
        raise DataError(f"{path}: {what.get(exc.kind, exc.kind)}: {exc.message}") from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{path}: decoded to an unusable array of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def as_rgb_array(image: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """``(array, source)`` for a path, a PIL image or an (H, W, 3) / (H, W) array."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        return load_image(image, max_pixels=max_pixels), str(image)
    if isinstance(image, Image.Image):
        from entityseg_data.ingest.normalize import to_rgb

        rgb, _ = to_rgb(image)
        return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), None
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise DataError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
        if arr.shape[2] == 4:
            arr = arr[..., :3]
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise DataError(f"empty image array of shape {image.shape}")
        if arr.shape[0] * arr.shape[1] > max_pixels:
            raise DataError(f"image array of {arr.shape[0]}x{arr.shape[1]} exceeds max_pixels")
        return np.ascontiguousarray(arr), None
    raise DataError(f"cannot segment an object of type {type(image).__name__}")
