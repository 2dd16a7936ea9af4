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
            h, w = view.shape[:2]
            slot = out[i, j]
            slot[:, h:, :].zero_()
            slot[:, :h, w:].zero_()
            pixels = slot[:, :h, :w]
            with warnings.catch_warnings():  # a read-only array (PIL's) is only read here
                warnings.simplefilter("ignore", UserWarning)
                src = torch.from_numpy(np.asarray(view))
            pixels.copy_(src.to(device).permute(2, 0, 1))
            pixels.sub_(mean).div_(std)  # the same float32 operations as (x - mean) / std
    return out, (hp, wp)
