"""Point sampling of mask logits / targets (PointRend style), used by matching and losses.

Coordinates are normalised ``[0, 1]`` (x, y) in the PADDED batch frame; predictions live at 1/4 of
that frame and targets at its full resolution, so one set of points addresses both
(REFERENCE.md 5.2). Sampling is bilinear ``grid_sample`` with ``align_corners=False`` and zero
padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(inputs: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample ``inputs`` (N, C, H, W) at ``coords`` (N, P, 2) in [0, 1] -> (N, C, P).

    ``coords`` may also be (N, P1, P2, 2), giving (N, C, P1, P2).
    """
    squeeze = coords.dim() == 3
    grid = 2.0 * coords - 1.0
    if squeeze:
        grid = grid.unsqueeze(2)
    out = F.grid_sample(inputs, grid.to(inputs.dtype), mode="bilinear", align_corners=False)
    return out.squeeze(3) if squeeze else out


def sample_unpadded(masks: Tensor, coords: Tensor, pad_hw: tuple[int, int]) -> Tensor:
    """Sample masks stored WITHOUT the batch padding as if they were zero-padded to ``pad_hw``.

    ``masks``: (N, h, w) (bool or float) occupying the top-left of a (Hp, Wp) padded frame;
    ``coords``: (P, 2) shared by all masks, or (N, P, 2), normalised to the padded frame. Returns
    (N, P) float32. Equal (up to float rounding) to zero-padding and sampling with
    :func:`point_sample` (grid_sample's zero padding outside the stored extent plays the role
    of the pad), without
    materialising the padded masks.
    """
    n, h, w = masks.shape
    p = coords.shape[-2]
    if n == 0:
        return torch.zeros((0, p), dtype=torch.float32, device=masks.device)
    hp, wp = pad_hw
    scale = torch.tensor([wp / w, hp / h], dtype=torch.float32, device=coords.device)
    local = coords.float() * scale
    grid = local.unsqueeze(0).expand(n, -1, -1) if local.dim() == 2 else local
    return point_sample(masks[:, None].float(), grid)[:, 0]


def uncertain_point_coords(
    logits: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance-sampled point coords for mask logits ``logits`` (N, 1, h, w) -> (N, P, 2).

    Draws ``oversample_ratio * P`` uniform points, keeps the ``importance_sample_ratio * P`` most
    uncertain (largest ``-|logit|``), and adds uniform random points up to P. No gradient.
    """
    n = logits.shape[0]
    device = logits.device
    num_sampled = int(num_points * oversample_ratio)
    coords = _rand((n, num_sampled, 2), generator, device)
    with torch.no_grad():
        point_logits = point_sample(logits.detach().float(), coords)  # (N, 1, S)
    uncertainty = -point_logits.abs()[:, 0]
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainty, k=num_uncertain, dim=1).indices  # (N, K)
    chosen = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
    if num_random > 0:
        chosen = torch.cat([chosen, _rand((n, num_random, 2), generator, device)], dim=1)
    return chosen


def _rand(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Uniform [0, 1) numbers drawn from ``generator`` (a CPU generator) and moved to ``device``."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator).to(device)


def random_coords(
    num_points: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """(P, 2) uniform points in [0, 1]."""
    return _rand((num_points, 2), generator, device)
