"""Test images with an EXIF orientation (shared by the io and ingest tests)."""

from __future__ import annotations

import numpy as np
from PIL import Image

#: the transpose that turns upright pixels into the stored pixels of EXIF orientation k (the
#: inverse of what a viewer applies)
EXIF_INVERSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_with_orientation(
    upright: np.ndarray, orientation: int
) -> tuple[Image.Image, Image.Exif]:
    """(stored image, EXIF) such that applying EXIF ``orientation`` to the stored pixels gives
    ``upright`` back."""
    stored = Image.fromarray(upright)
    if orientation != 1:
        stored = stored.transpose(EXIF_INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, exif
