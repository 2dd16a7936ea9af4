"""Sine position encodings (DETR style) used by the pixel decoder and the masked decoder."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _interleave_sin_cos(embed: Tensor) -> Tensor:
    """(..., F) angles -> (..., F) with channel 2k = sin, 2k+1 = cos."""
    return torch.stack((embed[..., 0::2].sin(), embed[..., 1::2].cos()), dim=-1).flatten(-2)


def _dim_t(num_feats: int, temperature: float, device: torch.device) -> Tensor:
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * (dim_t // 2) / num_feats)


class PositionEmbeddingSine(nn.Module):
    """2-D sine encoding, normalised: y = (i+1)/(H+1e-6)*2pi, x = (j+1)/(W+1e-6)*2pi.

    ``forward(x (N, C, H, W)) -> (N, 2*num_pos_feats, H, W)`` = cat(pos_y, pos_x). No padding mask
    (the official model never passes one), so the padded area is encoded too.
    """

    def __init__(
        self, *, num_pos_feats: int = 64, temperature: float = 10000.0, scale: float = 2 * math.pi
    ) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        return self.encode(n, h, w, x.device)

    def encode(self, n: int, h: int, w: int, device: torch.device) -> Tensor:
        """(n, 2F, h, w) encoding of an h x w map."""
        ones = torch.ones((n, h, w), dtype=torch.bool, device=device)
        y_embed = ones.cumsum(1, dtype=torch.float32)
        x_embed = ones.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = _dim_t(self.num_pos_feats, self.temperature, device)
        pos_x = _interleave_sin_cos(x_embed[:, :, :, None] / dim_t)
        pos_y = _interleave_sin_cos(y_embed[:, :, :, None] / dim_t)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingSine3D2D(nn.Module):
    """The CropFormer decoder's encodings of V views of one image.

    ``forward(x (B, V, C, H, W)) -> (pos2d (B, V, 2F, H, W), pos3d (B, V, 2F, H, W))`` with
    ``pos3d = pos2d + pos_z[v]``, z = (v+1)/(V+1e-6)*2pi and a 2F-channel sin/cos code over z
    (dim_t over 2F). The view term depends on V, as in the official code.
    """

    def __init__(
        self, *, num_pos_feats: int = 64, temperature: float = 10000.0, scale: float = 2 * math.pi
    ) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale
        self.pos2d = PositionEmbeddingSine(
            num_pos_feats=num_pos_feats, temperature=temperature, scale=scale
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, v, _, h, w = x.shape
        return self.encode(b, v, h, w, x.device)

    def encode(self, b: int, v: int, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
        pos2d = self.pos2d.encode(1, h, w, device)[:, None]  # (1, 1, 2F, h, w)
        z_embed = torch.arange(1, v + 1, dtype=torch.float32, device=device)
        z_embed = z_embed / (z_embed[-1:] + 1e-6) * self.scale  # (V,)
        dim_t_z = _dim_t(2 * self.num_pos_feats, self.temperature, device)
        pos_z = _interleave_sin_cos(z_embed[:, None] / dim_t_z)  # (V, 2F)
        pos3d = pos2d + pos_z[None, :, :, None, None]  # (1, V, 2F, h, w)
        return pos2d.expand(b, v, -1, -1, -1), pos3d.expand(b, -1, -1, -1, -1)
