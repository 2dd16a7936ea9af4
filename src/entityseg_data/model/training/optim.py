"""AdamW parameter groups and the poly learning-rate schedule (REFERENCE.md 5.4).

Official parameter rules (Mask2Former ``build_optimizer``): lr x ``backbone_multiplier`` for
parameters of modules whose name contains ``backbone``; weight decay 0 for parameters of torch
norm modules, of ``nn.Embedding`` and for Swin's ``relative_position_bias_table`` /
``absolute_pos_embed``; everything else (biases included) gets ``weight_decay``. The official
rules therefore DO decay
HorNet's custom LayerNorm, layer-scale ``gamma``, ``complex_weight`` and the pixel decoder's bare
``level_embed`` Parameter (REFERENCE 8.14); ``decay_policy="extended"`` exempts those too.
Parameters with equal (lr multiplier, weight decay) share one group (same update as per-parameter
groups, far fewer groups).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from entityseg_data.model.training.config import OptimConfig

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
SWIN_NO_DECAY = ("relative_position_bias_table", "absolute_pos_embed")
EXTENDED_NO_DECAY = ("level_embed", "complex_weight", "gamma")


def param_rules(model: nn.Module, cfg: OptimConfig) -> list[tuple[str, nn.Parameter, float, float]]:
    """``(name, parameter, lr multiplier, weight decay)`` for every trainable parameter."""
    out = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            lr_mult = cfg.backbone_multiplier if "backbone" in module_name else 1.0
            wd = cfg.weight_decay
            if any(k in pname for k in SWIN_NO_DECAY):
                wd = 0.0
            if isinstance(module, NORM_TYPES):
                wd = cfg.weight_decay_norm
            if isinstance(module, nn.Embedding):
                wd = cfg.weight_decay_embed
            if cfg.decay_policy == "extended" and (
                type(module).__name__.endswith("Norm")
                or any(pname.startswith(k) for k in EXTENDED_NO_DECAY)
            ):
                wd = 0.0
            full = f"{module_name}.{pname}" if module_name else pname
            out.append((full, p, lr_mult, wd))
    return out


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over groups keyed by (lr multiplier, weight decay); each group records its
    ``lr_mult`` so the schedule scales ``cfg.lr`` per group."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for _, p, lr_mult, wd in param_rules(model, cfg):
        groups.setdefault((lr_mult, wd), []).append(p)
    param_groups = [
        {"params": ps, "lr": cfg.lr * m, "weight_decay": wd, "lr_mult": m}
        for (m, wd), ps in sorted(groups.items())
    ]
    return torch.optim.AdamW(
        param_groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps
    )


def poly_factor(iteration: int, max_iter: int, power: float, warmup_iters: int = 0) -> float:
    """``(1 - it / max_iter) ** power`` (0 from ``max_iter`` on), times a linear warmup factor."""
    if iteration >= max_iter:
        return 0.0
    factor = math.pow(1.0 - iteration / max_iter, power)
    if warmup_iters and iteration < warmup_iters:
        factor *= (iteration + 1) / warmup_iters
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_iter: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly schedule (power ``cfg.poly_power``) stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: poly_factor(it, max_iter, cfg.poly_power, cfg.warmup_iters)
    )
