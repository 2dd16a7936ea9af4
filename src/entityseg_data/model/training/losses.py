"""CropFormer / Mask2Former set criterion (REFERENCE.md 5.1-5.3).

For every prediction head (final + aux, deep supervision) the criterion matches queries to
entities and computes

* ``ce``: cross-entropy over all queries (unmatched -> no-object, class weights [1, 0.1],
  weighted mean);
* ``mask``: importance-sampled BCE (mean over points, summed over masks) / ``num_masks``;
* ``dice``: dice loss summed over masks / ``num_masks``.

Image-level (2D) heads are matched per view against that view's valid entities; ``num_masks`` is
the number of valid (entity, view) pairs. Batch-level (3D) heads are matched per image over all
views jointly; their mask losses are computed per view (N_matched * T masks) but ``num_masks`` is N
per image, NOT multiplied by T. Both counts are all-reduced over processes, divided by the world
size and clamped to >= 1. CropFormer's 2D terms are multiplied by ``image_level_weight`` (0.5);
Mask2Former (no batch-level output) has only 2D terms at weight 1.

Random points come from one ``torch.Generator`` per image (seeded by the sample), consumed in a
fixed per-image order, so the losses of an image do not depend on the rest of the batch or on the
number of processes (which makes multi-process gradients equal to single-process ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from entityseg_data.model.outputs import LevelPrediction, ModelOutput
from entityseg_data.model.training.config import LossConfig
from entityseg_data.model.training.matcher import HungarianMatcher, ViewHungarianMatcher
from entityseg_data.model.training.point_sample import (
    point_sample,
    sample_unpadded,
    uncertain_point_coords,
)


@dataclass
class ImageTarget:
    """Ground truth of one image over its V views.

    ``masks[v]``: (N, h_v, w_v) bool, view v's masks at the view's (unpadded) resolution; the SAME
    N entities in the same order in every view. ``valid``: (N, V) bool, entity present in view v
    (non-empty box and mask).
    """

    masks: list[Tensor]
    valid: Tensor

    @property
    def num_entities(self) -> int:
        return int(self.valid.shape[0])

    def to(self, device: torch.device | str) -> ImageTarget:
        return ImageTarget(
            masks=[m.to(device, non_blocking=True) for m in self.masks],
            valid=self.valid.to(device),
        )


def _masks_of(lp: LevelPrediction) -> Tensor:
    """The mask logits of a head; training forwards always compute them."""
    if lp.pred_masks is None:
        raise ValueError("a head without mask logits (forward with image_masks=False) in a loss")
    return lp.pred_masks


def reduce_num_masks(count: float, device: torch.device) -> float:
    """All-reduce a local mask count, divide by the world size, clamp to >= 1 (REFERENCE 5.3)."""
    value = torch.tensor([float(count)], dtype=torch.float64, device=device)
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(value)
        world = torch.distributed.get_world_size()
    return max(float(value.item()) / world, 1.0)


def sigmoid_ce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Sum over masks of the mean-over-points BCE. logits, labels: (M, P)."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum()


def dice_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Sum over masks of ``1 - (2 s.t + 1) / (sum s + sum t + 1)``. logits, labels: (M, P)."""
    s = logits.sigmoid()
    num = 2 * (s * labels).sum(-1)
    den = s.sum(-1) + labels.sum(-1)
    return (1 - (num + 1) / (den + 1)).sum()


class _MatcherWeights(TypedDict):
    """The matchers' keyword arguments (from LossConfig)."""

    class_weight: float
    mask_weight: float
    dice_weight: float
    num_points: int


class SetCriterion:
    """Matching + losses for a :class:`ModelOutput` (duck-typed, see MODEL_CONTRACT.md).

    Call ``criterion(outputs, targets, pad_hw, generators)``; returns a dict of WEIGHTED loss terms
    (``loss_ce_2d``, ``loss_mask_2d``, ``loss_dice_2d``, ``loss_ce_0_2d`` ... ``loss_dice_8_3d``)
    whose sum is the training loss.
    """

    def __init__(self, *, config: LossConfig) -> None:
        self.cfg = config
        kw = _MatcherWeights(
            class_weight=config.class_weight,
            mask_weight=config.mask_weight,
            dice_weight=config.dice_weight,
            num_points=config.num_points,
        )
        self.matcher = HungarianMatcher(**kw)
        self.view_matcher = ViewHungarianMatcher(**kw)

    # ---------------------------------------------------------------------------------------
    def __call__(
        self,
        outputs: ModelOutput,
        targets: Sequence[ImageTarget],
        pad_hw: tuple[int, int],
        generators: Sequence[torch.Generator | None],
    ) -> dict[str, Tensor]:
        cfg = self.cfg
        device = outputs.image_level.final.pred_logits.device
        batch_level = getattr(outputs, "batch_level", None)
        n2d = reduce_num_masks(sum(int(t.valid.sum()) for t in targets), device)
        n3d = reduce_num_masks(sum(t.num_entities for t in targets), device)
        w2d = cfg.image_level_weight if batch_level is not None else 1.0
        targets_3d = [self._targets_3d(t) for t in targets] if batch_level is not None else []
        out: dict[str, Tensor] = {}
        heads = [("", outputs.image_level.final)]
        heads3 = [("", batch_level.final)] if batch_level is not None else []
        if cfg.deep_supervision:
            heads += [(f"_{i}", lp) for i, lp in enumerate(outputs.image_level.aux)]
            if batch_level is not None:
                heads3 += [(f"_{i}", lp) for i, lp in enumerate(batch_level.aux)]
        # per-image generator consumption order: all 2D heads, then all 3D heads
        for suffix, lp in heads:
            for name, value in self.loss_2d(lp, targets, pad_hw, generators, n2d).items():
                out[f"loss_{name}{suffix}_2d"] = value * w2d * self._weight(name)
        for suffix, lp in heads3:
            for name, value in self.loss_3d(lp, targets_3d, pad_hw, generators, n3d).items():
                out[f"loss_{name}{suffix}_3d"] = value * self._weight(name)
        return out

    def _weight(self, name: str) -> float:
        return {
            "ce": self.cfg.class_weight,
            "mask": self.cfg.mask_weight,
            "dice": self.cfg.dice_weight,
        }[name]

    def _targets_3d(self, t: ImageTarget) -> list[Tensor]:
        """Per-view (N, h, w) masks with entities absent from a view zeroed (REFERENCE 5.1)."""
        valid = t.valid
        keep = slice(None) if self.cfg.keep_invalid_3d else valid.any(1)
        return [(m & valid[:, v, None, None])[keep] for v, m in enumerate(t.masks)]

    def _ce(self, logits: Tensor, matched: list[Tensor]) -> Tensor:
        """Weighted CE: logits (M, Q, 2); matched[i] = matched query indices of row i."""
        target = torch.ones(logits.shape[:2], dtype=torch.int64, device=logits.device)
        for i, rows in enumerate(matched):
            target[i, rows.to(logits.device)] = 0
        weight = torch.tensor([1.0, self.cfg.no_object_weight], device=logits.device)
        return F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), weight=weight)

    def _mask_terms(
        self,
        pred: Tensor,
        gt: Tensor,
        pad_hw: tuple[int, int],
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """Summed (BCE, dice) of matched pairs: pred (k, h/4, w/4) logits, gt (k, h, w)."""
        cfg = self.cfg
        pred = pred[:, None].float()
        coords = uncertain_point_coords(
            pred, cfg.num_points, cfg.oversample_ratio, cfg.importance_sample_ratio, generator
        )
        with torch.no_grad():
            labels = sample_unpadded(gt, coords, pad_hw)
        logits = point_sample(pred, coords)[:, 0]
        return sigmoid_ce_loss(logits, labels), dice_loss(logits, labels)

    # ---------------------------------------------------------------------------------------
    def loss_2d(
        self,
        lp: LevelPrediction,
        targets: Sequence[ImageTarget],
        pad_hw: tuple[int, int],
        generators: Sequence[torch.Generator | None],
        num_masks: float,
    ) -> dict[str, Tensor]:
        """Unweighted 2D terms of one head: pred_logits (B, V, Q, 2), pred_masks (B, V, Q, h, w)."""
        logits, masks = lp.pred_logits, _masks_of(lp)
        b, v = logits.shape[:2]
        matched: list[Tensor] = []
        loss_mask = masks.sum() * 0.0
        loss_dice = masks.sum() * 0.0
        for i in range(b):
            tgt = targets[i]
            for t in range(v):
                gt = tgt.masks[t][tgt.valid[:, t]]
                rows, cols = self.matcher.match(
                    logits[i, t], masks[i, t], gt, pad_hw, generators[i]
                )
                matched.append(rows)
                if len(rows):
                    dev = masks.device
                    bce, dice = self._mask_terms(
                        masks[i, t][rows.to(dev)], gt[cols.to(gt.device)], pad_hw, generators[i]
                    )
                    loss_mask = loss_mask + bce
                    loss_dice = loss_dice + dice
        return {
            "ce": self._ce(logits.flatten(0, 1), matched),
            "mask": loss_mask / num_masks,
            "dice": loss_dice / num_masks,
        }

    def loss_3d(
        self,
        lp: LevelPrediction,
        targets_3d: Sequence[list[Tensor]],
        pad_hw: tuple[int, int],
        generators: Sequence[torch.Generator | None],
        num_masks: float,
    ) -> dict[str, Tensor]:
        """Unweighted 3D terms of one head: pred_logits (B, Q, 2), pred_masks (B, Q, V, h, w)."""
        logits, masks = lp.pred_logits, _masks_of(lp)
        b, _, v = masks.shape[:3]
        matched: list[Tensor] = []
        loss_mask = masks.sum() * 0.0
        loss_dice = masks.sum() * 0.0
        for i in range(b):
            views = targets_3d[i]
            rows, cols = self.view_matcher.match(logits[i], masks[i], views, pad_hw, generators[i])
            matched.append(rows)
            if len(rows):
                sel = masks[i][rows.to(masks.device)]  # (k, V, h, w)
                for t in range(v):
                    bce, dice = self._mask_terms(
                        sel[:, t], views[t][cols.to(views[t].device)], pad_hw, generators[i]
                    )
                    loss_mask = loss_mask + bce
                    loss_dice = loss_dice + dice
        return {
            "ce": self._ce(logits, matched),
            "mask": loss_mask / num_masks,
            "dice": loss_dice / num_masks,
        }


def total_loss(terms: dict[str, Tensor]) -> Tensor:
    """Sum of the weighted loss terms."""
    return torch.stack([v.float() for v in terms.values()]).sum()
