"""The lr copy, made the way the official EntitySeg ``images_lr`` / ``*_lr.json`` were made.

Size rule (detectron2 ``ResizeShortestEdge(800, max_size=1333)``): ``scale = 800 / min(h, w)``;
if ``max(h, w) * scale > 1333`` then ``scale = 1333 / max(h, w)``; each side becomes
``int(side * scale + 0.5)``. (Like the official copy, images smaller than 800 px are enlarged.)
Images: PIL ``resize(BILINEAR)`` of the EXIF-upright RGB image. Masks: PIL ``NEAREST`` resize;
non-overlapping masks are resized together as one label map (identical to resizing each mask,
since nearest picks the same source pixel for every mask), overlapping ones one by one; then
re-encoded as compressed RLE with ``area``/``bbox`` recomputed. Entities that vanish at lr (tiny
or thin ones) are dropped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from entityseg_data.errors import DataError
from entityseg_data.io import atomic_open
from entityseg_data.io import images as image_io
from entityseg_data.io.coco import CocoAnnotation, CocoDataset, CocoImage, as_dataset
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.rle import RLE, label_map_t

log = logging.getLogger(__name__)


def lr_size(height: int, width: int, short: int = 800, max_side: int = 1333) -> tuple[int, int]:
    """(new_height, new_width) of the official lr resize."""
    h, w = int(height), int(width)
    scale = short / min(h, w)
    if max(h, w) * scale > max_side:
        scale = max_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_image(img: Image.Image, size_hw: tuple[int, int]) -> Image.Image:
    """PIL bilinear resize of an RGB image to (H, W)."""
    return img.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)


def resize_label_map(label_map: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """PIL nearest resize of an (H, W) integer label map; returns (h, w) of the input dtype."""
    im = Image.fromarray(label_map.astype(np.int32), mode="I")
    out = np.asarray(im.resize((size_hw[1], size_hw[0]), Image.Resampling.NEAREST))
    return out.astype(label_map.dtype)


def resize_rles(
    rles: Sequence[RLE], height: int, width: int, size_hw: tuple[int, int]
) -> list[RLE | None]:
    """Nearest-resized compressed RLEs (None for masks that become empty)."""
    if not rles:
        return []
    lm_t, overlapped = label_map_t(rles, height, width)
    small = resize_label_map(np.ascontiguousarray(lm_t.T), size_hw)
    found = rle_utils.label_map_to_rles(small)
    out: list[RLE | None] = [found.get(i + 1) for i in range(len(rles))]
    for i in np.flatnonzero(overlapped):
        m = rle_utils.decode(rles[i])
        one = resize_label_map(m, size_hw)
        out[i] = rle_utils.encode(one) if one.any() else None
    return out


def open_upright(path: Path, expect_hw: tuple[int, int] | None = None) -> Image.Image:
    """The upright RGB image of the toolkit's one decoder (one clear error when unreadable or,
    with ``expect_hw``, not that (H, W))."""
    return image_io.open_upright(path, expect_hw=expect_hw)


def save_image(img: Image.Image, path: Path, jpeg_quality: int = 95) -> None:
    """Write atomically; JPEG for .jpg/.jpeg, PNG otherwise (lossless)."""
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    with atomic_open(path, "wb") as f:
        if fmt == "JPEG":
            img.save(f, format="JPEG", quality=jpeg_quality)
        else:
            img.save(f, format="PNG")


def make_lr(
    coco: CocoDataset | Mapping[str, Any],
    images_dir: str | Path,
    out_images_dir: str | Path,
    *,
    short: int = 800,
    max_side: int = 1333,
    jpeg_quality: int = 95,
    overwrite: bool = False,
    progress: Callable[[int], object] | None = None,
) -> tuple[CocoDataset, dict[str, Any]]:
    """Write the lr images and return ``(lr_records, counts)``.

    ``coco``: the hr records (a COCO dict is read by :func:`~entityseg_data.io.coco.read_coco`).
    ``lr_records`` are the same records with lr ``height``/``width`` and resized segmentations,
    ``area`` and ``bbox`` (same ids, same other fields); ``counts`` = ``{"images",
    "annotations", "dropped_empty", "skipped_images" (a number), "skipped" ([{image_id,
    error}])}``. Existing lr images are reused unless ``overwrite`` (resume).
    """
    ds = as_dataset(coco, what="COCO annotations")
    src_root, dst_root = Path(images_dir), Path(out_images_dir)
    by_image = ds.annotations_by_image()
    images: list[CocoImage] = []
    anns: list[CocoAnnotation] = []
    counts: dict[str, Any] = {
        "images": 0,
        "annotations": 0,
        "dropped_empty": 0,
        "skipped_images": 0,
        "skipped": [],
    }
    for img in ds.images:
        h, w = img.height, img.width
        nh, nw = lr_size(h, w, short, max_side)
        dst = dst_root / img.file_name
        img_anns = by_image[img.id]
        try:
            if overwrite or not dst.exists():
                im = open_upright(src_root / img.file_name, expect_hw=(h, w))
                save_image(resize_image(im, (nh, nw)), dst, jpeg_quality)
            small = resize_rles([a.segmentation for a in img_anns], h, w, (nh, nw))
        except (DataError, KeyError, TypeError, ValueError) as exc:
            log.warning("lr: skipped image %s: %s", img.id, exc)
            counts["skipped_images"] += 1
            counts["skipped"].append({"image_id": img.id, "error": str(exc)})
            continue
        images.append(replace(img, height=nh, width=nw))
        for a, r in zip(img_anns, small):
            if r is None:
                counts["dropped_empty"] += 1
                continue
            x, y, bw, bh = rle_utils.bbox(r)
            anns.append(replace(a, segmentation=r, area=rle_utils.area(r), bbox=(x, y, bw, bh)))
        counts["images"] += 1
        if progress is not None:
            progress(1)
    counts["annotations"] = len(anns)
    return replace(ds, images=tuple(images), annotations=tuple(anns)), counts
