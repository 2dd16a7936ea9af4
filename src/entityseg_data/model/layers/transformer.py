"""Post-norm attention / FFN layers and the MLP head of the Mask2Former decoder.

Sequence-first tensors (L, N, C), as ``nn.MultiheadAttention(batch_first=False)``; attribute names
(``self_attn``, ``multihead_attn``, ``norm``, ``linear1``, ``linear2``, ``layers``) are the
official checkpoint keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from entityseg_data.model.fused import cpu_fp32_inference


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


def _xavier(module: nn.Module) -> None:
    """The official initialisation: Xavier-uniform for every weight matrix."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """``tgt = norm(tgt + MHA(q=k=tgt+query_pos, v=tgt))``."""

    def __init__(self, *, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        # need_weights=False lets torch use its fused scaled-dot-product kernel
        self.fused = False
        _xavier(self)

    def forward(self, tgt: Tensor, *, query_pos: Tensor | None = None) -> Tensor:
        q = k = _with_pos(tgt, query_pos)
        out = self.self_attn(q, k, value=tgt, need_weights=not self.fused)[0]
        return self.norm(tgt + self.dropout(out))


#: switch: whether :func:`masked_attention` copies its keys and values head-major first
_head_major_inputs = cpu_fp32_inference


def masked_attention(
    mha: nn.MultiheadAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None,
) -> Tensor:
    """``nn.MultiheadAttention``'s computation (no dropout) with a mask shared by the heads,
    through one fused scaled-dot-product attention call.

    query (L, N, E), key / value (S, N, E), mask (N, L, S): bool (True = not attended; no row
    all True) or float, added to the scores (0 = attended, -inf = not; see
    ``decoder.attention_bias``) -> (L, N, E). Same projections, query scaling (``q * hd**-0.5``)
    and output projection as torch's path; the attention itself is
    ``F.scaled_dot_product_attention`` with the mask broadcast over the heads ((N, 1, L, S),
    nothing expanded): on CPU its flash kernel works on blocks of queries and keys with an
    online softmax, so the (heads, L, S) scores (54 MB per head for the batch level's 200
    queries x 68 000 tokens at 1/8 of 800x1088 x 5 views) are never written to memory, and it
    is threaded over heads and query blocks. Values equal the explicit ``softmax(q k^T) v`` up
    to float rounding (a few 1e-6; tests).

    On CPU float32 without autograd the keys and values are copied head-major ((N, heads, S,
    hd) contiguous) first: the kernel then reads each head's keys as one block instead of 32
    values out of every 256 (one 1/8 call above: 378 -> 285 ms for 2 x 13 ms of copies), the
    same values, each copy made before the next projection (one S x E product less alive at
    once). (Not as packed oneDNN products: those were 0.1 s faster per CropFormer HorNet-L
    prediction but grew the decoder's heap by ~0.35 GB past its live data, session 16.)
    """
    e = mha.embed_dim
    h = mha.num_heads
    hd = e // h
    length, n = query.shape[:2]
    s = key.shape[0]
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None,) * 3
    # (N, heads, L or S, hd) views of the projections
    q = F.linear(query, w_q, b_q).view(length, n, h, hd).permute(1, 2, 0, 3)
    head_major = _head_major_inputs(key)

    def project(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        heads = F.linear(x, w, b).view(s, n, h, hd).permute(1, 2, 0, 3)
        # the head-major copy made before the next projection: one S x E product less alive
        return heads.contiguous() if head_major else heads

    k = project(key, w_k, b_k)
    v = project(value, w_v, b_v)
    q = q * math.sqrt(1.0 / float(hd))
    keep: Tensor | None = None
    if mask is not None:  # (N, 1, L, S)
        keep = ~mask[:, None] if mask.dtype == torch.bool else mask[:, None].to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1.0)  # (N, h, L, hd)
    out = out.permute(2, 0, 1, 3).reshape(length * n, e)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias).view(length, n, e)


class CrossAttentionLayer(nn.Module):
    """``tgt = norm(tgt + MHA(q=tgt+query_pos, k=memory+pos, v=memory, attn_mask))``.

    ``memory_mask`` is boolean, True = not attended, or float, added to the attention scores:
    (N, Lq, S) shared by the heads, or (N*nhead, Lq, S) batch-major then heads as
    ``nn.MultiheadAttention`` takes it. Outside training (and without ``fused``) a shared mask
    goes through :func:`masked_attention`.
    """

    def __init__(self, *, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.fused = False
        _xavier(self)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        *,
        memory_mask: Tensor | None = None,
        pos: Tensor | None = None,
        query_pos: Tensor | None = None,
        key: Tensor | None = None,
    ) -> Tensor:
        """``key``: ``memory + pos`` when the caller already has it (the decoder computes it
        once per feature level for the layers that read that level); else computed here."""
        nhead = self.multihead_attn.num_heads
        if key is None:
            key = _with_pos(memory, pos)
        shared = memory_mask is not None and memory_mask.shape[0] == tgt.shape[1]
        if (memory_mask is None or shared) and not self.training and not self.fused:
            out = masked_attention(
                self.multihead_attn,
                _with_pos(tgt, query_pos),
                key,
                memory,
                memory_mask,
            )
            return self.norm(tgt + self.dropout(out))
        if shared and nhead > 1:
            assert memory_mask is not None
            memory_mask = memory_mask.repeat_interleave(nhead, 0)
        out = self.multihead_attn(
            query=_with_pos(tgt, query_pos),
            key=key,
            value=memory,
            attn_mask=memory_mask,
            need_weights=not self.fused,
        )[0]
        return self.norm(tgt + self.dropout(out))


class FFNLayer(nn.Module):
    """``tgt = norm(tgt + linear2(relu(linear1(tgt))))``."""

    def __init__(self, *, d_model: int, dim_feedforward: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, tgt: Tensor) -> Tensor:
        out = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm(tgt + self.dropout(out))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (``layers.{i}``)."""

    def __init__(
        self, *, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int
    ) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
