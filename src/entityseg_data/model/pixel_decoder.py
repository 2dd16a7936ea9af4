"""``MSDeformAttnPixelDecoder`` (Mask2Former), fp32, official attribute names.

Levels are processed in reversed order: index 0 = res5 (1/32), 1 = res4 (1/16), 2 = res3 (1/8).
A deformable-attention encoder mixes the three, then one FPN step adds res2 (1/4) and a 1x1 conv
gives the mask features. Every image (view) is processed independently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from entityseg_data.model.fused import (
    PackedWeights,
    add_product_,
    linear_packed,
    packed_inference,
    plain_linear,
)
from entityseg_data.model.layers import MSDeformAttn, PositionEmbeddingSine
from entityseg_data.model.layout import channels_first


class ConvNorm(nn.Conv2d):
    """detectron2's ``Conv2d(norm=..., activation=...)``: conv weight at ``.weight``, the norm at
    ``.norm`` (so ``adapter_1.weight`` / ``adapter_1.norm.weight`` keys load)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int = 0,
        bias: bool = False,
        norm: nn.Module | None = None,
        relu: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.norm = norm
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        # in place: the norm's output is this layer's own (autograd keeps what it needs)
        return F.relu(x, inplace=True) if self.relu else x


def _ffn_folded(layer: DeformableEncoderLayer, src: Tensor) -> bool:
    """Whether the encoder layer's FFN runs as :meth:`DeformableEncoderLayer._ffn_residual`:
    without autograd and active dropout, outside autocast, plain float ``nn.Linear`` layers of
    ``src``'s dtype with biases (a dynamically quantized Linear keeps the plain form)."""
    return (
        not torch.is_grad_enabled()
        and not (layer.training and layer.dropout.p > 0)
        and plain_linear(layer.linear1, src)
        and plain_linear(layer.linear2, src)
    )


#: switch: whether :meth:`DeformableEncoderLayer._ffn_residual` runs as two oneDNN calls on
#: packed weights, ReLU and the skip connection in their epilogues
#: (:func:`~entityseg_data.model.fused.linear_packed`; HorNet-L's encoder at 800x1088 on one
#: thread: 137 -> 122 ms per layer)
_packed_ffn = packed_inference


class DeformableEncoderLayer(nn.Module):
    """Post-norm: ``src = norm1(src + MSDA(src+pos)); src = norm2(src + W2 relu(W1 src))``."""

    def __init__(
        self,
        *,
        d_model: int,
        d_ffn: int,
        n_levels: int,
        n_heads: int,
        n_points: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(
            d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self._packed = PackedWeights()

    def forward(
        self, src: Tensor, pos: Tensor, reference_points: Tensor, shapes: list[tuple[int, int]]
    ) -> Tensor:
        if _ffn_folded(self, src):  # no autograd, no active dropout: the sums folded
            src = self.norm1(self.self_attn(src + pos, reference_points, src, shapes, residual=src))
            return self.norm2(self._ffn_residual(src))
        attn = self.self_attn(src + pos, reference_points, src, shapes)
        src = self.norm1(src + self.dropout(attn))
        # ReLU in place on linear1's fresh output (no second 4x-wide tensor; same values)
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src), inplace=True)))
        return self.norm2(src + self.dropout(ffn))

    def _ffn_residual(self, src: Tensor) -> Tensor:
        """``src + W2 relu(W1 src + b1) + b2`` (src (..., d_model)) without the 4x-wide bias
        pass: ``relu(h + b1) = max(h, -b1) + b1``, so with ``h = src W1^T`` (no bias)
        clamped in place below by ``-b1``, b1 reaches the output through W2 as the constant
        ``W2 b1``, added with b2 to the residual (one pass that replaces linear2's bias copy
        and the residual sum), and the second product is accumulated into it. The same values
        up to float rounding (the sums are associated differently). Where :func:`_packed_ffn`
        allows, two oneDNN calls instead: ReLU and bias in the first product's epilogue, the
        bias and the skip connection in the second's."""
        if _packed_ffn(src):
            hidden = linear_packed(self._packed, "linear1", self.linear1, src, act="relu")
            return linear_packed(self._packed, "linear2", self.linear2, hidden, add=src)
        w1, b1 = self.linear1.weight, self.linear1.bias
        w2, b2 = self.linear2.weight, self.linear2.bias
        hidden = torch.matmul(src, w1.t())
        hidden.clamp_(min=-b1)
        return add_product_(torch.add(src, torch.addmv(b2, w2, b1)), hidden, w2)


class DeformableEncoder(nn.Module):
    def __init__(self, *, num_layers: int, **layer_kwargs: Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(**layer_kwargs) for _ in range(num_layers)
        )

    @staticmethod
    def reference_points(shapes: list[tuple[int, int]], n: int, device: torch.device) -> Tensor:
        """(n, S, L, 2) pixel centres ((j+0.5)/W_l, (i+0.5)/H_l), repeated for every level (valid
        ratios are 1: there is no padding mask)."""
        refs = []
        for h, w in shapes:
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing="ij",
            )
            refs.append(torch.stack((ref_x.reshape(-1) / w, ref_y.reshape(-1) / h), -1))
        ref = torch.cat(refs, 0)  # (S, 2)
        return ref[None, :, None, :].expand(n, -1, len(shapes), -1)

    def forward(self, src: Tensor, pos: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        ref = self.reference_points(shapes, src.shape[0], src.device)
        for layer in self.layers:
            src = layer(src, pos, ref, shapes)
        return src


class DeformableTransformer(nn.Module):
    """``transformer.level_embed`` + ``transformer.encoder.layers.{i}``."""

    def __init__(
        self,
        *,
        d_model: int,
        nhead: int,
        num_encoder_layers: int,
        dim_feedforward: int,
        dropout: float,
        num_feature_levels: int,
        enc_n_points: int,
    ) -> None:
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.encoder = DeformableEncoder(
            num_layers=num_encoder_layers,
            d_model=d_model,
            d_ffn=dim_feedforward,
            n_levels=num_feature_levels,
            n_heads=nhead,
            n_points=enc_n_points,
            dropout=dropout,
        )
        nn.init.normal_(self.level_embed)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()

    def forward(self, srcs: list[Tensor], pos_embeds: list[Tensor]) -> Tensor:
        """srcs / pos_embeds: per level (N, C, H_l, W_l). Returns (N, S, C)."""
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flat = torch.cat(
            [
                p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                for lvl, p in enumerate(pos_embeds)
            ],
            1,
        )
        return self.encoder(src_flat, pos_flat, shapes)


@dataclass
class PixelDecoderOutput:
    """mask_features: (N, mask_dim, H/4, W/4); multi_scale: [1/32, 1/16, 1/8] maps (N, C, h, w)."""

    mask_features: Tensor
    multi_scale: list[Tensor]


class MSDeformAttnPixelDecoder(nn.Module):
    """Pixel decoder over backbone features ``res2..res5``.

    Args:
        in_channels: channels of res2, res3, res4, res5 (in that order).
        conv_dim: width of the encoder / FPN (official CONVS_DIM).
        mask_dim: channels of the mask features.
        enc_layers / enc_nheads / enc_ffn_dim / enc_n_points: the deformable encoder.
    """

    def __init__(
        self,
        *,
        in_channels: tuple[int, int, int, int],
        conv_dim: int = 256,
        mask_dim: int = 256,
        enc_layers: int = 6,
        enc_nheads: int = 8,
        enc_ffn_dim: int = 1024,
        enc_n_points: int = 4,
        dropout: float = 0.0,
        num_groups: int = 32,
    ) -> None:
        super().__init__()
        c2, c3, c4, c5 = in_channels
        self.num_levels = 3
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, conv_dim, 1), nn.GroupNorm(num_groups, conv_dim))
            for c in (c5, c4, c3)
        )
        for proj in self.input_proj:
            assert isinstance(proj, nn.Sequential)  # for the type checker
            conv = proj[0]
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            nn.init.xavier_uniform_(conv.weight, gain=1)
            nn.init.constant_(conv.bias, 0)
        self.transformer = DeformableTransformer(
            d_model=conv_dim,
            nhead=enc_nheads,
            num_encoder_layers=enc_layers,
            dim_feedforward=enc_ffn_dim,
            dropout=dropout,
            num_feature_levels=self.num_levels,
            enc_n_points=enc_n_points,
        )
        self.pe_layer = PositionEmbeddingSine(num_pos_feats=conv_dim // 2)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        assert self.mask_features.bias is not None  # bias=True
        nn.init.constant_(self.mask_features.bias, 0)
        self.adapter_1 = ConvNorm(c2, conv_dim, 1, norm=nn.GroupNorm(num_groups, conv_dim))
        self.layer_1 = ConvNorm(
            conv_dim, conv_dim, 3, padding=1, norm=nn.GroupNorm(num_groups, conv_dim), relu=True
        )
        for conv in (self.adapter_1, self.layer_1):
            nn.init.kaiming_uniform_(conv.weight, a=1)

    @torch.autocast("cpu", enabled=False)
    @torch.autocast("cuda", enabled=False)
    def forward(self, features: dict[str, Tensor]) -> PixelDecoderOutput:
        """features: "res2".."res5" (N, C_i, H/s_i, W/s_i). Runs in fp32."""
        srcs, pos = [], []
        for idx, name in enumerate(("res5", "res4", "res3")):
            x = features[name].float()
            srcs.append(self.input_proj[idx](x))
            pos.append(self.pe_layer(x))
        n = srcs[0].shape[0]
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        y = self.transformer(srcs, pos)  # (N, S, C)
        outs = [
            z.transpose(1, 2).reshape(n, -1, h, w)
            for z, (h, w) in zip(y.split([h * w for h, w in shapes], dim=1), shapes)
        ]
        lateral = self.adapter_1(features["res2"].float())
        # outs[-1] is a channels-last view of the encoder output; upsampling a contiguous copy
        # is ~4x faster on CPU than the channels-last kernel (values within ~5e-7)
        fpn = lateral + F.interpolate(
            channels_first(outs[-1].permute(0, 2, 3, 1)),
            size=lateral.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
        fpn = self.layer_1(fpn)
        return PixelDecoderOutput(mask_features=self.mask_features(fpn), multi_scale=outs)
