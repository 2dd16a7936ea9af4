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

ATTENTION_CHUNK_BYTES = 32 * 2**20
"""Scores per step of :func:`masked_attention` (a few heads x queries x keys; fits in cache)."""


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


def masked_attention(
    mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None
) -> Tensor:
    """``nn.MultiheadAttention``'s computation (``need_weights=True`` path, no dropout) with a
    boolean mask shared by the heads, evaluated a few heads at a time.

    query (L, N, E), key / value (S, N, E), mask (N, L, S) bool (True = not attended; no row
    all True) -> (L, N, E). The same operations in the same order as torch's path
    (scaled q, q k^T, -inf where masked, softmax, @ v, out_proj), so the values are equal; what
    it skips is materialising the (N*heads, L, S) float mask and the head-averaged weights, and
    the scores of all heads at once.
    """
    e = mha.embed_dim
    h = mha.num_heads
    hd = e // h
    length, n = query.shape[:2]
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None,) * 3
    q = F.linear(query, w_q, b_q).view(length, n * h, hd).transpose(0, 1)
    k = F.linear(key, w_k, b_k).view(key.shape[0], n * h, hd).transpose(0, 1)
    v = F.linear(value, w_v, b_v).view(value.shape[0], n * h, hd).transpose(0, 1)
    q = q * math.sqrt(1.0 / float(hd))
    kt = k.transpose(-2, -1)
    s = k.shape[1]
    out = q.new_empty((n * h, length, hd))
    step = max(1, min(h, ATTENTION_CHUNK_BYTES // max(1, length * s * 4)))
    for b in range(n):
        for h0 in range(0, h, step):
            sl = slice(b * h + h0, b * h + min(h, h0 + step))
            scores = torch.bmm(q[sl], kt[sl])
            if mask is not None:
                scores.masked_fill_(mask[b], float("-inf"))
            torch.bmm(scores.softmax(-1), v[sl], out=out[sl])
    out = out.transpose(0, 1).contiguous().view(length * n, e)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias).view(length, n, e)


class CrossAttentionLayer(nn.Module):
    """``tgt = norm(tgt + MHA(q=tgt+query_pos, k=memory+pos, v=memory, attn_mask))``.

    ``memory_mask`` is boolean, True = not attended: (N, Lq, S) shared by the heads, or
    (N*nhead, Lq, S) batch-major then heads as ``nn.MultiheadAttention`` takes it. Outside
    training (and without ``fused``) a shared mask goes through :func:`masked_attention`.
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
    ) -> Tensor:
        nhead = self.multihead_attn.num_heads
        shared = memory_mask is not None and memory_mask.shape[0] == tgt.shape[1]
        if (memory_mask is None or shared) and not self.training and not self.fused:
            out = masked_attention(
                self.multihead_attn,
                _with_pos(tgt, query_pos),
                _with_pos(memory, pos),
                memory,
                memory_mask,
            )
            return self.norm(tgt + self.dropout(out))
        if shared and nhead > 1:
            assert memory_mask is not None
            memory_mask = memory_mask.repeat_interleave(nhead, 0)
        out = self.multihead_attn(
            query=_with_pos(tgt, query_pos),
            key=_with_pos(memory, pos),
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
