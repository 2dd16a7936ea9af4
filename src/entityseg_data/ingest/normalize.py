"""Decode, check and normalise one image's bytes.

* the pixel limit is checked from the header, before any decoding (decompression bombs);
* the image is decoded completely, so truncated and corrupt files are caught;
* a normalised copy (upright RGB: EXIF orientation applied; palette, CMYK, 16-bit, grayscale,
  alpha converted) is produced only when the original is not already upright 8-bit RGB;
* the perceptual hash is computed on the upright image.

Nothing here touches the filesystem or global PIL state.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from entityseg_data.ingest.magic import EXTENSIONS, sniff_mime

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
PHASH_SIDE = 256  # the upright image is reduced to a short side in [256, 512) before pHash


class ImageRejected(Exception):
    """The bytes are not a usable image. ``kind``: not_image, decode_error, truncated,
    too_many_pixels."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Decoded:
    """What ingest needs to know about one image.

    Sizes in pixels: ``raw_*`` as stored in the file, ``width``/``height`` upright (EXIF
    applied). ``normalized`` holds the encoded upright RGB copy (``normalized_ext``) when the
    original needs one, and ``changes`` says why (``orientation``, ``mode:CMYK``, ``alpha``, ...).
    """

    mime: str
    ext: str
    mode: str
    raw_width: int
    raw_height: int
    width: int
    height: int
    orientation: int
    phash: str
    normalized: bytes | None
    normalized_ext: str | None
    changes: tuple[str, ...]
    small: np.ndarray | None = None  # (h, w, 3) uint8 upright, short side in [256, 512)


def orientation_of(im: Image.Image) -> int:
    """EXIF orientation (1-8; 1 when missing or invalid)."""
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open (lazily, header only) and enforce the pixel limit; raises ImageRejected."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
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


def _load(im: Image.Image) -> None:
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
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        scale = 1.0 if peak <= 255 else (65535.0 if peak <= 65535 else float(2**32 - 1))
        arr8 = np.clip(np.rint(arr * (255.0 / scale)), 0, 255).astype(np.uint8)
        changes.append(f"mode:{mode}->8bit")
        return Image.fromarray(arr8, "L").convert("RGB"), changes
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
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


def _is_16bit_rgb(im: Image.Image) -> bool:
    """True for 16-bit-per-channel RGB(A) files, which PIL opens as 8-bit RGB(A)."""
    try:
        return any(";16" in str(getattr(t, "args", "")) for t in (im.tile or []))
    except (IndexError, TypeError):
        return False


def reduce_upright(im: Image.Image) -> Image.Image:
    """Box-reduce an upright image to a short side in [256, 512) (smaller images unchanged),
    in RGB."""
    factor = max(1, min(im.size) // PHASH_SIDE)
    small = im.reduce(factor) if factor > 1 else im
    return small if small.mode == "RGB" else small.convert("RGB")


def phash_hex(im: Image.Image) -> str:
    """64-bit DCT perceptual hash (imagehash.phash) of an upright image, as 16 hex digits.

    The image is first reduced by :func:`reduce_upright` so large and small versions of one
    picture hash alike and the hash stays cheap."""
    import imagehash

    return str(imagehash.phash(reduce_upright(im)))


def decode(data: bytes, *, max_pixels: int, quality: int = 95) -> Decoded:
    """Check and normalise ``data`` (the original bytes). Raises :class:`ImageRejected`."""
    mime = sniff_mime(data[:32])
    if mime is None:
        raise ImageRejected("not_image", "not a known image format (magic number)")
    im = open_image(data, max_pixels=max_pixels)
    raw_w, raw_h = im.size
    deep = _is_16bit_rgb(im)  # before getexif(), which loads PNGs
    orientation = orientation_of(im)
    mode = im.mode
    needs_norm = orientation != 1 or mode != "RGB" or deep or getattr(im, "n_frames", 1) > 1
    if not needs_norm and mime == "image/jpeg":
        # reduced DCT decode: still reads every entropy-coded byte (catches truncation) at a
        # fraction of the cost, and is all the pHash needs
        scale = max(1, min(8, min(raw_w, raw_h) // PHASH_SIDE))
        im.draft("RGB", (max(1, raw_w // scale), max(1, raw_h // scale)))
        _load(im)
        return Decoded(
            mime=mime,
            ext=EXTENSIONS[mime],
            mode=mode,
            raw_width=raw_w,
            raw_height=raw_h,
            width=raw_w,
            height=raw_h,
            orientation=1,
            phash=phash_hex(im),
            normalized=None,
            normalized_ext=None,
            changes=(),
            small=np.asarray(reduce_upright(im)),
        )
    _load(im)
    rgb, changes = to_rgb(im)
    if deep:
        changes.append("16bit->8bit")
    if getattr(im, "n_frames", 1) > 1:
        changes.append("first_frame")
    if orientation != 1:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
        changes.append(f"orientation:{orientation}")
    normalized = ext = None
    if changes:
        buf = io.BytesIO()
        if mime == "image/jpeg":
            rgb.save(buf, "JPEG", quality=quality, subsampling=0)
            ext = ".jpg"
        else:
            rgb.save(buf, "PNG", compress_level=1)
            ext = ".png"
        normalized = buf.getvalue()
    return Decoded(
        mime=mime,
        ext=EXTENSIONS[mime],
        mode=mode,
        raw_width=raw_w,
        raw_height=raw_h,
        width=rgb.size[0],
        height=rgb.size[1],
        orientation=orientation,
        phash=phash_hex(rgb),
        normalized=normalized,
        normalized_ext=ext,
        changes=tuple(changes),
        small=np.asarray(reduce_upright(rgb)),
    )
