"""The oracle fixtures' models and stored inputs (``from oracle_support import ...``: a module,
not a conftest, so that test folders can import it in any order in one session)."""

from __future__ import annotations

import numpy as np
import torch

ORACLES = {"tiny": "tiny_swin", "tiny_hornet": "tiny_hornet"}
IMAGES = ("outputs_img_a_480x640", "outputs_img_b_600x400")


def views_tensor(npz, pixel_mean, pixel_std) -> torch.Tensor:
    """(1, 5, 3, Hp, Wp) normalised, zero-padded views from the stored uint8 inputs."""
    views = np.concatenate([npz["input_full_rgb_u8"][None], npz["input_crops_rgb_u8"]])
    x = torch.from_numpy(views.astype(np.float32))
    mean = torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x - mean) / std
    hp, wp = (int(v) for v in npz["padded_hw"])
    x = torch.nn.functional.pad(x, (0, wp - x.shape[-1], 0, hp - x.shape[-2]))
    return x[None]


def unpack_masks(npz) -> np.ndarray:
    """(Q, H, W) bool final masks the oracle stored bit-packed."""
    q = npz["final_scores"].shape[0]
    h, w = (int(v) for v in npz["original_hw"])
    return np.unpackbits(npz["final_masks_packbits"], count=q * h * w).reshape(q, h, w).astype(bool)
