"""Post-norm attention / FFN layers and the MLP head of the Mask2Former decoder.

Sequence-first tensors (L, N, C), as ``nn.MultiheadAttention(batch_first=False)``; attribute names
(``self_attn``, ``multihead_attn``, ``norm``, ``linear1``, ``linear2``, ``layers``) are the
official checkpoint keys.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


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


class CrossAttentionLayer(nn.Module):
    """``tgt = norm(tgt + MHA(q=tgt+query_pos, k=memory+pos, v=memory, attn_mask))``.

    ``memory_mask`` is boolean (N*nhead, Lq, S), batch-major then heads; True = not attended.
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
