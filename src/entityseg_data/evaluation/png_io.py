"""Reading the label PNGs of class-aware evaluation (panoptic RGB ids, semantic grey maps)."""

from __future__ import annotations

import os
from collections.abc import Collection

import numpy as np

from entityseg_data.errors import DataError


def read_png_array(path: str | os.PathLike[str], modes: Collection[str], what: str) -> np.ndarray:
    """The pixels of the PNG at ``path`` as decoded by
    :func:`entityseg_data.io.images.read_label_image` (no conversion beyond RGBA -> RGB), when
    its mode is one of ``modes``; one DataError naming the file otherwise (unreadable,
    truncated, too large, wrong mode)."""
    from entityseg_data.io.images import ImageLimits, read_label_image

    im = read_label_image(path, what, limits=ImageLimits(max_bytes=1 << 30))
    if im.mode not in modes:
        raise DataError(
            f"{path}: the {what} must be a PNG of mode {'/'.join(modes)}, got {im.mode}"
        )
    if im.mode == "RGBA":
        im = im.convert("RGB")
    return np.asarray(im)
