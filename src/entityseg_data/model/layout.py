"""Channels-last -> channels-first copies that PyTorch's CPU copy does slowly.

``x.permute(0, 3, 1, 2).contiguous()`` of a (B, H, W, C) tensor writes the (B, C, H, W) result
in output order, reading the source with a stride of C values: for the backbone's maps that
walks a few MB with a cache miss per value (HorNet-L, 3400 x 720 floats: ~11 ms on one thread
where 2 ms suffice). Copying the transpose in blocks of rows keeps each block's source (rows x C)
and destination (C x rows) in cache: 4-6x faster, the same values (a copy). The other direction
(channels-first -> channels-last) is fast in PyTorch and is left to it.

Without autograd on CPU only; with autograd, or on another device, the plain copy is used.
"""

from __future__ import annotations

import torch

#: values per block (rows x channels): 64 Ki floats = 256 KiB of source, L2-resident
_BLOCK_VALUES = 1 << 16
#: below this many values the plain copy is as fast (and one call)
_MIN_VALUES = 1 << 16


def _blocked(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.numel() >= _MIN_VALUES
        and not (torch.is_grad_enabled() and x.requires_grad)
    )


def _copy_rows_transposed(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)`` for (B, C, N) views, ``dst`` contiguous along N and ``src`` along C,
    in blocks of N."""
    c, n = int(src.shape[1]), int(src.shape[2])
    rows = max(32, _BLOCK_VALUES // max(1, c))
    for r in range(0, n, rows):
        dst[:, :, r : r + rows].copy_(src[:, :, r : r + rows])


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> a new contiguous (B, C, H, W) tensor with the same values.

    ``x`` may be a channel slice of a larger channels-last tensor (``y[..., c0:c1]``) or any
    tensor whose H and W axes merge into one (``x.view(B, H * W, C)``); otherwise, and with
    autograd or off the CPU, this is ``x.permute(0, 3, 1, 2).contiguous()``.
    """
    b, h, w, c = (int(s) for s in x.shape)
    if not _blocked(x) or x.stride(3) != 1:
        return x.permute(0, 3, 1, 2).contiguous()
    try:
        src = x.view(b, h * w, c)
    except RuntimeError:  # H and W do not merge (e.g. a spatial crop of a larger map)
        return x.permute(0, 3, 1, 2).contiguous()
    out = torch.empty((b, c, h, w), dtype=x.dtype, device=x.device)
    _copy_rows_transposed(out.view(b, c, h * w), src.transpose(1, 2))
    return out


def copy_channels_first_(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst.copy_(src)`` for (B, C, H, W) tensors of the same shape, fast when ``dst`` is
    contiguous and ``src`` is a channels-last layout (``src.permute(0, 2, 3, 1)`` contiguous, as
    a ``(B, H*W, C)`` token tensor viewed as a map). Returns ``dst``."""
    if (
        _blocked(src)
        and not (torch.is_grad_enabled() and dst.requires_grad)
        and dst.shape == src.shape
        and dst.dtype == src.dtype
        and dst.device == src.device
        and dst.is_contiguous()
        and src.permute(0, 2, 3, 1).is_contiguous()
        and not src.is_contiguous()
    ):
        b, c, h, w = (int(s) for s in src.shape)
        _copy_rows_transposed(
            dst.view(b, c, h * w), src.permute(0, 2, 3, 1).view(b, h * w, c).transpose(1, 2)
        )
        return dst
    return dst.copy_(src)
