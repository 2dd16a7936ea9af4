"""Building blocks shared by the pixel decoder, the masked decoder and the association module."""

from entityseg_data.model.layers.ms_deform_attn import (
    MSDeformAttn,
    ms_deform_attn_gather,
    ms_deform_attn_gather_offsets,
    ms_deform_attn_grid_sample,
    ms_deform_attn_sample,
)
from entityseg_data.model.layers.position_encoding import (
    PositionEmbeddingSine,
    PositionEmbeddingSine3D2D,
)
from entityseg_data.model.layers.transformer import (
    MLP,
    CrossAttentionLayer,
    FFNLayer,
    SelfAttentionLayer,
)

__all__ = [
    "MLP",
    "CrossAttentionLayer",
    "FFNLayer",
    "MSDeformAttn",
    "PositionEmbeddingSine",
    "PositionEmbeddingSine3D2D",
    "SelfAttentionLayer",
    "ms_deform_attn_gather",
    "ms_deform_attn_gather_offsets",
    "ms_deform_attn_grid_sample",
    "ms_deform_attn_sample",
]
