"""Pieces shared by the backbones: the output contract, stochastic depth, channels-first LN."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from entityseg_data.model.backbones.config import OUT_FEATURES, OUT_STRIDES


class Backbone(nn.Module):
    """Base class: ``forward(x (N,3,H,W)) -> {"res2".."res5": (N, C_i, H/s_i, W/s_i)}``.

    Subclasses set :attr:`out_channels`; strides are 4/8/16/32 and the input should be padded
    to a multiple of :attr:`size_divisibility` (32) by the caller.
    """

    size_divisibility: int = 32

    def __init__(self, out_channels: dict[str, int]) -> None:
        super().__init__()
        self.out_channels: dict[str, int] = dict(out_channels)
        self.out_strides: dict[str, int] = dict(zip(OUT_FEATURES, OUT_STRIDES, strict=True))

    def checkpoint_filter(
        self, state_dict: dict[str, torch.Tensor], prefix: str = ""
    ) -> dict[str, torch.Tensor]:
        """Adapt an official state_dict (keys under ``prefix``) before ``load_state_dict``."""
        return state_dict


def drop_path(x: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (dim 0); identity at inference or when ``prob == 0``."""
    if prob == 0.0 or not training:
        return x
    keep = 1.0 - prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (no parameters)."""

    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        self.prob = float(prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.prob, self.training)

    def extra_repr(self) -> str:
        return f"prob={self.prob}"


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor, as HorNet writes it (eps 1e-6).

    ``u = mean_c(x); s = mean_c((x-u)^2); y = w * (x-u) / sqrt(s+eps) + b``. Parameters
    ``weight`` / ``bias`` have shape (C,).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def maybe_checkpoint(fn: Callable[..., torch.Tensor], *args: object, enabled: bool) -> torch.Tensor:
    """``fn(*args)``, recomputed in backward (non-reentrant checkpoint) when ``enabled`` and
    gradients are being recorded."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
