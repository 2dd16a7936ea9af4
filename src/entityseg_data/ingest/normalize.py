"""Decode, check and normalise one image's bytes for ingest.

The pixel rules (limits, EXIF, modes, 16-bit, alpha) are the one decoder's,
:mod:`entityseg_data.io.images`; this module adds what ingest needs on top:

* the pixel limit is checked from the header, before any decoding (decompression bombs);
* the image is decoded completely, so truncated and corrupt files are caught;
* a normalised copy (upright RGB: EXIF orientation applied; palette, CMYK, 16-bit, grayscale,
  alpha converted) is produced only when the original is not already upright 8-bit RGB;
* the perceptual hash is computed on the upright image.

Nothing here touches the filesystem or global PIL state.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from entityseg_data.ingest.magic import EXTENSIONS, sniff_mime
from entityseg_data.io.images import (
    EXIF_ORIENTATION,
    ImageRejected,
    decode_image,
    is_16bit_rgb,
    load_pixels,
    open_image,
    orientation_of,
    to_rgb,
)

PHASH_SIDE = 256  # the upright image is reduced to a short side in [256, 512) before pHash


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
    deep = is_16bit_rgb(im)  # before getexif(), which loads PNGs
    orientation = orientation_of(im)
    mode = im.mode
    needs_norm = orientation != 1 or mode != "RGB" or deep or getattr(im, "n_frames", 1) > 1
    if not needs_norm and mime == "image/jpeg":
        # reduced DCT decode: still reads every entropy-coded byte (catches truncation) at a
        # fraction of the cost, and is all the pHash needs
        scale = max(1, min(8, min(raw_w, raw_h) // PHASH_SIDE))
        im.draft("RGB", (max(1, raw_w // scale), max(1, raw_h // scale)))
        load_pixels(im)
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
    dec = decode_image(open_image(data, max_pixels=max_pixels))  # fresh: getexif loaded PNGs
    rgb, changes = dec.image, dec.changes
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
        changes=changes,
        small=np.asarray(reduce_upright(rgb)),
    )


__all__ = [
    "EXIF_ORIENTATION",
    "Decoded",
    "ImageRejected",
    "decode",
    "open_image",
    "orientation_of",
    "phash_hex",
    "reduce_upright",
    "to_rgb",
]
