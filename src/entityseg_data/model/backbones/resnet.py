"""ResNet-50/101 backbone (torchvision layout, no downloaded weights) for new training.

res2..res5 are torchvision's ``layer1..layer4`` (channels 256/512/1024/2048, strides 4..32).
Attribute names are torchvision's (``conv1``, ``bn1``, ``layer{i}``), so a torchvision ImageNet
state_dict stored locally can initialise it (``ResNetConfig.weights_path``, ``fc.*`` ignored).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from entityseg_data.errors import CheckpointError
from entityseg_data.model.backbones.common import Backbone
from entityseg_data.model.backbones.config import OUT_FEATURES, ResNetConfig

log = logging.getLogger(__name__)


class ResNet(Backbone):
    """``forward(x (N,3,H,W)) -> {"res2".."res5"}``; sizes follow the strided convs (ceil-ish
    for odd sizes, exact for multiples of 32)."""

    def __init__(self, cfg: ResNetConfig) -> None:
        from torchvision.models import resnet50, resnet101
        from torchvision.ops.misc import FrozenBatchNorm2d

        super().__init__(cfg.out_channels)
        self.cfg = cfg
        norm = FrozenBatchNorm2d if cfg.norm == "frozen_bn" else nn.BatchNorm2d
        factory = {50: resnet50, 101: resnet101}[cfg.depth]
        net = factory(weights=None, norm_layer=norm)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2 = net.layer1, net.layer2
        self.layer3, self.layer4 = net.layer3, net.layer4
        if cfg.weights_path:
            self.load_torchvision_weights(Path(cfg.weights_path))
        self.freeze(cfg.freeze_at)

    def stages(self) -> list[nn.Module]:
        """[stem, layer1, layer2, layer3, layer4]."""
        stem = nn.ModuleList([self.conv1, self.bn1])
        return [stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients for the first ``freeze_at`` stages (1 = stem, 2 = stem + res2, ...)."""
        for stage in self.stages()[: max(0, freeze_at)]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def load_torchvision_weights(self, path: Path) -> None:
        """Load a local torchvision-format ResNet state_dict (``weights_only=True``)."""
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: ResNet weights file not found") from None
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot read ResNet weights ({exc})") from None
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            obj = obj["model"]
        elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path}: expected a state_dict, got {type(obj).__name__}")
        sd = {k: v for k, v in obj.items() if not k.startswith("fc.")}
        own = self.state_dict()
        for key, value in sd.items():
            target = own.get(key)
            if target is None:
                if key.endswith("num_batches_tracked"):
                    continue
                raise CheckpointError(
                    f"{path}: unexpected key {key!r} for a ResNet-{self.cfg.depth}"
                )
            if tuple(value.shape) != tuple(target.shape):
                raise CheckpointError(
                    f"{path}: {key} has shape {tuple(value.shape)}, the ResNet-{self.cfg.depth} "
                    f"expects {tuple(target.shape)}"
                )
        missing = sorted(k for k in own if k not in sd and not k.endswith("num_batches_tracked"))
        if missing:
            raise CheckpointError(f"{path}: missing key {missing[0]!r} ({len(missing)} missing)")
        self.load_state_dict(sd, strict=False)
        log.info("loaded ResNet-%d weights from %s", self.cfg.depth, path)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(f"ResNet expects (N, 3, H, W), got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs: dict[str, torch.Tensor] = {}
        for name, layer in zip(
            OUT_FEATURES, (self.layer1, self.layer2, self.layer3, self.layer4), strict=True
        ):
            x = layer(x)
            outs[name] = x
        return outs
