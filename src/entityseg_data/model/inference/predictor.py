"""``EntitySegmenter``: images in, non-overlapping entities out.

>>> seg = EntitySegmenter.from_pretrained("cropformer_hornet_3x", device="cuda")
>>> res = seg("photo.jpg")                # SegmentationResult
>>> res.label_map, res.scores, res.boxes  # (H, W) uint16, (N,), (N, 4) [x, y, w, h]
>>> results = seg(["a.jpg", "b.png"], batch_size=2)
>>> res.save("out/{stem}", formats=("png", "json", "coco"))
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from entityseg_data.errors import ConfigError
from entityseg_data.masks.types import Entity, ImageMasks
from entityseg_data.model.config import InferenceConfig
from entityseg_data.model.inference.images import DEFAULT_MAX_PIXELS, as_rgb_array
from entityseg_data.model.inference.postprocess import postprocess_batch
from entityseg_data.model.inference.preprocess import views_input
from entityseg_data.model.inference.result import SegmentationResult
from entityseg_data.model.inference.views import ViewGeometry, view_geometry

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

MODES = ("cropformer", "mask2former")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
"""``fp32`` (default, the official computation); ``bf16`` / ``fp16``: autocast (the pixel decoder
stays fp32 as officially; fp16 on GPUs only); ``int8``: dynamic int8 quantization of the Linear
layers (CPU). The non-fp32 ones are faster approximations: see docs/benchmarks.md for their
measured agreement with fp32."""


def quantize_linear_int8(model: Any) -> Any:
    """``model`` with every ``nn.Linear`` replaced by a dynamically quantized int8 Linear
    (weights int8 per tensor, activations quantized per call; CPU; in place)."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notices about quantized tensors
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


@functools.cache
def _warn_emulated_bf16() -> None:
    """Say once per process (not again for every segmenter derived with ``with_options``) that
    bf16 autocast on this CPU is emulated."""
    log.warning(
        "precision 'bf16': this CPU has no bf16 instructions (AVX512-BF16/AMX), so autocast "
        "emulates them and runs several times slower than fp32 (docs/benchmarks.md); use fp32"
    )


class EntitySegmenter:
    """A loaded model plus its view and post-processing settings.

    ``model``: a CropFormer/Mask2Former module (eval mode); ``config``: its ``ModelConfig``
    (views from ``config.views``, post-processing from ``config.inference``); ``options``
    replaces ``config.inference`` and ``min_size``/``max_size`` the view resize: the segmenter
    keeps ONE config with them folded in (:attr:`config`; read-only). Change settings with
    :meth:`with_options` / :meth:`with_config`, which build a new segmenter sharing the model.
    ``tune_malloc``: make glibc keep freed memory for reuse instead of page-faulting every large
    tensor anew (:func:`entityseg_data.model.runtime.tune_allocator`; a process-wide setting,
    off with ``ENTITYSEG_MALLOC=default``). ``precision``: one of :data:`PRECISIONS` (fp32
    default). ``view_chunk``: views run through the backbone and pixel decoder at a time
    (default 1 on CPU: bounded memory; 0 = all at once, the default on accelerators).
    """

    def __init__(
        self,
        *,
        model: Any,
        config: Any,
        device: str = "cpu",
        options: InferenceConfig | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        model_version: str = "entityseg-data",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        tune_malloc: bool = True,
        precision: str = "fp32",
        view_chunk: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if tune_malloc:
            from entityseg_data.model.runtime import tune_allocator

            tune_allocator()
        views = config.views
        views = dataclasses.replace(
            views,
            min_size=int(min_size or views.min_size),
            max_size=int(max_size or views.max_size),
        )
        inference = options or getattr(config, "inference", None) or InferenceConfig()
        self._config = dataclasses.replace(config, views=views, inference=inference)
        self.model = model
        self.device = device
        self.model_version = model_version
        self.max_pixels = max_pixels
        self.precision = precision
        dev_type = str(device).split(":")[0]
        # CPU: one view at a time through the backbone and pixel decoder (bounded memory, same
        # values); accelerators: all views in one batch unless asked
        self.view_chunk = view_chunk if view_chunk is not None else (1 if dev_type == "cpu" else 0)
        if precision == "int8":
            if dev_type != "cpu":
                raise ConfigError("precision 'int8' (dynamic quantization) runs on CPU only")
            self.model = quantize_linear_int8(self.model)  # a no-op on a quantized model
        if precision == "fp16" and dev_type == "cpu":
            raise ConfigError("precision 'fp16' needs a GPU; on CPU use 'bf16' or 'int8'")
        if precision == "bf16" and dev_type == "cpu":
            from entityseg_data.model.runtime import cpu_bf16_native

            if not cpu_bf16_native():
                _warn_emulated_bf16()

    # ------------------------------------------------------------------ settings (read-only)
    @property
    def config(self) -> Any:
        """The ``ModelConfig`` in use: architecture, views and inference settings."""
        return self._config

    @property
    def options(self) -> InferenceConfig:
        """The post-processing settings (``config.inference``)."""
        inference: InferenceConfig = self._config.inference
        return inference

    @property
    def min_size(self) -> int:
        return int(self._config.views.min_size)

    @property
    def max_size(self) -> int:
        return int(self._config.views.max_size)

    @property
    def side_ratio(self) -> float:
        return float(self._config.views.crop_side_ratio)

    @property
    def stride_ratio(self) -> float:
        return float(self._config.views.crop_stride_ratio)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str = "cpu",
        mode: str | None = None,
        preset: str | None = None,
        config: Any = None,
        trust_pickle: bool = False,
        cache_dir: str | Path | None = None,
        model_version: str | None = None,
        **option_changes: Any,
    ) -> EntitySegmenter:
        """Load a released model by name (downloaded once from the Hugging Face hub and cached
        as safetensors), a converted folder, or an official checkpoint file.

        ``mode``: "cropformer" or "mask2former"; with a bare backbone name (``"hornet_3x"``)
        it picks the model family, with a full name it must agree with it. Remaining keyword
        arguments change :class:`~entityseg_data.model.config.InferenceConfig` fields
        (``score_thresh=0.5``...), the view size (``min_size``, ``max_size``) or the
        constructor's ``precision``, ``view_chunk`` and ``tune_malloc``. ``model_version``
        names the predictions (default: the preset, or the run / file name).
        """
        from entityseg_data.model.inference.hub import resolve_model
        from entityseg_data.model.loading import load_checkpoint

        if mode is not None and mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        path, preset_name = resolve_model(
            name_or_path, mode=mode, preset=preset, config=config, cache_dir=cache_dir
        )
        model, cfg, _ = load_checkpoint(
            path,
            preset=preset_name if not Path(path).is_dir() else None,
            config=config if not Path(path).is_dir() else None,
            trust_pickle=trust_pickle,
            device=device,
        )
        if mode is not None and (mode == "cropformer") != bool(cfg.batch_level):
            raise ConfigError(
                f"{name_or_path}: is a {'CropFormer' if cfg.batch_level else 'Mask2Former'} "
                f"model, but mode={mode!r} was asked for"
            )
        view_changes = {
            k: option_changes.pop(k)
            for k in ("min_size", "max_size", "precision", "view_chunk", "tune_malloc")
            if k in option_changes
        }
        opts = InferenceConfig.from_config(cfg.inference, **option_changes)
        version = model_version or preset_name or _version_name(Path(str(name_or_path)))
        return cls(
            model=model,
            config=cfg,
            device=device,
            options=opts,
            model_version=version,
            **view_changes,
        )

    def with_options(self, **changes: Any) -> EntitySegmenter:
        """A segmenter sharing the model with some ``InferenceConfig`` fields changed
        (``score_thresh=0.5``...)."""
        inference = dataclasses.replace(self.options, **changes)
        return self.with_config(dataclasses.replace(self._config, inference=inference))

    def with_config(self, config: Any) -> EntitySegmenter:
        """A segmenter sharing the model with other ``views`` / ``inference`` settings
        (``config``: a ``ModelConfig`` of the same architecture, e.g. this one with ``--set
        views.min_size=640`` applied). Raises ConfigError when an architecture field differs
        (the loaded weights would not fit)."""
        fixed = {"views", "inference"}
        changed = [
            f.name
            for f in dataclasses.fields(self._config)
            if f.name not in fixed and getattr(config, f.name) != getattr(self._config, f.name)
        ]
        if changed:
            raise ConfigError(
                f"{', '.join(changed)}: architecture settings of a loaded model cannot change "
                "(only views.* and inference.*)"
            )
        return EntitySegmenter(
            model=self.model,
            config=config,
            device=self.device,
            model_version=self.model_version,
            max_pixels=self.max_pixels,
            tune_malloc=False,
            precision=self.precision,
            view_chunk=self.view_chunk,
        )

    # ------------------------------------------------------------------ geometry
    @property
    def uses_crops(self) -> bool:
        return bool(self.config.batch_level)

    def geometry(self, height: int, width: int) -> ViewGeometry:
        return view_geometry(
            height,
            width,
            min_size=self.min_size,
            max_size=self.max_size,
            side_ratio=self.side_ratio,
            stride_ratio=self.stride_ratio,
            crops=self.uses_crops,
        )

    # ------------------------------------------------------------------ prediction
    @overload
    def __call__(
        self, images: list[Any] | tuple[Any, ...], *, batch_size: int = 1
    ) -> list[SegmentationResult]: ...

    @overload
    def __call__(
        self, images: str | os.PathLike[str] | np.ndarray | Image.Image, *, batch_size: int = 1
    ) -> SegmentationResult: ...

    def __call__(
        self, images: Any, *, batch_size: int = 1
    ) -> SegmentationResult | list[SegmentationResult]:
        """Segment one image (path, PIL image, (H, W, 3) array) -> :class:`SegmentationResult`,
        or a list/tuple of them -> a list of results (``batch_size`` images per forward)."""
        if isinstance(images, (list, tuple)):
            out: list[SegmentationResult] = []
            for s in range(0, len(images), max(1, batch_size)):
                out.extend(self.predict_batch(images[s : s + max(1, batch_size)]))
            return out
        return self.predict_batch([images])[0]

    def segment(self, image: np.ndarray) -> ImageMasks:
        """The :class:`~entityseg_data.masks.types.Segmenter` protocol: an (H, W, 3) uint8 RGB
        array in, its entities out (ids 1..N by descending score, each with its ``score`` and,
        in ``extra``, ``class_score``, ``mask_quality`` and, with crop views,
        ``view_disagreement``)."""
        res = self.predict_arrays([image])[0]
        ents = tuple(
            Entity(
                id=i + 1,
                rle=rle,
                score=float(res.scores[i]),
                extra={
                    "class_score": float(res.class_scores[i]),
                    "mask_quality": float(res.mask_quality[i]),
                    **(
                        {"view_disagreement": float(res.view_disagreement[i])}
                        if res.view_disagreement is not None
                        else {}
                    ),
                },
            )
            for i, rle in enumerate(res.rles)
        )
        return ImageMasks(image_id=None, height=res.height, width=res.width, entities=ents)

    def predict_batch(self, images: Sequence[Any]) -> list[SegmentationResult]:
        """Segment several images in one forward pass (views padded together)."""
        arrays, sources = [], []
        for im in images:
            arr, src = as_rgb_array(im, max_pixels=self.max_pixels)
            arrays.append(arr)
            sources.append(src)
        return self.predict_arrays(arrays, sources=sources)

    def predict_arrays(
        self, arrays: Sequence[np.ndarray], *, sources: Sequence[str | None] | None = None
    ) -> list[SegmentationResult]:
        """Segment (H, W, 3) uint8 RGB arrays (one forward pass for all of them)."""
        import torch

        if not arrays:
            return []
        geos = [self.geometry(a.shape[0], a.shape[1]) for a in arrays]
        cfg = self.config
        x, _ = views_input(
            arrays,
            geos,
            pixel_mean=cfg.pixel_mean,
            pixel_std=cfg.pixel_std,
            size_divisibility=cfg.size_divisibility,
            device=self.device,
            # CPU threads also on a GPU: the views are built on the CPU
            workers=torch.get_num_threads(),
        )
        # a model handed over mid-training (drop path) runs in eval mode and gets each module's
        # mode back after; one already in eval mode (the usual case) is not walked twice
        # (nn.Module.eval + train on CropFormer HorNet-L's 715 modules: ~12 ms of every call)
        training = [m for m in self.model.modules() if m.training]
        if training:
            self.model.eval()
        dev_type = x.device.type
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        try:
            with torch.inference_mode():
                with torch.autocast(dev_type, dtype=amp or torch.float32, enabled=amp is not None):
                    out = self.model(
                        x,
                        aux=False,
                        view_chunk=self.view_chunk or None,
                        # only the image-level decoder choice reads the image-level masks
                        image_masks=self.options.decoder == "image_full_only",
                    )
                del x  # the input views are not needed by the post-processing
                results = postprocess_batch(out, geos, self.options)
        finally:
            for module in training:
                module.training = True
        sources = list(sources) if sources is not None else [None] * len(arrays)
        return [r.with_source(s, self.model_version) for r, s in zip(results, sources)]


def _version_name(path: Path) -> str:
    """Model version of a local model: its folder or file name; a training run's ``OUT/model``
    folder is named after the run (``OUT``), so two fine-tuned models do not share a version."""
    if path.name == "model" and path.parent.name:
        return path.parent.name
    return path.name
