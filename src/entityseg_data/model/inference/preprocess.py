"""Normalise and pad the views of a batch of images into the model's input tensor.

The model receives ``(B, V, 3, Hp, Wp)`` float32: every view ``(x - mean) / std`` (RGB), then
zero-padded at the bottom/right to the largest view height/width over ALL views of ALL images of
the batch, each rounded up to a multiple of ``size_divisibility`` (detectron2's
``ImageList.from_tensors``; 0 after normalisation = the mean colour).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.model.inference.views import (
    ViewGeometry,
    cut_view,
    largest_first,
    view_source,
)

if TYPE_CHECKING:
    import torch

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def padded_size(sizes: Sequence[tuple[int, int]], size_divisibility: int = 32) -> tuple[int, int]:
    """``(Hp, Wp)``: the max height/width of ``sizes`` rounded up to ``size_divisibility``."""
    if not sizes:
        raise DataError("padded_size needs at least one view size")
    d = max(1, int(size_divisibility))
    hp = max(h for h, _ in sizes)
    wp = max(w for _, w in sizes)
    return -(-hp // d) * d, -(-wp // d) * d


def stack_views(
    batch_views: Sequence[Sequence[np.ndarray]],
    *,
    pixel_mean: Sequence[float] = PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
    size_divisibility: int = 32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Batch tensor ``(B, V, 3, Hp, Wp)`` float32 from ``B`` lists of ``V`` (h, w, 3) uint8 views.

    Every image must have the same number of views. Returns ``(tensor, (Hp, Wp))``.
    """
    import torch

    if not batch_views:
        raise DataError("stack_views needs at least one image")
    num_views = {len(v) for v in batch_views}
    if len(num_views) != 1:
        raise DataError(f"all images of a batch need the same number of views, got {num_views}")
    sizes = [tuple(view.shape[:2]) for views in batch_views for view in views]
    hp, wp = padded_size(sizes, size_divisibility)
    b, v = len(batch_views), num_views.pop()
    # every pixel is written once: the views normalised in place in their slots, only the
    # padding zeroed (a zeroed tensor plus a normalised copy per view wrote it three times)
    out = torch.empty((b, v, 3, hp, wp), dtype=torch.float32, device=device)
    mean = torch.tensor(list(pixel_mean), dtype=torch.float32, device=device).view(3, 1, 1)
    std = torch.tensor(list(pixel_std), dtype=torch.float32, device=device).view(3, 1, 1)
    for i, views in enumerate(batch_views):
        for j, view in enumerate(views):
            _fill_slot(out[i, j], view, mean, std)
    return out, (hp, wp)


def _fill_slot(slot: torch.Tensor, view: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Write the (h, w, 3) uint8 ``view`` normalised into the top-left of ``slot`` (3, Hp, Wp) and
    zero the rest: every value of the slot is written once."""
    import torch

    h, w = view.shape[:2]
    slot[:, h:, :].zero_()
    slot[:, :h, w:].zero_()
    pixels = slot[:, :h, :w]
    with warnings.catch_warnings():  # a read-only array (PIL's) is only read here
        warnings.simplefilter("ignore", UserWarning)
        src = torch.from_numpy(np.asarray(view))
    pixels.copy_(src.to(slot.device).permute(2, 0, 1))
    pixels.sub_(mean).div_(std)  # the same float32 operations as (x - mean) / std


def views_input(
    images: Sequence[np.ndarray],
    geometries: Sequence[ViewGeometry],
    *,
    pixel_mean: Sequence[float] = PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
    size_divisibility: int = 32,
    device: torch.device | str | None = None,
    workers: int = 1,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The model's input ``(B, V, 3, Hp, Wp)`` float32 of B (H, W, 3) uint8 RGB images and their
    view geometries: bitwise ``stack_views([build_views(image, geometry) ...])``, built in one
    pass per view: each view is cut and resized (PIL) and normalised straight into its slot of
    the tensor (the same torch operations as :func:`stack_views`), its padding zeroed.
    ``workers`` > 1 runs that many views at a time in threads, the largest first, each torch
    operation on its calling thread meanwhile (PIL and torch release the GIL; views, not the
    operations of one view, are what is split between the cores). Built on the CPU, then moved
    to ``device``. Returns ``(tensor, (Hp, Wp))``."""
    import torch

    if not images or len(images) != len(geometries):
        raise DataError(
            f"views_input needs one geometry per image, got {len(images)} images "
            f"and {len(geometries)} geometries"
        )
    num_views = {g.num_views for g in geometries}
    if len(num_views) != 1:
        raise DataError(f"all images of a batch need the same number of views, got {num_views}")
    hp, wp = padded_size([hw for g in geometries for hw in g.resized_hw], size_divisibility)
    sources = [view_source(image, g) for image, g in zip(images, geometries)]
    out = torch.empty((len(images), num_views.pop(), 3, hp, wp), dtype=torch.float32)
    mean = torch.tensor(list(pixel_mean), dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(list(pixel_std), dtype=torch.float32).view(3, 1, 1)

    def fill(iv: tuple[int, int]) -> None:
        i, v = iv
        _fill_slot(out[i, v], cut_view(images[i], sources[i], geometries[i], v), mean, std)

    order = largest_first(geometries)
    if workers <= 1 or len(order) <= 1:
        for iv in order:
            fill(iv)
    else:
        from concurrent.futures import ThreadPoolExecutor

        from entityseg_data.model.runtime import intraop_threads

        with intraop_threads(1), ThreadPoolExecutor(max_workers=min(workers, len(order))) as pool:
            list(pool.map(fill, order))
    if device is not None:
        out = out.to(device)  # the same tensor when it is already there
    return out, (hp, wp)
