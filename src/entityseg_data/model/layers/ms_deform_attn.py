"""Multi-scale deformable attention (Deformable DETR), pure PyTorch.

This is the computation the official code runs when its compiled CUDA op is absent (the path the
oracle fixtures were produced with): bilinear ``grid_sample`` with ``align_corners=False`` and zero
padding. Parameter names follow the official ``MSDeformAttn`` so checkpoints load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn_sample(
    value: Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Sample every level at the given locations and sum with the attention weights.

    Without autograd (inference) this runs :func:`ms_deform_attn_gather` (one weighted gather of
    the four bilinear corners, ~5x less CPU time than ``grid_sample`` at the pixel decoder's
    size, equal within float rounding); with autograd :func:`ms_deform_attn_grid_sample` (the
    official fallback).
    Shapes as in :func:`ms_deform_attn_grid_sample`.
    """
    if torch.is_grad_enabled() and (
        value.requires_grad or sampling_locations.requires_grad or attention_weights.requires_grad
    ):
        return ms_deform_attn_grid_sample(
            value, spatial_shapes, sampling_locations, attention_weights
        )
    return ms_deform_attn_gather(value, spatial_shapes, sampling_locations, attention_weights)


def ms_deform_attn_grid_sample(
    value: Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Sample every level with ``grid_sample`` and sum with the attention weights (the official
    pure-PyTorch computation, reduced level by level).

    Args:
        value: (N, S, M, D) projected values of all levels, S = sum(H_l * W_l), M heads of size D.
        spatial_shapes: [(H_l, W_l)] per level, in the order the levels are flattened in ``value``.
        sampling_locations: (N, Lq, M, L, P, 2) in [0, 1] normalised (x, y) coordinates.
        attention_weights: (N, Lq, M, L, P), already softmax-normalised over (L, P).

    Returns:
        (N, Lq, M * D).
    """
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    value_list = value.split([h * w for h, w in spatial_shapes], dim=1)
    # (N, Lq, M, L, P, 2) -> (N, M, L, P, Lq, 2): the P samples of a level become P rows of Lq
    # contiguous outputs, so the weighted sum over P below adds whole rows (vectorised) instead
    # of reducing a last axis of 4 (1.2x per layer, same values)
    grids = (2 * sampling_locations - 1).permute(0, 2, 3, 4, 1, 5)
    # (N, Lq, M, L, P) -> (N*M, 1, L, P, Lq)
    weights = attention_weights.permute(0, 2, 3, 4, 1).reshape(n * m, 1, num_levels, num_points, lq)
    out = None
    for lvl, (h, w) in enumerate(spatial_shapes):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        value_l = value_list[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        grid_l = grids[:, :, lvl].reshape(n * m, num_points, lq, 2)
        sampled = F.grid_sample(
            value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*M, D, P, Lq)
        # weight and reduce level by level: never materialise all levels' samples at once
        # (the official stack-then-sum holds (N*M, D, Lq, L*P) several times; ~1e-7 apart)
        w_l = weights[:, :, lvl]
        term = sampled.mul_(w_l) if not torch.is_grad_enabled() else sampled * w_l
        term = term.sum(2)  # (N*M, D, Lq)
        out = term if out is None else out.add_(term)
    assert out is not None, "no feature levels"
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


def ms_deform_attn_gather(
    value: Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """The bilinear sampling of :func:`ms_deform_attn_grid_sample` as one weighted gather.

    Each (query, head) output is a weighted sum of ``4 x L x P`` rows of that head's values: the
    four bilinear corners of every sample, weighted by ``attention weight x corner weight``.
    ``F.embedding_bag(mode="sum", per_sample_weights=...)`` sums those rows without
    materialising them. Zero padding without masks: each level is stored with a zero border (1
    row/column before, 2 after) and the pixel coordinates are clamped to [-1, W] x [-1, H], so a
    sample outside the map reads zeros, as ``grid_sample(padding_mode="zeros")`` does. Bags are
    ordered head-major, so consecutive bags read neighbouring rows of one head's table (cache
    locality: ~3x faster than query-major on CPU). Same values as the ``grid_sample`` path up to
    float rounding (the summation order differs; both ~2e-5 from float64 at 1/8 of 800x1088).

    Shapes as in :func:`ms_deform_attn_grid_sample`; returns (N, Lq, M * D). Memory: the
    zero-bordered table (~ value) + int32 indices and fp32 weights of N x M x Lq x L x P x 4.
    """
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    dev, dt = value.device, value.dtype
    padded = [(h + 3) * (w + 3) for h, w in spatial_shapes]
    sp = sum(padded)
    table = value.new_zeros(n, m, sp, d)
    start = 0
    for (h, w), v_l, size in zip(
        spatial_shapes, value.split([h * w for h, w in spatial_shapes], dim=1), padded
    ):
        dst = table[:, :, start : start + size].view(n, m, h + 3, w + 3, d)
        dst[:, :, 1 : h + 1, 1 : w + 1].copy_(v_l.view(n, h, w, m, d).permute(0, 3, 1, 2, 4))
        start += size
    # (L, P, 2) bounds, materialised so that elementwise ops run over 2 L P contiguous values
    wh = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=dt, device=dev)
    wh = wh[:, None, :].expand(num_levels, num_points, 2).contiguous()
    # (N, Lq, M, L, P, 2) -> (N, M, Lq, L, P, 2), head-major; grid_sample's unnormalisation
    # (align_corners=False): pixel = ((2 loc - 1 + 1) W - 1) / 2
    pix = sampling_locations.permute(0, 2, 1, 3, 4, 5).contiguous().mul_(2).sub_(1)
    pix = pix.add_(1).mul_(wh).sub_(1).div_(2).clamp_(min=-1.0)
    pix = torch.minimum(pix, wh, out=pix)
    p0 = pix.floor()
    frac = pix.sub_(p0)
    # indices as int32 when the table allows (half the bytes to write and read)
    itype = torch.int32 if n * m * sp < 2**31 else torch.int64
    wp = torch.tensor([w + 3 for _, w in spatial_shapes], dtype=itype, device=dev)
    starts = torch.tensor([0, *padded[:-1]], dtype=itype, device=dev).cumsum(0, dtype=itype)
    heads = torch.arange(n * m, dtype=itype, device=dev).mul_(sp).view(n, m, 1, 1, 1)
    # top-left corner row: head base + level start + (y0 + 1) * Wp + (x0 + 1)
    p0 = p0.to(itype).add_(1)
    row = (p0[..., 1] * wp[:, None] + p0[..., 0]).add_(heads + starts[:, None])
    bags = n * m * lq
    corners = torch.stack([torch.zeros_like(wp), torch.ones_like(wp), wp, wp + 1])  # (4, L)
    corners = corners[:, :, None].expand(4, num_levels, num_points).contiguous()
    idx = torch.empty(bags, 4, num_levels, num_points, dtype=itype, device=dev)
    torch.add(row.view(bags, 1, num_levels, num_points), corners, out=idx)
    a = attention_weights.permute(0, 2, 1, 3, 4).reshape(bags, num_levels, num_points)
    fx = frac[..., 0].reshape(bags, num_levels, num_points)
    fy = frac[..., 1].reshape(bags, num_levels, num_points)
    ax1 = a * fx
    ax0 = a - ax1
    fy0 = 1 - fy
    wgt = torch.empty(bags, 4, num_levels, num_points, dtype=dt, device=dev)
    torch.mul(ax0, fy0, out=wgt[:, 0])
    torch.mul(ax1, fy0, out=wgt[:, 1])
    torch.mul(ax0, fy, out=wgt[:, 2])
    torch.mul(ax1, fy, out=wgt[:, 3])
    out = F.embedding_bag(
        idx.view(bags, -1),
        table.view(-1, d),
        per_sample_weights=wgt.view(bags, -1),
        mode="sum",
    )
    return out.view(n, m, lq, d).transpose(1, 2).reshape(n, lq, m * d)


def _softmax_few_(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of ``x`` (a few values: levels x points = 12), overwriting
    ``x`` where it can. On CPU without autograd computed as max, exp, sum and divide in place:
    ~5x faster than ``F.softmax``, whose CPU kernel vectorises along that short axis (HorNet-L's
    encoder, 17850 x 8 rows of 12: 5 against 29 ms per layer on one thread); equal within ~1
    ulp. With autograd, or on another device, ``F.softmax`` (``x`` untouched)."""
    if x.device.type != "cpu" or torch.is_grad_enabled():
        return F.softmax(x, -1)
    e = x.sub_(x.amax(-1, keepdim=True)).exp_()
    return e.div_(e.sum(-1, keepdim=True))


class MSDeformAttn(nn.Module):
    """Deformable attention over ``n_levels`` feature maps with ``n_points`` samples per head.

    ``sampling_offsets`` rows are laid out (head, level, point, xy); ``attention_weights`` rows
    (head, level, point), soft-maxed over level x point per head.
    """

    def __init__(
        self, *, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The Deformable-DETR initialisation (offsets start on a ring around the reference)."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> Tensor:
        """
        Args:
            query: (N, Lq, C) queries (with position encoding added).
            reference_points: (N, Lq, L, 2) normalised (x, y) in [0, 1], one per level.
            input_flatten: (N, S, C) values of all levels, flattened level after level.
            spatial_shapes: [(H_l, W_l)] per level.

        Returns:
            (N, Lq, C).
        """
        n, lq, _ = query.shape
        s = input_flatten.shape[1]
        value = self.value_proj(input_flatten).view(
            n, s, self.n_heads, self.d_model // self.n_heads
        )
        offsets = self.sampling_offsets(query).view(
            n, lq, self.n_heads, self.n_levels, self.n_points, 2
        )
        weights = self.attention_weights(query).view(
            n, lq, self.n_heads, self.n_levels * self.n_points
        )
        weights = _softmax_few_(weights).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        # (L, P, 2) sizes as (W, H) and (N, Lq, 1, L, P, 2) reference points, materialised so
        # that both broadcasts below run over 2 L P contiguous values (vectorised; the strided
        # broadcast of (L, 1, 2) took ~4x longer); the same quotients and sums
        normalizer = torch.tensor(
            [[float(w), float(h)] for h, w in spatial_shapes],
            dtype=offsets.dtype,
            device=offsets.device,
        )
        normalizer = normalizer[:, None, :].expand(self.n_levels, self.n_points, 2).contiguous()
        ref = (
            reference_points[:, :, None, :, None, :]
            .expand(n, lq, 1, self.n_levels, self.n_points, 2)
            .contiguous()
        )
        locations = offsets / normalizer
        locations = locations + ref if torch.is_grad_enabled() else locations.add_(ref)
        out = ms_deform_attn_sample(value, spatial_shapes, locations, weights)
        return self.output_proj(out)
