"""Association module (``Make3dQueries``): batch-level queries from image-level ones."""

from __future__ import annotations

from torch import Tensor, nn

from entityseg_data.model.layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer


class Make3dQueries(nn.Module):
    """Each image's full-view queries attend to the queries of all its views.

    Keys: ``enc_crosattn_3d.{i}``, ``enc_selfattn_3d.{i}``, ``enc_ffn_3d.{i}`` (official
    FUSE_NUM_LAYERS = 1).
    """

    def __init__(
        self,
        *,
        hidden_dim: int,
        nheads: int,
        dim_feedforward: int,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.enc_crosattn_3d = nn.ModuleList(
            CrossAttentionLayer(d_model=hidden_dim, nhead=nheads, dropout=dropout)
            for _ in range(num_layers)
        )
        self.enc_selfattn_3d = nn.ModuleList(
            SelfAttentionLayer(d_model=hidden_dim, nhead=nheads, dropout=dropout)
            for _ in range(num_layers)
        )
        self.enc_ffn_3d = nn.ModuleList(
            FFNLayer(d_model=hidden_dim, dim_feedforward=dim_feedforward, dropout=dropout)
            for _ in range(num_layers)
        )

    def forward(self, queries_2d: Tensor, query_embed: Tensor, num_views: int) -> Tensor:
        """
        Args:
            queries_2d: (Q, B*V, C) last image-level layer output (before decoder_norm), views of
                one image contiguous (image-major), view 0 = full view.
            query_embed: (Q, C) query position embedding.
            num_views: V.

        Returns:
            (Q, B, C) batch-level initial queries.
        """
        q, n, c = queries_2d.shape
        b = n // num_views
        out = queries_2d[:, 0::num_views]  # (Q, B, C) full views
        # memory: every view's queries of the image, token index q * V + v; its position code is
        # the query embedding (no view term)
        memory = (
            queries_2d.view(q, b, num_views, c).permute(0, 2, 1, 3).reshape(q * num_views, b, c)
        )
        memory_pos = query_embed[:, None, None, :].expand(q, num_views, b, c).reshape(-1, b, c)
        query_pos = query_embed[:, None, :].expand(q, b, c)
        for cross, self_attn, ffn in zip(
            self.enc_crosattn_3d, self.enc_selfattn_3d, self.enc_ffn_3d
        ):
            out = cross(out, memory, pos=memory_pos, query_pos=query_pos)
            out = self_attn(out)
            out = ffn(out)
        return out
