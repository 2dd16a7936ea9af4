"""Typed outputs of :class:`~entityseg_data.model.cropformer.CropFormer` (raw logits only).

Shapes: B images, V views per image (view 0 = full image), Q queries, K+1 = 2 classes
(index 0 = entity, 1 = no-object), masks at 1/4 of the padded input size (Hp/4, Wp/4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class LevelPrediction:
    """One application of the prediction heads.

    pred_logits: image level (B, V, Q, K+1); batch level (B, Q, K+1).
    pred_masks: image level (B, V, Q, Hp/4, Wp/4); batch level (B, Q, V, Hp/4, Wp/4); logits.
        None only for the image-level final head of a CropFormer forward asked for the batch
        level's masks only (``image_masks=False``).
    """

    pred_logits: Tensor
    pred_masks: Tensor | None


@dataclass
class DecoderOutput:
    """final = the last layer's heads; aux = the earlier heads in order (index 0 = heads on the
    initial queries: learned queries for image level, association output for batch level).
    ``aux`` is empty when the forward was asked for no auxiliary outputs."""

    final: LevelPrediction
    aux: list[LevelPrediction] = field(default_factory=list)


@dataclass
class ModelOutput:
    """image_level: every view decoded alone; batch_level: all views of an image jointly (None for
    Mask2Former). features (only with ``return_features=True``): "res2".."res5" (B*V, C, h, w),
    "multi_scale_0..2" (B*V, C, h, w; 1/32, 1/16, 1/8), "mask_features" (B*V, C, Hp/4, Wp/4),
    "assoc_in" (Q, B*V, C; sequence-first, before decoder_norm) and "assoc_out" (Q, B, C)."""

    image_level: DecoderOutput
    batch_level: DecoderOutput | None
    features: dict[str, Tensor] | None = None
