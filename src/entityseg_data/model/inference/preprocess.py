"""Normalise and pad the views of a batch of images into the model's input tensor.

The model receives ``(B, V, 3, Hp, Wp)`` float32: every view ``(x - mean) / std`` (RGB), then
zero-padded at the bottom/right to the largest view height/width over ALL views of ALL images of
the batch, each rounded up to a multiple of ``size_divisibility`` (detectron2's
``ImageList.from_tensors``; 0 after normalisation = the mean colour).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
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
    h = view.shape[0]
    _fill_rows(slot, view, mean, std, 0, h)
    slot[:, h:, :].zero_()


def _fill_rows(
    slot: torch.Tensor, view: np.ndarray, mean: torch.Tensor, std: torch.Tensor, a: int, b: int
) -> None:
    """Rows ``[a, b)`` of :func:`_fill_slot` (``b`` <= the view's height): those rows of the
    (h, w, 3) uint8 ``view`` normalised into ``slot[:, a:b, :w]``, ``slot[:, a:b, w:]`` zeroed.
    Every value is computed by the same elementwise float32 operations whatever the rows."""
    import torch

    w = view.shape[1]
    slot[:, a:b, w:].zero_()
    pixels = slot[:, a:b, :w]
    with warnings.catch_warnings():  # a read-only array (PIL's) is only read here
        warnings.simplefilter("ignore", UserWarning)
        src = torch.from_numpy(np.asarray(view[a:b]))
    pixels.copy_(src.to(slot.device).permute(2, 0, 1))
    pixels.sub_(mean).div_(std)  # the same float32 operations as (x - mean) / std


def _zero(t: torch.Tensor) -> None:
    t.zero_()


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
    ``workers`` > 1 shares the work between that many threads (PIL and torch release the GIL),
    each torch operation on its calling thread meanwhile: the views' cut-and-resize first, the
    largest first, each followed by its normalisation in row bands queued behind them, so the
    threads end together even when the views do not split evenly between them (5 near-equal
    views on 2 threads). The values do not depend on ``workers``. Built on the CPU, then moved
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

    order = largest_first(geometries)
    if workers <= 1 or len(order) <= 1:
        for i, v in order:
            _fill_slot(out[i, v], cut_view(images[i], sources[i], geometries[i], v), mean, std)
    else:
        from entityseg_data.model.runtime import Task, intraop_threads, run_tasks

        def resize(i: int, v: int) -> list[Task]:
            # the view's normalisation is queued in row bands behind the other views' resizes:
            # the threads take the long resizes first and share the short bands at the end
            view = cut_view(images[i], sources[i], geometries[i], v)
            slot, h = out[i, v], view.shape[0]
            band = max(1, -(-h // (2 * workers)))
            tasks: list[Task] = [
                partial(_fill_rows, slot, view, mean, std, a, min(h, a + band))
                for a in range(0, h, band)
            ]
            if h < hp:
                tasks.append(partial(_zero, slot[:, h:, :]))
            return tasks

        with intraop_threads(1):
            run_tasks([partial(resize, i, v) for i, v in order], workers)
    if device is not None:
        out = out.to(device)  # the same tensor when it is already there
    return out, (hp, wp)
