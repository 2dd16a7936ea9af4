"""The one image decoder: bytes or a file -> upright 8-bit RGB, with one clear error per bad file.

Every stage reads pixels through here (ingest, annotation, statistics, export, training,
predict), so a picture gives the same pixels wherever it is read. The rules:

* only regular files are read, at most ``max_bytes`` of them (a FIFO or ``/dev/zero`` named
  ``*.jpg`` is refused, not read forever);
* the pixel limit is checked from the header, before any decoding (decompression bombs);
* the image is decoded completely, so truncated and corrupt files are caught;
* EXIF orientation (1-8) is applied: arrays are *upright*, ``(H, W)`` as a viewer shows them;
* modes become 8-bit RGB: 16/32-bit integer gray is scaled by its bit depth (not stretched to its
  own maximum); transparency (RGBA, LA, PA, palette or gray with a transparent colour) is
  composited over white; CMYK, YCbCr, LAB, palette, bilevel and gray are converted; animated
  files give their first frame.

Errors: :class:`ImageRejected` (with a machine ``kind``: ``not_image``, ``decode_error``,
``truncated``, ``too_many_pixels``, ``too_large``) for bytes; :class:`~entityseg_data.errors.
DataError` naming the file for paths. Nothing here changes global PIL state.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from entityseg_data.errors import DataError
from entityseg_data.io.files import check_regular_file, read_bytes

DEFAULT_MAX_PIXELS = 250_000_000  # pixels; 12 MP photos are far below, panoramas fit
DEFAULT_MAX_BYTES = 2 << 30  # bytes of an image file read at once

EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_DEEP_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_KIND_TEXT = {
    "too_many_pixels": "too large",
    "too_large": "too large",
    "decode_error": "not a readable image",
    "not_image": "not an image",
    "truncated": "truncated image",
}


class ImageRejected(Exception):
    """The bytes are not a usable image. ``kind``: ``not_image``, ``decode_error``,
    ``truncated``, ``too_many_pixels``, ``too_large``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ImageLimits:
    """Read limits: ``max_pixels`` (width x height from the header, 0 = none) and ``max_bytes``
    (file size, 0 = none)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class ImageSize:
    """Sizes in pixels from the header: ``raw_*`` as stored, ``height``/``width`` upright."""

    raw_height: int
    raw_width: int
    orientation: int

    @property
    def swaps(self) -> bool:
        """True when the orientation exchanges width and height (5-8)."""
        return self.orientation in (5, 6, 7, 8)

    @property
    def height(self) -> int:
        return self.raw_width if self.swaps else self.raw_height

    @property
    def width(self) -> int:
        return self.raw_height if self.swaps else self.raw_width


@dataclass(frozen=True)
class DecodedImage:
    """An upright 8-bit RGB PIL image and what was done to get it.

    ``mode``: the file's PIL mode; ``changes``: conversions made (``mode:CMYK``, ``alpha``,
    ``mode:I;16->8bit``, ``16bit->8bit``, ``first_frame``, ``orientation:6``); empty when the
    file was already upright 8-bit RGB."""

    image: Image.Image
    size: ImageSize
    mode: str
    changes: tuple[str, ...]

    def array(self) -> np.ndarray:
        """(H, W, 3) uint8, C-contiguous."""
        return np.ascontiguousarray(np.asarray(self.image, dtype=np.uint8))


def orientation_of(im: Image.Image) -> int:
    """EXIF orientation (1-8; 1 when missing or invalid)."""
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # PIL raises many kinds on odd EXIF blocks
        return 1
    return value if 1 <= value <= 8 else 1


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``data`` lazily (header only) and enforce the pixel limit; raises ImageRejected."""
    return _open(io.BytesIO(data), max_pixels)


def _open(fp: Any, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("decode_error", f"cannot identify image: {exc}") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageRejected("decode_error", f"invalid size {w}x{h}")
    if max_pixels > 0 and w * h > max_pixels:
        raise ImageRejected(
            "too_many_pixels", f"{w}x{h} = {w * h} pixels > max_pixels {max_pixels}"
        )
    return im


def load_pixels(im: Image.Image) -> None:
    """Decode every pixel of a lazily opened image; raises ImageRejected (truncated/corrupt)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except OSError as exc:
        kind = "truncated" if "truncated" in str(exc).lower() else "decode_error"
        raise ImageRejected(kind, f"cannot decode: {exc}") from None
    except (SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected("decode_error", f"cannot decode: {exc}") from None


def to_rgb(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """8-bit RGB version of a loaded image and the list of conversions made.

    16-bit and 32-bit integer gray is scaled to 8 bits (by its bit depth, not stretched);
    transparency is composited over white; CMYK/YCbCr/LAB/palette/bilevel/gray convert."""
    changes: list[str] = []
    mode = im.mode
    if mode == "RGB":
        return im, changes
    if mode in _DEEP_GRAY:
        arr = np.asarray(im).astype(np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        # values that fit in 8 bits are kept as they are (8-bit data in a 16-bit container)
        scale = 255.0 if peak <= 255 else (65535.0 if peak <= 65535 else float(2**32 - 1))
        arr8 = np.clip(np.rint(arr * (255.0 / scale)), 0, 255).astype(np.uint8)
        changes.append(f"mode:{mode}->8bit")
        return Image.fromarray(arr8, "L").convert("RGB"), changes
    has_alpha = mode in _ALPHA_MODES or (
        mode in ("P", "L", "RGB", "1") and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        changes.append(f"mode:{mode}")
        changes.append("alpha")
        return background.convert("RGB"), changes
    changes.append(f"mode:{mode}")
    return im.convert("RGB"), changes


def is_16bit_rgb(im: Image.Image) -> bool:
    """True for 16-bit-per-channel RGB(A) files, which PIL opens as 8-bit RGB(A). Call before
    ``getexif()``, which loads PNGs."""
    try:
        tiles = getattr(im, "tile", None) or []
        return any(";16" in str(getattr(t, "args", "")) for t in tiles)
    except (IndexError, TypeError):
        return False


def apply_orientation(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` turned upright for EXIF ``orientation`` (1-8), as ``ImageOps.exif_transpose``."""
    op = _TRANSPOSE.get(int(orientation))
    return im.transpose(op) if op is not None else im


def orient_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF ``orientation`` (1-8) to an (H, W, ...) array the way
    :func:`apply_orientation` turns pixels (a view when possible). Used to bring masks drawn on
    the raw pixels into the upright geometry."""
    if orientation in (0, 1, None):
        return a
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: np.swapaxes(x, 0, 1),
        6: lambda x: np.rot90(x, k=-1),
        7: lambda x: np.swapaxes(x[::-1, ::-1], 0, 1),
        8: lambda x: np.rot90(x, k=1),
    }
    if orientation not in ops:
        raise DataError(f"invalid EXIF orientation {orientation}")
    return ops[orientation](a)


def decode_image(im: Image.Image, *, draft_min_side: int = 0) -> DecodedImage:
    """Decode an opened image (:func:`open_image`) into upright RGB (the module's rules).

    ``draft_min_side`` > 0: a JPEG is decoded at a reduced DCT scale (1/2, 1/4, 1/8) that keeps
    its short side at least that many pixels (cheap previews, CLIP inputs); ``size`` still gives
    the file's full size, the image is smaller."""
    raw_w, raw_h = im.size
    deep = is_16bit_rgb(im)  # before getexif(), which loads PNGs
    orientation = orientation_of(im)
    mode = im.mode
    if draft_min_side > 0 and im.format == "JPEG":
        scale = max(1, min(8, min(raw_w, raw_h) // int(draft_min_side)))
        if scale > 1:
            im.draft("RGB", (raw_w // scale, raw_h // scale))
    load_pixels(im)
    rgb, changes = to_rgb(im)
    if deep:
        changes.append("16bit->8bit")
    if getattr(im, "n_frames", 1) > 1:
        changes.append("first_frame")
    if orientation != 1:
        rgb = apply_orientation(rgb, orientation)
        changes.append(f"orientation:{orientation}")
    return DecodedImage(
        image=rgb,
        size=ImageSize(raw_height=raw_h, raw_width=raw_w, orientation=orientation),
        mode=mode,
        changes=tuple(changes),
    )


def decode_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Upright RGB of encoded image ``data``; raises :class:`ImageRejected`."""
    if not data:
        raise ImageRejected("not_image", "empty file")
    return decode_image(open_image(data, max_pixels=max_pixels))


def _data_error(path: str | os.PathLike[str], exc: ImageRejected) -> DataError:
    return DataError(f"{path}: {_KIND_TEXT.get(exc.kind, exc.kind)}: {exc.message}")


def _check_size(path: Any, got: tuple[int, int], expect_hw: tuple[int, int] | None) -> None:
    if expect_hw is not None and tuple(got) != (int(expect_hw[0]), int(expect_hw[1])):
        raise DataError(
            f"{path}: image is {got[0]}x{got[1]} (upright), the annotations say "
            f"{int(expect_hw[0])}x{int(expect_hw[1])}"
        )


def decode_file(
    path: str | os.PathLike[str],
    *,
    limits: ImageLimits = ImageLimits(),
    expect_hw: tuple[int, int] | None = None,
    draft_min_side: int = 0,
) -> DecodedImage:
    """Upright RGB of an image file; ``expect_hw`` = (H, W) the caller's annotations give for
    the upright image; ``draft_min_side`` see :func:`decode_image`. Raises DataError naming
    the file."""
    data = read_bytes(path, max_bytes=limits.max_bytes)
    try:
        if not data:
            raise ImageRejected("not_image", "empty file")
        im = open_image(data, max_pixels=limits.max_pixels)
        dec = decode_image(im, draft_min_side=draft_min_side)
    except ImageRejected as exc:
        raise _data_error(path, exc) from None
    _check_size(path, (dec.size.height, dec.size.width), expect_hw)
    return dec


def open_upright(
    path: str | os.PathLike[str],
    *,
    limits: ImageLimits = ImageLimits(),
    expect_hw: tuple[int, int] | None = None,
    draft_min_side: int = 0,
) -> Image.Image:
    """The upright 8-bit RGB PIL image of a file (see :func:`decode_file`)."""
    return decode_file(
        path, limits=limits, expect_hw=expect_hw, draft_min_side=draft_min_side
    ).image


def read_image(
    path: str | os.PathLike[str],
    *,
    limits: ImageLimits = ImageLimits(),
    expect_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 upright RGB of an image file (see :func:`decode_file`)."""
    return decode_file(path, limits=limits, expect_hw=expect_hw).array()


def read_label_image(
    path: str | os.PathLike[str], what: str = "label map", *, limits: ImageLimits = ImageLimits()
) -> Image.Image:
    """A label / annotation PNG decoded as stored: mode kept (L, I;16, P, RGB ids), no EXIF
    turn, no colour conversion (pixel values are labels, not colours). Raises DataError
    "PATH: cannot read the <what>: ..." for missing, unreadable, too large or corrupt files."""
    data = read_bytes(path, max_bytes=limits.max_bytes)
    try:
        im = open_image(data, max_pixels=limits.max_pixels)
        load_pixels(im)
    except ImageRejected as exc:
        raise DataError(f"{path}: cannot read the {what}: {exc.message}") from None
    return im


def read_label_array(
    path: str | os.PathLike[str],
    what: str = "label map",
    *,
    modes: Collection[str] | None = None,
    limits: ImageLimits = ImageLimits(),
) -> np.ndarray:
    """The pixels of a label / annotation PNG as :func:`read_label_image` decodes them (values
    as stored; only RGBA becomes RGB), when its mode is one of ``modes`` (any when None); one
    DataError naming the file otherwise."""
    im = read_label_image(path, what, limits=limits)
    if modes is not None and im.mode not in modes:
        raise DataError(
            f"{path}: the {what} must be a PNG of mode {'/'.join(modes)}, got {im.mode}"
        )
    if im.mode == "RGBA":
        im = im.convert("RGB")
    return np.asarray(im)


def image_size(path: str | os.PathLike[str], *, limits: ImageLimits = ImageLimits()) -> ImageSize:
    """Raw size and EXIF orientation of an image file from its header (no pixel decoding,
    except PNGs whose EXIF comes after the pixels). Raises DataError naming the file."""
    check_regular_file(path, max_bytes=limits.max_bytes)
    try:
        with open(path, "rb") as fh:
            im = _open(fh, limits.max_pixels)
            w, h = im.size
            orientation = orientation_of(im)
    except ImageRejected as exc:
        raise _data_error(path, exc) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return ImageSize(raw_height=int(h), raw_width=int(w), orientation=orientation)


def check_image(
    path: str | os.PathLike[str],
    *,
    limits: ImageLimits = ImageLimits(),
    draft: bool = True,
) -> ImageSize:
    """Sizes of an image file after checking that it decodes (a JPEG through a 1/8-scale
    draft, which still reads every entropy-coded byte, so truncation is caught cheaply).
    Raises DataError naming the file."""
    data = read_bytes(path, max_bytes=limits.max_bytes)
    try:
        im = open_image(data, max_pixels=limits.max_pixels)
        w, h = im.size
        orientation = orientation_of(im)
        if draft and im.format == "JPEG":
            im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
        load_pixels(im)
    except ImageRejected as exc:
        raise _data_error(path, exc) from None
    return ImageSize(raw_height=int(h), raw_width=int(w), orientation=orientation)


def as_rgb_array(
    image: Any, *, limits: ImageLimits = ImageLimits()
) -> tuple[np.ndarray, str | None]:
    """``(array, source)`` for a path, a PIL image or an (H, W, 3) / (H, W) array.

    Paths are decoded by :func:`read_image` (source = the path); a PIL image goes through
    :func:`to_rgb` (no EXIF: an in-memory image is taken as shown); arrays: gray is repeated, a
    4th channel dropped, floats in [0, 1] scaled by 255, other dtypes rounded and clipped."""
    if isinstance(image, (str, Path)):
        return read_image(image, limits=limits), str(image)
    if isinstance(image, Image.Image):
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
        if limits.max_pixels and arr.shape[0] * arr.shape[1] > limits.max_pixels:
            raise DataError(f"image array of {arr.shape[0]}x{arr.shape[1]} exceeds max_pixels")
        return np.ascontiguousarray(arr), None
    raise DataError(f"cannot read an image from an object of type {type(image).__name__}")


def encode_image(im: Image.Image, suffix: str, *, jpeg_quality: int = 95) -> bytes:
    """Encoded bytes of an RGB image: JPEG for ``.jpg``/``.jpeg`` (4:4:4), PNG otherwise."""
    buf = io.BytesIO()
    if suffix.lower() in (".jpg", ".jpeg"):
        im.save(buf, "JPEG", quality=jpeg_quality, subsampling=0)
    else:
        im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()
