"""Segmenters for :meth:`Predictions.add <entityseg_data.api.predictions.Predictions.add>`:
anything with ``model_version`` and ``segment(image) -> ImageMasks`` (the
:class:`~entityseg_data.masks.types.Segmenter` protocol).

* :func:`load_segmenter`: the bundled CropFormer / Mask2Former
  (:class:`~entityseg_data.model.inference.predictor.EntitySegmenter`) by released name,
  converted folder, training run or official checkpoint;
* :class:`FelzenszwalbSegmenter`: a non-learned baseline (scikit-image), for a first round of
  pre-annotations when no weights exist yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.masks.types import ImageMasks

if TYPE_CHECKING:
    from entityseg_data.model.config import InferenceConfig
    from entityseg_data.model.inference.predictor import EntitySegmenter


def load_segmenter(
    name_or_path: str | Path,
    *,
    device: str = "cpu",
    mode: str | None = None,
    preset: str | None = None,
    inference: InferenceConfig | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    model_version: str | None = None,
    trust_pickle: bool = False,
    precision: str = "fp32",
    overrides: Iterable[str] = (),
) -> EntitySegmenter:
    """Load the bundled model: a released name (``cropformer_hornet_3x``, downloaded once), a
    converted or trained model folder (``runs/x/model``) or an official checkpoint file.

    ``inference`` replaces the model's post-processing settings; ``min_size`` / ``max_size``
    the view resize (short side / long side cap, pixels); ``model_version`` the name its
    predictions are stored under (default: the preset, or the run / file name); ``precision``:
    ``fp32`` (the official computation), ``bf16``, ``fp16`` (GPU) or ``int8`` (CPU), see
    docs/benchmarks.md for their agreement with fp32. ``overrides``: ``key=value`` changes of
    the model config's ``inference.*`` and ``views.*`` keys (e.g. ``inference.score_thresh=0.5``;
    the architecture is the weights', so other keys are a ConfigError, raised before loading),
    applied last."""
    from entityseg_data.config import apply_overrides
    from entityseg_data.errors import ConfigError
    from entityseg_data.model.inference.predictor import EntitySegmenter

    sets = list(overrides)
    for text in sets:
        key = text.split("=", 1)[0].strip()
        if not key.startswith(("inference.", "views.")):
            raise ConfigError(f"{key}: a loaded model takes inference.* and views.* keys")

    views: dict[str, Any] = {}
    if min_size is not None:
        views["min_size"] = min_size
    if max_size is not None:
        views["max_size"] = max_size
    seg = EntitySegmenter.from_pretrained(
        str(name_or_path),
        device=device,
        mode=mode,
        preset=preset,
        trust_pickle=trust_pickle,
        model_version=model_version,
        precision=precision,
        **views,
    )
    if inference is not None:
        seg = seg.with_config(dataclasses.replace(seg.config, inference=inference))
    if sets:
        seg = seg.with_config(apply_overrides(seg.config, sets))
    return seg


@dataclass(frozen=True)
class FelzenszwalbSegmenter:
    """Felzenszwalb's graph segmentation (scikit-image) on a copy resized to ``max_side``
    pixels, labels upsampled (nearest) to full size; entities by descending area, score
    ``1 - 1 / (1 + area %)``. Parameters as :func:`skimage.segmentation.felzenszwalb`."""

    scale: float = 900.0
    sigma: float = 0.8
    min_size: int = 600
    max_side: int = 400
    model_version: str = "baseline-felzenszwalb"

    def segment(self, image: np.ndarray) -> ImageMasks:
        """(H, W, 3) uint8 RGB -> non-overlapping entities covering the image."""
        from entityseg_data.annotation.ml_backend import felzenszwalb_segmenter

        seg = felzenszwalb_segmenter(
            scale=self.scale, sigma=self.sigma, min_size=self.min_size, max_side=self.max_side
        )
        label_map, scores = seg(image)
        return ImageMasks.from_label_map(np.asarray(label_map), scores=np.asarray(scores))
