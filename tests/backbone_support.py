"""Backbone test helpers: oracle weights and the normalised, padded input views
(``from backbone_support import ...``: a module, not a conftest, importable in any order)."""

from __future__ import annotations

import json

import numpy as np
import torch

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def backbone_state_dict(path) -> dict:
    """The ``backbone.*`` entries of an oracle ``weights.npz`` with the prefix removed."""
    with np.load(path) as npz:
        return {
            k[len("backbone.") :]: torch.from_numpy(npz[k])
            for k in npz.files
            if k.startswith("backbone.")
        }


def normalised_views(outputs_npz) -> torch.Tensor:
    """(V, 3, Hp, Wp): (x - mean) / std of the stored uint8 views, zero-padded bottom/right."""
    views = np.concatenate(
        [outputs_npz["input_full_rgb_u8"][None], outputs_npz["input_crops_rgb_u8"]]
    )
    x = torch.from_numpy(views.astype(np.float32))
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    x = (x - mean) / std
    hp, wp = (int(v) for v in outputs_npz["padded_hw"])
    return torch.nn.functional.pad(x, (0, wp - x.shape[-1], 0, hp - x.shape[-2]))


def manifest_backbone_shapes(path) -> dict[str, tuple[int, ...]]:
    """``backbone.*`` keys (prefix removed) -> shape, from an oracle manifest JSON."""
    sd = json.loads(path.read_text())["state_dict"]
    return {k[len("backbone.") :]: tuple(v[0]) for k, v in sd.items() if k.startswith("backbone.")}


def meta_backbone(cfg):
    """``build_backbone(cfg)`` with its parameters on the meta device and its buffers real, as
    ``build_model(device="meta")`` builds models (for key, shape and count checks). Building
    under ``torch.device("meta")`` instead runs the buffers' arithmetic through torch's Python
    meta decompositions, whose first call imports torch._dynamo and sympy (~2 CPU s/process)."""
    from entityseg_data.model.backbones import build_backbone
    from entityseg_data.model.loading import _parameters_on_meta

    with _parameters_on_meta():
        return build_backbone(cfg)
