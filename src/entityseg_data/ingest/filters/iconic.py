"""An optional "iconic image" heuristic: product shots, clip-art and studio photos of one object
on a plain background, which the paper's non-iconic, scene-centric collection avoids.

Score = the fraction of the image's border band (outer ``band`` of each side) whose colour lies
within ``tolerance`` (Euclidean RGB distance, 0-255 scale) of the band's median colour. A
plain-background shot scores near 1, a scene near 0. Reject when score >= threshold.

Limits (honest): it measures the background, not the object count. Photos with large uniform
borders (clear sky above a flat sea, a white wall) can score high, and an iconic object photographed
against a busy background scores low. It is off by default; review its rejections in the
``verdicts`` table before trusting it on a new domain.
"""

from __future__ import annotations

import numpy as np

from entityseg_data.ingest.filters.base import Verdict

NAME = "iconic"


def border_uniformity(rgb: np.ndarray, band: float = 0.06, tolerance: float = 24.0) -> float:
    """Fraction in [0, 1] of the (H, W, 3) image's border pixels close to their median colour."""
    h, w = rgb.shape[:2]
    bh, bw = max(1, round(h * band)), max(1, round(w * band))
    border = np.concatenate(
        [
            rgb[:bh].reshape(-1, 3),
            rgb[-bh:].reshape(-1, 3),
            rgb[bh:-bh, :bw].reshape(-1, 3),
            rgb[bh:-bh, -bw:].reshape(-1, 3),
        ]
    ).astype(np.float32)
    median = np.median(border, axis=0)
    dist = np.sqrt(((border - median) ** 2).sum(axis=1))
    return float((dist <= tolerance).mean())


def check_iconic(rgb: np.ndarray, threshold: float) -> Verdict:
    """Reject when :func:`border_uniformity` >= ``threshold``."""
    score = border_uniformity(rgb)
    if score >= threshold:
        return Verdict(NAME, False, f"plain border {score:.2f} >= {threshold} (iconic)", score)
    return Verdict(NAME, True, f"plain border {score:.2f} < {threshold}", score)
