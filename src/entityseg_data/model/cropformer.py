"""CropFormer (image-level + batch-level decoding of V views) and its Mask2Former sibling.

The module maps normalised, padded views to raw logits (:mod:`outputs`). Pre-processing (resize,
normalise, pad), fusion, thresholds and RLE live in ``model/inference``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from entityseg_data.model.config import ModelConfig
from entityseg_data.model.decoder import MultiScaleMaskedTransformerDecoder
from entityseg_data.model.layout import copy_channels_first_
from entityseg_data.model.outputs import ModelOutput
from entityseg_data.model.pixel_decoder import MSDeformAttnPixelDecoder, PixelDecoderOutput


@runtime_checkable
class _FusedAttention(Protocol):
    """An attention layer with a ``fused`` switch (model.layers.transformer)."""

    fused: bool


class MaskFormerHead(nn.Module):
    """Container giving the official ``sem_seg_head.{pixel_decoder,predictor}`` key prefixes."""

    def __init__(
        self,
        *,
        pixel_decoder: MSDeformAttnPixelDecoder,
        predictor: MultiScaleMaskedTransformerDecoder,
    ) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class CropFormer(nn.Module):
    """``backbone`` -> ``sem_seg_head.pixel_decoder`` -> ``sem_seg_head.predictor``.

    With ``config.batch_level`` False this is the Mask2Former baseline (image level only).
    Build it with :func:`entityseg_data.model.loading.build_model`.
    """

    def __init__(
        self, *, config: ModelConfig, backbone: nn.Module, sem_seg_head: MaskFormerHead
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head

    @property
    def batch_level(self) -> bool:
        return self.config.batch_level

    def set_fused_attention(self, enabled: bool) -> None:
        """Let ``nn.MultiheadAttention`` use the fused SDPA kernel (no attention weights are
        materialised; numerically equal within ~1e-6). Off by default (official computation)."""
        for m in self.sem_seg_head.predictor.modules():
            if isinstance(m, _FusedAttention):
                m.fused = enabled

    def forward(
        self,
        images: Tensor,
        *,
        aux: bool | None = None,
        return_features: bool = False,
        view_chunk: int | None = None,
        image_masks: bool = True,
    ) -> ModelOutput:
        """
        Args:
            images: (B, V, 3, Hp, Wp) float32, normalised ((x - mean) / std, RGB) and zero-padded
                bottom/right to a multiple of ``config.size_divisibility``. View 0 = full image.
            aux: return the earlier heads' predictions (default: ``self.training``).
            return_features: also return intermediates (see :class:`ModelOutput`).
            view_chunk: run the backbone and the pixel decoder on this many views at a time
                (they treat every view independently) and keep only their outputs: the peak
                memory of those stages is that of ``view_chunk`` views instead of B x V.
                Same values (per-view computation); ignored with ``return_features``.
            image_masks: compute the image-level final mask logits; False (CropFormer without
                ``aux``) leaves ``image_level.final.pred_masks`` None: the official
                post-processing reads only the batch level, and the image-level masks (V x Q
                maps at 1/4) would be held for nothing.
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
        b, v, _, h, w = images.shape
        div = self.config.size_divisibility
        if h % div or w % div:
            raise ValueError(f"image size {h}x{w} is not a multiple of {div}; pad it first")
        flat = images.reshape(b * v, 3, h, w)
        if view_chunk is not None and 0 < view_chunk < b * v and not return_features:
            pix = self._pixel_features_chunked(flat, int(view_chunk))
            return self._decode(
                pix,
                num_views=v,
                aux=aux,
                feats=None,
                return_features=False,
                image_masks=image_masks,
            )
        feats = self.backbone(flat)
        return self.forward_backbone_features(
            feats,
            num_views=v,
            aux=aux,
            return_features=return_features,
            image_masks=image_masks,
        )

    def forward_backbone_features(
        self,
        feats: dict[str, Tensor],
        *,
        num_views: int,
        aux: bool | None = None,
        return_features: bool = False,
        image_masks: bool = True,
    ) -> ModelOutput:
        """Run everything after the backbone. feats: "res2".."res5" (B*V, C_i, h_i, w_i), views of
        an image contiguous. ``image_masks``: see :meth:`forward`."""
        pix = self.sem_seg_head.pixel_decoder(feats)
        return self._decode(
            pix,
            num_views=num_views,
            aux=aux,
            feats=feats,
            return_features=return_features,
            image_masks=image_masks,
        )

    def _pixel_features_chunked(self, flat: Tensor, chunk: int) -> PixelDecoderOutput:
        """Backbone + pixel decoder over ``chunk`` views at a time; outputs written into
        tensors allocated before the first view (no concatenation copy).

        Allocating the outputs (mask features at 1/4 and the maps at 1/32, 1/16, 1/8 of all
        views; 0.37 GB for 5 views of 800x1088) before any view runs puts them below the
        views' short-lived activations in the heap instead of in the holes the first view
        left, where they split the free space the later views need (the tuned allocator's
        peak RSS: 3.71 -> 3.67 GB for CropFormer HorNet-L at 800x1067, docs/benchmarks.md)."""
        n, _, h, w = flat.shape
        cfg = self.config
        out = PixelDecoderOutput(
            mask_features=flat.new_empty((n, cfg.mask_dim, h // 4, w // 4)),
            multi_scale=[flat.new_empty((n, cfg.conv_dim, h // s, w // s)) for s in (32, 16, 8)],
        )
        for s in range(0, n, chunk):
            part = self.sem_seg_head.pixel_decoder(self.backbone(flat[s : s + chunk]))
            e = s + part.mask_features.shape[0]
            if s == 0 and [m.shape[1:] for m in (part.mask_features, *part.multi_scale)] != [
                m.shape[1:] for m in (out.mask_features, *out.multi_scale)
            ]:  # a backbone whose feature sizes are not exact fractions of the input
                out = PixelDecoderOutput(
                    mask_features=part.mask_features.new_empty((n, *part.mask_features.shape[1:])),
                    multi_scale=[m.new_empty((n, *m.shape[1:])) for m in part.multi_scale],
                )
            copy_channels_first_(out.mask_features[s:e], part.mask_features)
            for dst, src in zip(out.multi_scale, part.multi_scale):
                # the encoder's maps are channels-last views of its tokens
                copy_channels_first_(dst[s:e], src)
            del part
        return out

    def _decode(
        self,
        pix: PixelDecoderOutput,
        *,
        num_views: int,
        aux: bool | None,
        feats: dict[str, Tensor] | None,
        return_features: bool,
        image_masks: bool = True,
    ) -> ModelOutput:
        if aux is None:
            aux = self.training
        res = self.sem_seg_head.predictor(
            pix.multi_scale,
            pix.mask_features,
            num_views=num_views,
            aux=aux,
            image_masks=image_masks,
        )
        features = None
        if return_features and feats is not None:
            features = dict(feats)
            for i, m in enumerate(pix.multi_scale):
                features[f"multi_scale_{i}"] = m
            features["mask_features"] = pix.mask_features
            if res.assoc_in is not None:
                features["assoc_in"] = res.assoc_in
                features["assoc_out"] = res.assoc_out
        return ModelOutput(
            image_level=res.image_level, batch_level=res.batch_level, features=features
        )
