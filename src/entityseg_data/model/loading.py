"""Build models and load official or converted checkpoints.

``build_model(cfg)`` -> a randomly initialised :class:`CropFormer` (train mode).
``load_checkpoint(path_or_dir, preset=..., config=...)`` -> (model in eval mode, cfg, report).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from entityseg_data.errors import CheckpointError
from entityseg_data.model.config import ModelConfig

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """While active, every parameter registered by a module is moved to the meta device (buffers
    stay real, so deterministic ones such as Swin's relative_position_index keep their values)."""
    original = nn.Module.register_parameter
    # a meta parameter holds no values to draw: torch's meta normal_ / uniform_ are Python
    # decompositions (normal_'s first call imports torch._dynamo, ~2 CPU s per process; uniform_,
    # behind the Linear / conv / xavier / trunc_normal initialisations, was ~45 % of a meta
    # Swin-L build), so both return a meta tensor untouched
    inits = {name: getattr(torch.Tensor, name) for name in ("normal_", "uniform_")}

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    def skip_on_meta(init: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def patched(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return self if self.is_meta else init(self, *args, **kwargs)

        return patched

    # patching torch methods for the duration (typeshed: methods are not assignable)
    nn.Module.register_parameter = register  # type: ignore[method-assign, assignment]
    for name, init in inits.items():
        setattr(torch.Tensor, name, skip_on_meta(init))
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]
        for name, init in inits.items():
            setattr(torch.Tensor, name, init)


def build_model(cfg: ModelConfig, *, device: str | torch.device | None = None) -> nn.Module:
    """A randomly initialised CropFormer / Mask2Former for ``cfg``, in train mode.

    ``device="meta"`` allocates no parameter memory (parameters on the meta device, buffers on the
    CPU): use it to check shapes or to load weights with ``load_state_dict(..., assign=True)``.
    """
    if device is not None and torch.device(device).type == "meta":
        with _parameters_on_meta():
            return build_model(cfg, device="cpu")
    from entityseg_data.model.backbones import build_backbone
    from entityseg_data.model.cropformer import CropFormer, MaskFormerHead
    from entityseg_data.model.decoder import MultiScaleMaskedTransformerDecoder
    from entityseg_data.model.pixel_decoder import MSDeformAttnPixelDecoder

    target = torch.device(device) if device is not None else torch.device("cpu")
    # a device context sends every torch call of the construction through a Python
    # TorchFunctionMode (~10 % of a build): only when factories would otherwise land elsewhere
    same = target == torch.get_default_device()
    ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext() if same else target
    with ctx:
        backbone = build_backbone(cfg.backbone)
        ch = backbone.out_channels
        pixel_decoder = MSDeformAttnPixelDecoder(
            in_channels=(ch["res2"], ch["res3"], ch["res4"], ch["res5"]),
            conv_dim=cfg.conv_dim,
            mask_dim=cfg.mask_dim,
            enc_layers=cfg.enc_layers,
            enc_nheads=cfg.nheads,
            enc_ffn_dim=cfg.enc_ffn_dim,
            enc_n_points=cfg.enc_n_points,
            dropout=cfg.dropout,
        )
        predictor = MultiScaleMaskedTransformerDecoder(
            in_channels=cfg.conv_dim,
            mask_dim=cfg.mask_dim,
            num_queries=cfg.num_queries,
            hidden_dim=cfg.hidden_dim,
            nheads=cfg.nheads,
            dim_feedforward=cfg.dim_feedforward,
            dec_layers=cfg.dec_layers,
            num_classes=cfg.num_classes,
            batch_level=cfg.batch_level,
            assoc_layers=cfg.assoc_layers,
            assoc_nheads=cfg.assoc_nheads,
            assoc_dim_feedforward=cfg.assoc_dim_feedforward,
        )
        return CropFormer(
            config=cfg,
            backbone=backbone,
            sem_seg_head=MaskFormerHead(pixel_decoder=pixel_decoder, predictor=predictor),
        )


def load_checkpoint(
    path_or_dir: str | Path,
    *,
    preset: str | None = None,
    config: ModelConfig | str | Path | None = None,
    trust_pickle: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """Load a model from an official checkpoint file or a converted folder.

    Args:
        path_or_dir: a converted folder (``model.safetensors`` + ``config.json``) or an official
            ``.pth`` / ``.pkl`` / ``.npz`` file.
        preset: preset name describing an official file's architecture.
        config: a :class:`ModelConfig`, or the path of an official detectron2 YAML / our
            ``config.json``. Exactly one of ``preset`` / ``config`` for official files; for a
            converted folder both are optional (they are checked against the stored config).
        trust_pickle: allow unpickling arbitrary objects (only for files you trust).

    Returns:
        (model in eval mode, its config, the conversion report dict).
    """
    from entityseg_data.model.convert import (
        check_finite,
        check_state_dict,
        convert_state_dict,
        read_converted,
        resolve_config,
    )

    path = Path(path_or_dir)
    if path.is_dir():
        state, cfg, report = read_converted(path)
        if preset is not None or config is not None:
            want = resolve_config(preset=preset, config=config)
            if want != cfg:
                raise CheckpointError(
                    f"{path}: the converted model's config.json differs from the requested "
                    f"{'preset ' + preset if preset else 'config'}"
                )
    else:
        cfg = resolve_config(preset=preset, config=config)
        state, report = convert_state_dict(path, cfg, trust_pickle=trust_pickle)
    model = build_model(cfg, device="meta")
    check_state_dict(state, model.state_dict(), source=str(path))
    if path.is_dir():  # (an official file was checked while converting)
        check_finite(state, source=str(path))
    model.load_state_dict(state, strict=True, assign=True)
    model.to(device)
    model.eval()
    return model, cfg, report
