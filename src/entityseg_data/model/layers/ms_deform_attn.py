"""Multi-scale deformable attention (Deformable DETR), pure PyTorch.

This is the computation the official code runs when its compiled CUDA op is absent (the path the
oracle fixtures were produced with): bilinear ``grid_sample`` with ``align_corners=False`` and zero
padding. Parameter names follow the official ``MSDeformAttn`` so checkpoints load unchanged.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from entityseg_data.model.fused import (
    PackedWeights,
    add_product_,
    linear_packed,
    packable,
    plain_linear,
)


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
    materialising them (see :func:`_gather_pixels`). The pixel coordinates are
    ``grid_sample``'s unnormalisation of the locations (``align_corners=False``), computed with
    its roundings. Same values as the ``grid_sample`` path up to float rounding (the summation
    order differs; both ~2e-5 from float64 at 1/8 of 800x1088).

    Shapes as in :func:`ms_deform_attn_grid_sample`; returns (N, Lq, M * D).
    """
    n, lq, m, _, num_points, _ = sampling_locations.shape
    wh = _level_sizes(spatial_shapes, num_points, value)
    # pixel = ((2 loc - 1 + 1) W - 1) / 2, query-major (N, Lq, M, L P 2)
    pix = sampling_locations.reshape(n, lq, m, -1).clone().mul_(2).sub_(1)
    pix = pix.add_(1).mul_(wh).sub_(1).div_(2)
    return _gather_pixels(value, spatial_shapes, pix, attention_weights)


def ms_deform_attn_gather_offsets(
    value: Tensor,
    spatial_shapes: list[tuple[int, int]],
    reference_points: Tensor,
    sampling_offsets: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """:func:`ms_deform_attn_gather` of the locations ``reference + offset / (W_l, H_l)``,
    computed from the offsets directly: the pixel coordinate ``loc x W - 1/2`` is
    ``reference x W - 1/2 + offset`` (one sum per sample instead of a division, a sum and the
    unnormalisation's five passes). Equal to the official computation up to float rounding
    (closer to float64: the offsets are not divided and multiplied back).

    reference_points (N, Lq, L, 2) normalised (x, y); sampling_offsets (N, Lq, M, L, P, 2) in
    pixels of each level (the ``sampling_offsets`` Linear output); attention_weights
    (N, Lq, M, L, P). Returns (N, Lq, M * D).
    """
    n, lq, m, num_levels, num_points, _ = sampling_offsets.shape
    ref = reference_points.mul(_level_wh(spatial_shapes, value)).sub_(0.5)  # (N, Lq, L, 2)
    ref = ref[:, :, None, :, None, :].expand(n, lq, 1, num_levels, num_points, 2)
    pix = torch.add(
        sampling_offsets.reshape(n, lq, m, -1), ref.reshape(n, lq, 1, num_levels * num_points * 2)
    )
    return _gather_pixels(value, spatial_shapes, pix, attention_weights)


def _level_wh(spatial_shapes: list[tuple[int, int]], like: Tensor) -> Tensor:
    """(L, 2) the (W_l, H_l) of every level, in ``like``'s dtype and device."""
    return torch.tensor(
        [[float(w), float(h)] for h, w in spatial_shapes], dtype=like.dtype, device=like.device
    )


def _level_sizes(spatial_shapes: list[tuple[int, int]], num_points: int, like: Tensor) -> Tensor:
    """(L P 2,) contiguous: the (W_l, H_l) of every sample's level, x then y."""
    wh = _level_wh(spatial_shapes, like)
    return wh[:, None, :].expand(len(spatial_shapes), num_points, 2).reshape(-1)


def _gather_pixels(
    value: Tensor,
    spatial_shapes: list[tuple[int, int]],
    pix: Tensor,
    attention_weights: Tensor,
    *,
    block: int = 4096,
) -> Tensor:
    """Bilinear samples at pixel coordinates (``x = 0`` the centre of the first column), zero
    outside, weighted and summed per (query, head).

    value (N, S, M, D); pix (N, Lq, M, L P 2) float, (x, y) per sample, overwritten;
    attention_weights (N, Lq, M, L, P). Returns (N, Lq, M * D).

    Zero padding without masks: each level is stored with a zero border (1 row/column before, 2
    after) and the coordinates are clamped to [-1, W] x [-1, H], so a sample outside the map
    reads zeros, as ``grid_sample(padding_mode="zeros")`` does. Bags are ordered head-major, so
    consecutive bags read neighbouring rows of one head's table (cache locality: ~3x faster than
    query-major on CPU). The per-bag indices and weights (corner-major: 4 x L x P entries) are
    made by small matrix products of each bag's 2 L P floor / fraction values with constant
    selection matrices (an index is ``y0 Wp + x0 +`` a constant; a weight is ``a (1 - fx or
    fx) (1 - fy or fy)``): every pass then runs over long contiguous rows instead of PyTorch's
    elementwise loops over a 12-wide axis (~35 of ~125 ms per HorNet-L encoder layer on one
    thread). The products are exact: the operands are small integers or are multiplied by 0
    and +-1 (a product of integers below 2^24 in float32; float64 when the table is larger, or
    when float32 products may be reduced: another device, a float32 matmul precision below
    "highest"). On the meta device only the output's shape is made.
    """
    n, _, m, d = value.shape
    lq = pix.shape[1]
    if value.device.type == "meta":
        # shapes only (tracing, FLOP counts): the selection products are index arithmetic,
        # not the model's products, and would only inflate a FLOP count
        return value.new_empty(n, lq, m * d)
    num_levels = len(spatial_shapes)
    num_points = attention_weights.shape[-1]
    lp = num_levels * num_points
    dev, dt = value.device, value.dtype
    padded = [(h + 3) * (w + 3) for h, w in spatial_shapes]
    sp = sum(padded)
    table = value.new_empty(n, m, sp, d)
    starts = [sum(padded[:i]) for i in range(num_levels)]
    for (h, w), v_l, start in zip(
        spatial_shapes, value.split([h * w for h, w in spatial_shapes], dim=1), starts
    ):
        dst = table[:, :, start : start + (h + 3) * (w + 3)].view(n, m, h + 3, w + 3, d)
        dst[:, :, 1 : h + 1, 1 : w + 1].copy_(v_l.view(n, h, w, m, d).permute(0, 3, 1, 2, 4))
        # only the border is zeroed (the interior is overwritten just above)
        dst[:, :, 0].zero_()
        dst[:, :, h + 1 :].zero_()
        dst[:, :, 1 : h + 1, 0].zero_()
        dst[:, :, 1 : h + 1, w + 1 :].zero_()
    pix.clamp_(min=-1.0)
    torch.minimum(pix, _level_sizes(spatial_shapes, num_points, pix), out=pix)
    p0 = pix.floor()
    frac = pix.sub_(p0)
    exact32 = (
        dev.type == "cpu"
        and n * m * sp < 2**24
        and torch.get_float32_matmul_precision() == "highest"
    )
    st = torch.float32 if exact32 else torch.float64
    sel = _selection(spatial_shapes, num_points, starts, st, dev)
    kk = 4 * lp
    idx = torch.empty(
        n, m, lq, kk, dtype=torch.int32 if n * m * sp < 2**31 else torch.int64, device=dev
    )
    wgt = torch.empty(n, m, lq, kk, dtype=dt, device=dev)
    a = attention_weights.reshape(n, lq, m, lp)
    rows = min(block, lq)
    buf_a = torch.empty(rows, kk, dtype=st, device=dev)
    buf_b = torch.empty(rows, kk, dtype=st, device=dev)
    no_autocast = (
        torch.autocast(dev.type, enabled=False)
        if dev.type in ("cpu", "cuda")
        else contextlib.nullcontext()
    )
    with no_autocast:
        for b in range(n):
            for h in range(m):
                bias = sel.index_bias + float((b * m + h) * sp)
                for r0 in range(0, lq, rows):
                    r1 = min(lq, r0 + rows)
                    f, g = buf_a[: r1 - r0], buf_b[: r1 - r0]
                    torch.addmm(bias, p0[b, r0:r1, h].to(st), sel.flat_index, out=f)
                    idx[b, h, r0:r1].copy_(f)
                    fr = frac[b, r0:r1, h].to(st)
                    torch.mm(a[b, r0:r1, h].to(st), sel.repeat, out=f)
                    torch.addmm(sel.x_bias, fr, sel.x, out=g)
                    f.mul_(g)
                    torch.addmm(sel.y_bias, fr, sel.y, out=g)
                    torch.mul(f, g, out=wgt[b, h, r0:r1])
    bags = n * m * lq
    out = F.embedding_bag(
        idx.view(bags, kk), table.view(-1, d), per_sample_weights=wgt.view(bags, kk), mode="sum"
    )
    return out.view(n, m, lq, d).transpose(1, 2).reshape(n, lq, m * d)


@dataclass(frozen=True)
class _Selection:
    """Constant (2 L P, 4 L P) selection matrices of :func:`_gather_pixels` (entries ordered
    corner, level, point; corners (x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1))."""

    flat_index: Tensor  # x0 -> 1, y0 -> Wp of the level
    index_bias: Tensor  # (4 L P,) level start + (Wp + 1) (the border) + the corner's offset
    repeat: Tensor  # (L P, 4 L P): the attention weight of the sample, for each corner
    x: Tensor  # fx -> -fx (x0 corners) or fx
    x_bias: Tensor  # 1 for the x0 corners: 1 - fx
    y: Tensor
    y_bias: Tensor


def _selection(
    spatial_shapes: list[tuple[int, int]],
    num_points: int,
    starts: list[int],
    dtype: torch.dtype,
    device: torch.device,
) -> _Selection:
    lp = len(spatial_shapes) * num_points
    kk = 4 * lp
    index = np.zeros((2 * lp, kk))
    index_bias = np.zeros(kk)
    repeat = np.zeros((lp, kk))
    x = np.zeros((2 * lp, kk))
    y = np.zeros((2 * lp, kk))
    x_bias = np.zeros(kk)
    y_bias = np.zeros(kk)
    for corner in range(4):
        right, down = corner % 2, corner // 2
        for lvl, (_, w) in enumerate(spatial_shapes):
            wp = w + 3
            for pt in range(num_points):
                sample = lvl * num_points + pt
                e = corner * lp + sample
                index[2 * sample, e] = 1.0
                index[2 * sample + 1, e] = wp
                index_bias[e] = starts[lvl] + wp + 1 + right + down * wp
                repeat[sample, e] = 1.0
                x[2 * sample, e] = 1.0 if right else -1.0
                x_bias[e] = 0.0 if right else 1.0
                y[2 * sample + 1, e] = 1.0 if down else -1.0
                y_bias[e] = 0.0 if down else 1.0
    arrays = (index, index_bias, repeat, x, x_bias, y, y_bias)
    return _Selection(*(torch.from_numpy(t).to(device=device, dtype=dtype) for t in arrays))


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


def _sums_into(proj: nn.Module, residual: Tensor, x: Tensor) -> bool:
    """Whether ``residual + proj(x)`` may be computed by accumulating the product into
    ``residual + bias``: :func:`~entityseg_data.model.fused.plain_linear`, ``residual``
    contiguous, of the output's shape and dtype."""
    return (
        plain_linear(proj, x)
        and residual.is_contiguous()
        and residual.dtype == x.dtype
        and residual.shape[:-1] == x.shape[:-1]
        and residual.shape[-1] == proj.out_features
    )


def _packed_projections(proj: nn.Module, x: Tensor) -> bool:
    """Switch: whether ``proj(x)`` runs as a oneDNN call on a packed weight with the bias (and
    the skip connection) in its epilogue (:func:`~entityseg_data.model.fused.packable`;
    HorNet-L's encoder at 800x1088 on one thread, per layer: value_proj 18.5 -> 16.0 ms,
    sampling_offsets 13.9 -> 12.1, attention_weights 9.0 -> 6.9, output_proj with the skip
    connection 19.5 -> 16.3)."""
    return packable(proj, x)


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
        self._packed = PackedWeights()
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
        *,
        residual: Tensor | None = None,
    ) -> Tensor:
        """
        Args:
            query: (N, Lq, C) queries (with position encoding added).
            reference_points: (N, Lq, L, 2) normalised (x, y) in [0, 1], one per level.
            input_flatten: (N, S, C) values of all levels, flattened level after level.
            spatial_shapes: [(H_l, W_l)] per level.
            residual: (N, Lq, C) added to the output (the encoder layer's skip connection);
                without autograd summed into ``output_proj``'s product (one pass over the
                output less than the bias copy and a separate sum; float rounding apart).

        Returns:
            (N, Lq, C), plus ``residual`` if given.
        """
        n, lq, _ = query.shape
        s = input_flatten.shape[1]
        value = self._project("value_proj", input_flatten).view(
            n, s, self.n_heads, self.d_model // self.n_heads
        )
        offsets = self._project("sampling_offsets", query).view(
            n, lq, self.n_heads, self.n_levels, self.n_points, 2
        )
        weights = self._project("attention_weights", query).view(
            n, lq, self.n_heads, self.n_levels * self.n_points
        )
        weights = _softmax_few_(weights).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        if not torch.is_grad_enabled():
            # inference: the gather straight from the offsets (no normalised locations)
            out = ms_deform_attn_gather_offsets(
                value, spatial_shapes, reference_points, offsets, weights
            )
            proj = self.output_proj
            if residual is not None and _sums_into(proj, residual, out):
                if _packed_projections(proj, out):
                    return linear_packed(self._packed, "output_proj", proj, out, add=residual)
                return add_product_(torch.add(residual, proj.bias), out, proj.weight)
            out = self._project("output_proj", out)
            return out if residual is None else residual + out
        # (L, P, 2) sizes as (W, H) and (N, Lq, 1, L, P, 2) reference points, materialised so
        # that both broadcasts below run over 2 L P contiguous values (vectorised; the strided
        # broadcast of (L, 1, 2) took ~4x longer); the same quotients and sums
        normalizer = _level_sizes(spatial_shapes, self.n_points, offsets).view(
            self.n_levels, self.n_points, 2
        )
        ref = (
            reference_points[:, :, None, :, None, :]
            .expand(n, lq, 1, self.n_levels, self.n_points, 2)
            .contiguous()
        )
        locations = offsets / normalizer + ref
        out = ms_deform_attn_sample(value, spatial_shapes, locations, weights)
        return self.output_proj(out) if residual is None else residual + self.output_proj(out)

    def _project(self, name: str, x: Tensor) -> Tensor:
        """The Linear ``name`` applied to ``x``: packed where :func:`_packed_projections`
        allows, else its own call."""
        proj = getattr(self, name)
        if _packed_projections(proj, x):
            return linear_packed(self._packed, name, proj, x)
        return proj(x)
