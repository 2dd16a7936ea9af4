"""ONE masked-attention decoder, run at image level and (CropFormer) at batch level.

Image level: every view is decoded alone (the Mask2Former decoder). Batch level: the queries of an
image attend to the tokens of all its views concatenated (view-major), with a 3-D position code,
and predict a mask in every view. Both passes share the same layers, norms and heads
(``sem_seg_head.predictor.*`` keys); only ``make_3d`` is specific to the batch level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from entityseg_data.model.association import Make3dQueries
from entityseg_data.model.fused import cpu_fp32_inference
from entityseg_data.model.layers import (
    MLP,
    CrossAttentionLayer,
    FFNLayer,
    PositionEmbeddingSine3D2D,
    SelfAttentionLayer,
)
from entityseg_data.model.outputs import DecoderOutput, LevelPrediction

Heads = Callable[
    [Tensor, tuple[int, int] | None, bool], tuple[Tensor, Tensor | None, Tensor | None]
]


@dataclass
class DecoderResult:
    image_level: DecoderOutput
    batch_level: DecoderOutput | None
    assoc_in: Tensor | None  # (Q, B*V, C)
    assoc_out: Tensor | None  # (Q, B, C)


def _mask_for_attention(
    masks: Tensor, size: tuple[int, int] | None, nheads: int | None = None, *, owned: bool = False
) -> Tensor:
    """masks (N, Q, ..., H, W) logits -> bool (N*nheads, Q, S): True where sigmoid < 0.5 after a
    bilinear resize of every map to ``size`` (``None``: the maps are already at that size);
    rows masked everywhere are released (all False). ``nheads=None``: (N, Q, S), one mask
    shared by the heads (what the decoder passes; the attention layer expands it if needed).

    With ``nheads=None`` on CPU float32 without autograd or autocast, and when the logits may be
    overwritten (resized here, or ``owned`` by the caller), the same mask as the float
    :func:`attention_bias` instead (what the attention kernel makes of a bool mask anyway)."""
    n, q = masks.shape[:2]
    small = masks.flatten(1, -3)  # (N, Q*..., H, W)
    if size is not None:
        small = F.interpolate(small, size=size, mode="bilinear", align_corners=False)
    if nheads is None and (size is not None or owned) and _bias_mask(small):
        return attention_bias(small.reshape(n, q, -1))
    attn = small.sigmoid().reshape(n, q, -1) < 0.5  # (N, Q, S) flattened (..., h, w)
    attn = attn & ~attn.all(-1, keepdim=True)
    if nheads is None:
        return attn.detach()
    return attn.unsqueeze(1).expand(n, nheads, q, attn.shape[-1]).flatten(0, 1).detach()


#: switch: whether :func:`_mask_for_attention` makes the float mask (:func:`attention_bias`)
_bias_mask = cpu_fp32_inference


def attention_bias(logits: Tensor) -> Tensor:
    """Mask logits (N, Q, S), overwritten, -> the float attention mask (N, Q, S): 0 where the
    query attends (sigmoid >= 0.5), -inf where it does not, rows masked everywhere released
    (all 0). Exactly what ``F.scaled_dot_product_attention`` makes of the bool mask of
    :func:`_mask_for_attention` (``where(keep, 0, -inf)``), made in place from the keep
    indicator k in {0, 1} as ``1 - 1/k`` (1/0 = inf): vectorised passes over the logits
    instead of the bool mask's and the kernel's conversion, whose ``where`` runs one value at
    a time (~55 ms for the batch level's 200 x 68,000 at 1/8 of 800x1088 x 5 views). (Not
    ``log(k)``: log(0) takes a slow path, ~10 ns per value.)"""
    keep = logits.sigmoid_().ge_(0.5)
    dead = keep.amax(-1) == 0  # (N, Q) rows masked everywhere
    if bool(dead.any()):
        keep[dead] = 1.0
    return keep.reciprocal_().neg_().add_(1.0)


class _ResizedFeatures:
    """Mask features averaged the way a bilinear resize to the attention size averages.

    The attention masks of the intermediate heads are the 1/4 mask logits resized to 1/32,
    1/16 and 1/8. With an exact even integer factor ``s`` output pixel ``i`` of a bilinear
    resize (``align_corners=False``) is the mean of source pixels ``s*i + s/2 - 1`` and
    ``s*i + s/2`` (weights 1/2 per axis). The mask logit of a pixel is a dot product with its
    feature vector, so the resized logits are the dot products with the features averaged over
    those 2 x 2 pixels: the features are averaged once per size (strided views, no gather) and
    the mask head runs on h w instead of H W pixels per query (1/4 of the work at 1/8, 1/64 at
    1/32). Same values up to float rounding (~1e-7 relative; an attention-mask entry can flip
    only for a logit within that of 0)."""

    def __init__(self, features: Tensor, parent: _ResizedFeatures | None = None) -> None:
        self.features = features  # (N, C, H, W) or (B, V, C, H, W)
        self._cache: dict[tuple[int, int], Tensor | None] = {}
        self._parent = parent

    def viewed(self, features: Tensor) -> _ResizedFeatures:
        """The same features under another shape (``features`` is a view of
        ``self.features``, e.g. (B, V, C, H, W) of (B*V, C, H, W)): averages already computed
        here are reused as views instead of being computed and held a second time."""
        return _ResizedFeatures(features, parent=self)

    def pooled(self, size: tuple[int, int]) -> Tensor | None:
        """(..., C, h, w) averaged features, or None when the factor is not an even integer
        (then the caller resizes full-resolution masks)."""
        if size not in self._cache and self._parent is not None:
            done = self._parent._cache.get(size)
            if done is not None:
                self._cache[size] = done.view(*self.features.shape[:-2], *done.shape[-2:])
        if size not in self._cache:
            big_h, big_w = self.features.shape[-2:]
            h, w = size
            if big_h % h or big_w % w or (big_h // h) % 2 or (big_w // w) % 2:
                self._cache[size] = None
            else:
                sh, sw = big_h // h, big_w // w
                r, c = sh // 2 - 1, sw // 2 - 1
                f = self.features
                a, b = f[..., r::sh, c::sw], f[..., r::sh, c + 1 :: sw]
                cc, d = f[..., r + 1 :: sh, c::sw], f[..., r + 1 :: sh, c + 1 :: sw]
                # ((a + b) + (cc + d)) / 4: bitwise the resize's (a/2 + b/2)/2 + (cc/2 + d/2)/2
                # (halving is exact), in 4 passes instead of 7 (in place without autograd)
                if torch.is_grad_enabled() and f.requires_grad:
                    self._cache[size] = ((a + b) + (cc + d)) * 0.25
                else:
                    self._cache[size] = torch.add(a, b).add_(torch.add(cc, d)).mul_(0.25)
        return self._cache[size]


def _tokens(x: Tensor, embed: Tensor) -> Tensor:
    """(N, C, hw) maps + a (C,) level embedding -> contiguous (hw, N, C) tokens.

    Contiguous so that the cross-attention's key (``tokens + pos``) and value projections read
    plain (hw * N, C) matrices: on the strided (hw, N, C) view of the NCHW maps every layer paid a
    transposing copy and a product on a strided operand (~1/3 of the decoder's CPU time at
    800x1088 x 5 views). Without autograd the sum is written straight into the new layout.
    """
    seq = x.permute(2, 0, 1)
    if torch.is_grad_enabled():
        return (seq + embed).contiguous()
    return torch.add(seq, embed, out=seq.new_empty(seq.shape))


def _mask_logits(emb: Tensor, features: Tensor) -> Tensor:
    """Mask logits: emb (N, Q, C) . features (N, C, H, W) -> (N, Q, H, W), or per view
    features (B, V, C, H, W) -> (B, Q, V, H, W). On CPU without autograd or autocast the
    per-view product is written view by view into the output (one matrix product per view on
    contiguous features; ``einsum`` would first copy the features channel-major, 280 MB for 5
    views at 1/4 of 800x1088)."""
    if features.dim() == 4:
        return torch.einsum("nqc,nchw->nqhw", emb, features)
    per_view = (
        emb.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and emb.dtype == features.dtype
        and not (torch.is_grad_enabled() and (emb.requires_grad or features.requires_grad))
    )
    if not per_view:  # autograd, autocast, other devices: one einsum
        return torch.einsum("bqc,bvchw->bqvhw", emb, features)
    b, q = emb.shape[:2]
    v, c, h, w = features.shape[1:]
    out = emb.new_empty((b, q, v, h, w))
    for j in range(v):
        torch.matmul(emb, features[:, j].reshape(b, c, h * w), out=out[:, :, j].view(b, q, h * w))
    return out


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """The predictor (``sem_seg_head.predictor``).

    Args:
        in_channels: channels of the pixel decoder's multi-scale maps.
        mask_dim: channels of the mask features.
        num_queries, hidden_dim, nheads, dim_feedforward: as the official MASK_FORMER keys.
        dec_layers: official DEC_LAYERS = 1 + number of decoder layers.
        num_classes: 1 (entity) -> 2 logits.
        batch_level: add the association module and the batch-level pass (CropFormer).
        assoc_*: association module sizes (official ENTITY.FUSE_*).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        mask_dim: int,
        num_queries: int,
        hidden_dim: int = 256,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 10,
        num_classes: int = 1,
        batch_level: bool = True,
        assoc_layers: int = 1,
        assoc_nheads: int = 8,
        assoc_dim_feedforward: int = 2048,
        enforce_input_proj: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = nheads
        self.num_layers = dec_layers - 1
        self.num_queries = num_queries
        self.num_feature_levels = 3
        self.pe_layer = PositionEmbeddingSine3D2D(num_pos_feats=hidden_dim // 2)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d_model=hidden_dim, nhead=nheads, dropout=dropout)
            for _ in range(self.num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d_model=hidden_dim, nhead=nheads, dropout=dropout)
            for _ in range(self.num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(d_model=hidden_dim, dim_feedforward=dim_feedforward, dropout=dropout)
            for _ in range(self.num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_proj:
                conv = nn.Conv2d(in_channels, hidden_dim, 1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                assert conv.bias is not None  # bias=True
                nn.init.constant_(conv.bias, 0)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(
            input_dim=hidden_dim, hidden_dim=hidden_dim, output_dim=mask_dim, num_layers=3
        )
        self.batch_level = batch_level
        if batch_level:
            self.make_3d = Make3dQueries(
                hidden_dim=hidden_dim,
                nheads=assoc_nheads,
                dim_feedforward=assoc_dim_feedforward,
                num_layers=assoc_layers,
                dropout=dropout,
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # official checkpoints before version 2 call the learned queries "static_query"
        old = prefix + "static_query.weight"
        if old in state_dict and prefix + "query_feat.weight" not in state_dict:
            state_dict[prefix + "query_feat.weight"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------------------------- heads
    def _heads_image(
        self,
        output: Tensor,
        mask_features: _ResizedFeatures,
        size: tuple[int, int] | None,
        need_masks: bool,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """output (Q, N, C), mask_features (N, C, H, W) -> logits (N, Q, K+1), masks
        (N, Q, H, W) or None when not ``need_masks``, attention mask (N*heads, Q, h*w) for
        ``size`` or None."""
        d = self.decoder_norm(output).transpose(0, 1)  # (N, Q, C)
        logits = self.class_embed(d)
        emb = self.mask_embed(d)
        return logits, *self._masks(emb, mask_features, size, need_masks)

    def _heads_batch(
        self,
        output: Tensor,
        mask_features: _ResizedFeatures,
        size: tuple[int, int] | None,
        need_masks: bool,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """output (Q, B, C), mask_features (B, V, C, H, W) -> logits (B, Q, K+1),
        masks (B, Q, V, H, W) or None, attention mask (B*heads, Q, V*h*w) or None."""
        d = self.decoder_norm(output).transpose(0, 1)  # (B, Q, C)
        logits = self.class_embed(d)
        emb = self.mask_embed(d)
        return logits, *self._masks(emb, mask_features, size, need_masks)

    def _masks(
        self,
        emb: Tensor,
        features: _ResizedFeatures,
        size: tuple[int, int] | None,
        need_masks: bool,
    ) -> tuple[Tensor | None, Tensor | None]:
        pooled = None if (need_masks or size is None) else features.pooled(size)
        if pooled is None:  # the official order: full-resolution masks, then resized
            masks = _mask_logits(emb, features.features)
            attn = None if size is None else _mask_for_attention(masks, size)
            return (masks if need_masks else None), attn
        return None, _mask_for_attention(_mask_logits(emb, pooled), None, owned=True)

    def _decode(
        self,
        output: Tensor,
        query_pos: Tensor,
        srcs: list[Tensor],
        keys: list[Tensor],
        sizes: list[tuple[int, int]],
        heads: Heads,
        aux: bool,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor | None]]]:
        """Run the shared layers on the levels' tokens ``srcs`` and attention keys ``keys``
        (tokens + position codes, computed once per level by the caller, the codes not kept).
        Returns the final query features and [(logits, masks)] of the head applications whose
        masks are computed: every one with ``aux``, else the last."""
        preds: list[tuple[Tensor, Tensor | None]] = []
        # masks at 1/4 are computed for the heads whose masks are returned: all with ``aux``
        # (training), else the last one only; the others only give attention masks. The last
        # head's prediction is always returned (its masks are None when ``heads`` skips them)
        logits, masks, attn = heads(
            output, sizes[0] if self.num_layers else None, aux or not self.num_layers
        )
        if masks is not None or not self.num_layers:
            preds.append((logits, masks))
        for i in range(self.num_layers):
            lvl = i % self.num_feature_levels
            output = self.transformer_cross_attention_layers[i](
                output,
                srcs[lvl],
                memory_mask=attn,
                query_pos=query_pos,
                key=keys[lvl],
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
            output = self.transformer_ffn_layers[i](output)
            last = i == self.num_layers - 1
            nxt = None if last else sizes[(i + 1) % self.num_feature_levels]
            logits, masks, attn = heads(output, nxt, aux or last)
            if masks is not None or last:
                preds.append((logits, masks))
        return output, preds

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        multi_scale: list[Tensor],
        mask_features: Tensor,
        *,
        num_views: int,
        aux: bool = True,
        image_masks: bool = True,
    ) -> DecoderResult:
        """
        Args:
            multi_scale: 3 maps (B*V, C, h_l, w_l) at 1/32, 1/16, 1/8; views of an image
                contiguous, view 0 = full view.
            mask_features: (B*V, mask_dim, H, W) at 1/4.
            num_views: V.
            aux: also return the earlier heads' predictions (masks included).
            image_masks: compute the image-level final mask logits. False (CropFormer only,
                without ``aux``): ``image_level.final.pred_masks`` is None; the official
                post-processing reads the batch level only, and this saves B*V*Q*H*W floats
                (218 MB for 5 views of 800x1088) held until the post-processing ends.
        """
        n = mask_features.shape[0]
        v = num_views
        if n % v:
            raise ValueError(f"batch of {n} views is not a multiple of num_views={v}")
        b = n // v
        sizes: list[tuple[int, int]] = []
        srcs2d: list[Tensor] = []
        # attention keys: tokens + position codes per level, computed once for the layers
        # reading that level (a 70 MB sum at 1/8 of 800x1088 x 5 views, otherwise redone by
        # each of its 3 layers); the codes themselves are not kept
        keys2d: list[Tensor] = []
        for lvl, x in enumerate(multi_scale):
            h, w = int(x.shape[-2]), int(x.shape[-1])
            sizes.append((h, w))
            p2 = self.pe_layer.encode(b, v, h, w, x.device)[0]  # (B, V, C, h, w) expanded
            src = _tokens(self.input_proj[lvl](x).flatten(2), self.level_embed.weight[lvl])
            c = src.shape[-1]
            srcs2d.append(src)
            # the 2-D code is the same for every view: (hw, 1, C) contiguous, broadcast over the
            # views (channels innermost like ``src``: ``src + pos`` is then contiguous too)
            pos = p2[:1, 0].reshape(c, h * w).t().contiguous()[:, None, :].expand(h * w, n, c)
            keys2d.append(src + pos)

        q_feat = self.query_feat.weight[:, None, :].expand(-1, n, -1)
        q_pos = self.query_embed.weight[:, None, :].expand(-1, n, -1)

        mf2 = _ResizedFeatures(mask_features)
        # the image-level final masks are needed unless the caller reads the batch level only
        final_masks = image_masks or aux or not self.batch_level

        def heads2d(
            out: Tensor, size: tuple[int, int] | None, need_masks: bool
        ) -> tuple[Tensor, Tensor | None, Tensor | None]:
            if size is None and not final_masks:  # the last head: logits only
                d = self.decoder_norm(out).transpose(0, 1)
                return self.class_embed(d), None, None
            return self._heads_image(out, mf2, size, need_masks)

        out2d, preds2d = self._decode(q_feat, q_pos, srcs2d, keys2d, sizes, heads2d, aux)
        del srcs2d, keys2d  # the batch level builds its own tokens

        def image_pred(logits: Tensor, masks: Tensor | None) -> LevelPrediction:
            q = logits.shape[1]
            return LevelPrediction(
                pred_logits=logits.reshape(b, v, q, -1),
                pred_masks=None if masks is None else masks.reshape(b, v, q, *masks.shape[-2:]),
            )

        image_out = DecoderOutput(
            final=image_pred(*preds2d[-1]),
            aux=[image_pred(*p) for p in preds2d[:-1]] if aux else [],
        )
        if not self.batch_level:
            return DecoderResult(image_out, None, None, None)

        srcs3d: list[Tensor] = []
        keys3d: list[Tensor] = []
        for lvl, x in enumerate(multi_scale):
            h, w = sizes[lvl]
            p3 = self.pe_layer.encode(b, v, h, w, x.device)[1]  # (B, V, C, h, w)
            src = self.input_proj[lvl](x).flatten(2) + self.level_embed.weight[lvl][None, :, None]
            c = src.shape[1]
            # (B*V, C, hw) -> (V*hw, B, C), token index v*hw + p
            srcs3d.append(src.view(b, v, c, h * w).permute(1, 3, 0, 2).reshape(v * h * w, b, c))
            pos = p3.permute(1, 3, 4, 0, 2).reshape(v * h * w, b, c)
            if pos.data_ptr() != p3.data_ptr() and not torch.is_grad_enabled():
                keys3d.append(pos.add_(srcs3d[-1]))  # a copy: the sum written over it
            else:
                keys3d.append(srcs3d[-1] + pos)
            del src, p3, pos
        q3 = self.make_3d(out2d, self.query_embed.weight, v)  # (Q, B, C)
        q3_pos = self.query_embed.weight[:, None, :].expand(-1, b, -1)
        # the batch level reads the same averaged features as the image level (no second copy)
        mf3 = mf2.viewed(mask_features.view(b, v, *mask_features.shape[1:]))

        def heads3d(
            out: Tensor, size: tuple[int, int] | None, need_masks: bool
        ) -> tuple[Tensor, Tensor | None, Tensor | None]:
            return self._heads_batch(out, mf3, size, need_masks)

        _, preds3d = self._decode(q3, q3_pos, srcs3d, keys3d, sizes, heads3d, aux)
        batch_out = DecoderOutput(
            final=LevelPrediction(*preds3d[-1]),
            aux=[LevelPrediction(*p) for p in preds3d[:-1]] if aux else [],
        )
        return DecoderResult(image_out, batch_out, out2d, q3)
