"""Reading prediction inputs as upright 8-bit RGB arrays, with one clear error per bad file.

Decoding is the toolkit's one image decoder (:mod:`entityseg_data.io.images`), so a file
predicted directly, the same file ingested into a workspace and the same file read for training
give the same pixels: EXIF orientation applied, palette / gray / CMYK converted, 16-bit scaled to
8 bits, transparency composited over white, the pixel limit checked from the header before
decoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.io.images import DEFAULT_MAX_PIXELS, ImageLimits, read_image
from entityseg_data.io.images import as_rgb_array as _as_rgb_array

__all__ = ["DEFAULT_MAX_PIXELS", "as_rgb_array", "load_image"]


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, upright. Raises DataError naming the file."""
    return read_image(path, limits=ImageLimits(max_pixels=max_pixels))


def as_rgb_array(
    image: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, str | None]:
    """``(array, source)`` for a path, a PIL image or an (H, W, 3) / (H, W) array."""
    return _as_rgb_array(image, limits=ImageLimits(max_pixels=max_pixels))
