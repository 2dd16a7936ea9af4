"""Test-time views of an image: the full view plus crops, in the official geometry.

One geometry for inference (all crops) and training (one sampled crop): training imports
:func:`crop_boxes` and :func:`resize_shape` from here.

Coordinates: boxes are ``(x0, y0, x1, y1)`` in ORIGINAL-image pixels, ``x1``/``y1`` exclusive.
Sizes are ``(height, width)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from entityseg_data.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

Box = tuple[int, int, int, int]
Ratio = float | tuple[float, float]


def _pair(value: Ratio, name: str) -> tuple[float, float]:
    """``(ratio_y, ratio_x)`` from a float or a ``(ratio_y, ratio_x)`` pair."""
    ry, rx = (value, value) if isinstance(value, (int, float)) else tuple(value)
    for r in (ry, rx):
        if not 0.0 < float(r) <= 1.0:
            raise DataError(f"{name} must be in (0, 1], got {value!r}")
    return float(ry), float(rx)


def crop_boxes(
    height: int,
    width: int,
    side_ratio: Ratio = 0.7,
    stride_ratio: Ratio = 0.6,
    *,
    dedupe: bool = True,
) -> list[Box]:
    """Crop boxes of the official ``EntityCrop.get_crop_axises`` loop.

    ``crop = int(side_ratio * size)``, ``stride = int(stride_ratio * size)`` per axis; rows are the
    outer loop, columns the inner one; a crop that would run past the border is shifted back
    inside. The defaults (0.7, 0.6) give the 4 corner crops in the order top-left, top-right,
    bottom-left, bottom-right. Ratios may be ``(ratio_y, ratio_x)`` pairs for other grids, e.g.
    ``crop_boxes(h, w, (0.7, 0.4), (0.6, 0.25))`` gives 2 x 4 = 8 crops.

    Deliberate deviations (documented): crop and stride sizes are at least 1 pixel (the official
    loop divides by zero on images smaller than 2 pixels), and with ``dedupe`` the repeated boxes
    that some grids produce after the border shift are dropped (first occurrence kept).
    """
    if height < 1 or width < 1:
        raise DataError(f"cannot crop an empty image ({height}x{width})")
    (sy, sx), (ty, tx) = _pair(side_ratio, "side_ratio"), _pair(stride_ratio, "stride_ratio")
    crop_h, crop_w = max(1, int(sy * height)), max(1, int(sx * width))
    stride_h, stride_w = max(1, int(ty * height)), max(1, int(tx * width))
    boxes: list[Box] = []
    for y in range(0, height, stride_h):
        for x in range(0, width, stride_w):
            y1, x1 = min(y + crop_h, height), min(x + crop_w, width)
            box = (x1 - crop_w, y1 - crop_h, x1, y1)
            if dedupe and box in boxes:
                continue
            boxes.append(box)
    return boxes


def resize_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """``(new_h, new_w)`` of detectron2's ``ResizeShortestEdge`` rule.

    Scale the short side to ``short``; if the long side then exceeds ``max_size`` scale both down
    to it; round with ``int(x + 0.5)``. Each side is at least 1 pixel (the official rule can give 0
    for extreme aspect ratios).
    """
    if h < 1 or w < 1:
        raise DataError(f"cannot resize an empty image ({h}x{w})")
    scale = short * 1.0 / min(h, w)
    if h < w:
        newh, neww = float(short), scale * w
    else:
        newh, neww = scale * h, float(short)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return max(1, int(newh + 0.5)), max(1, int(neww + 0.5))


@dataclass(frozen=True)
class ViewGeometry:
    """Where each view of one image comes from.

    ``regions[v]`` is view v's box in original pixels (view 0 = the full image
    ``(0, 0, W, H)`` when present), ``resized_hw[v]`` its size after resizing (before padding).
    """

    original_hw: tuple[int, int]
    regions: tuple[Box, ...]
    resized_hw: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.regions) != len(self.resized_hw):
            raise DataError("ViewGeometry: regions and resized_hw differ in length")

    @property
    def num_views(self) -> int:
        return len(self.regions)

    def region_hw(self, v: int) -> tuple[int, int]:
        x0, y0, x1, y1 = self.regions[v]
        return y1 - y0, x1 - x0

    def select(self, views: Sequence[int]) -> ViewGeometry:
        """The geometry of a subset of the views (in the given order)."""
        return ViewGeometry(
            self.original_hw,
            tuple(self.regions[v] for v in views),
            tuple(self.resized_hw[v] for v in views),
        )


def view_geometry(
    height: int,
    width: int,
    *,
    min_size: int = 800,
    max_size: int = 1333,
    side_ratio: Ratio = 0.7,
    stride_ratio: Ratio = 0.6,
    crops: bool = True,
) -> ViewGeometry:
    """The views of the official test mapper: view 0 = full image, then every crop box (each
    resized with the same short side / max size rule)."""
    regions: list[Box] = [(0, 0, width, height)]
    if crops:
        regions += crop_boxes(height, width, side_ratio, stride_ratio)
    sizes = []
    for x0, y0, x1, y1 in regions:
        sizes.append(resize_shape(y1 - y0, x1 - x0, min_size, max_size))
    return ViewGeometry((height, width), tuple(regions), tuple(sizes))


def resize_rgb(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 array to ``hw`` with PIL bilinear (antialiased when shrinking,
    as detectron2's ``ResizeTransform`` does for uint8 images)."""
    from PIL import Image

    if image.shape[:2] == tuple(hw):
        return np.ascontiguousarray(image)
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(pil.resize((int(hw[1]), int(hw[0])), Image.Resampling.BILINEAR))


def build_views(image: np.ndarray, geometry: ViewGeometry, *, workers: int = 1) -> list[np.ndarray]:
    """The (h_v, w_v, 3) uint8 RGB view images: each region cut from the original and resized
    (PIL bilinear, antialiased when shrinking: the same pixels as :func:`resize_rgb` of the cut).

    ``workers`` > 1 resizes that many views at a time in threads (PIL releases the GIL while it
    crops and resamples), the largest views first; the result does not depend on it.
    """
    pil = view_source(image, geometry)
    order = largest_first([geometry])
    if workers <= 1 or len(order) <= 1:
        out = {v: cut_view(image, pil, geometry, v) for _, v in order}
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(order))) as pool:
            views = pool.map(lambda iv: cut_view(image, pil, geometry, iv[1]), order)
            out = {v: view for (_, v), view in zip(order, views)}
    return [out[v] for v in range(geometry.num_views)]


def view_source(image: np.ndarray, geometry: ViewGeometry) -> Image.Image:
    """The PIL image the views of ``image`` are cut from (one copy shared by every view), after
    checking that ``image`` is (H, W, 3) uint8 of the geometry's size."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if tuple(image.shape[:2]) != tuple(geometry.original_hw):
        raise DataError(
            f"image is {image.shape[0]}x{image.shape[1]} but the geometry was built for "
            f"{geometry.original_hw[0]}x{geometry.original_hw[1]}"
        )
    return Image.fromarray(np.ascontiguousarray(image))


def cut_view(image: np.ndarray, pil: Image.Image, geometry: ViewGeometry, v: int) -> np.ndarray:
    """View ``v`` (h_v, w_v, 3) uint8 of ``image``: its region cut from ``pil`` (the
    :func:`view_source` of ``image``) and resized with PIL bilinear; the image itself when the
    view is the whole image at its own size. Thread-safe (PIL releases the GIL)."""
    from PIL import Image

    height, width = geometry.original_hw
    box, (h, w) = geometry.regions[v], geometry.resized_hw[v]
    if box == (0, 0, width, height) and (h, w) == (height, width):
        return np.ascontiguousarray(image)
    view = pil if box == (0, 0, width, height) else pil.crop(box)
    if view.size != (w, h):
        view = view.resize((int(w), int(h)), Image.Resampling.BILINEAR)
    return np.asarray(view)


def largest_first(geometries: Sequence[ViewGeometry]) -> list[tuple[int, int]]:
    """``(image, view)`` pairs of a batch, the largest regions first (threads that take them in
    this order finish together)."""

    def area(iv: tuple[int, int]) -> int:
        h, w = geometries[iv[0]].region_hw(iv[1])
        return h * w

    pairs = [(i, v) for i, g in enumerate(geometries) for v in range(g.num_views)]
    return sorted(pairs, key=area, reverse=True)
