"""Hungarian matching of predicted queries to ground-truth entities (REFERENCE.md 5.2).

* :class:`HungarianMatcher` matches one view: the 2D (image-level) matcher of Mask2Former.
* :class:`ViewHungarianMatcher` matches one image over all its T views jointly (CropFormer's
  batch-level matcher): the same P random points are reused in every view, so each query and each
  entity becomes a T*P vector and BCE/dice costs are computed over the concatenation.

Costs are computed in float32 with autocast disabled, then sanitised (NaN/inf replaced by large
finite values) before ``scipy.optimize.linear_sum_assignment``. Everything is class-agnostic:
logits are (Q, 2) = [entity, no-object] and every target has class 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from entityseg_data.model.training.point_sample import point_sample, random_coords, sample_unpadded

BIG = 1e8


def bce_cost(pred: Tensor, tgt: Tensor) -> Tensor:
    """Pairwise mean BCE-with-logits: pred (Q, P) logits, tgt (N, P) in [0, 1] -> (Q, N)."""
    p = pred.shape[1]
    pos = torch.nn.functional.binary_cross_entropy_with_logits(
        pred, torch.ones_like(pred), reduction="none"
    )
    neg = torch.nn.functional.binary_cross_entropy_with_logits(
        pred, torch.zeros_like(pred), reduction="none"
    )
    return (pos @ tgt.T + neg @ (1 - tgt).T) / p


def dice_cost(pred: Tensor, tgt: Tensor) -> Tensor:
    """Pairwise dice cost ``1 - (2 s.t + 1) / (sum s + sum t + 1)``, s = sigmoid(pred) -> (Q, N)."""
    s = pred.sigmoid()
    num = 2 * (s @ tgt.T)
    den = s.sum(-1)[:, None] + tgt.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def class_cost(logits: Tensor, num_targets: int) -> Tensor:
    """``-softmax(logits)[:, 0]`` broadcast to (Q, N) (every target is the entity class 0)."""
    prob = logits.softmax(-1)[:, 0]
    return -prob[:, None].expand(-1, num_targets)


def sanitize(cost: Tensor) -> Tensor:
    """Replace NaN and +-inf by large finite values so the assignment always succeeds."""
    return torch.nan_to_num(cost, nan=BIG, posinf=BIG, neginf=-BIG).clamp(-BIG, BIG)


def assign(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Optimal assignment of a (Q, N) cost matrix -> (query indices, target indices), int64."""
    c = sanitize(cost.detach().float()).cpu().numpy()
    rows, cols = linear_sum_assignment(c)
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


class _Base:
    def __init__(
        self,
        *,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        num_points: int = 12544,
    ) -> None:
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.num_points = num_points

    def _total(self, logits: Tensor, pred_pts: Tensor, tgt_pts: Tensor) -> Tensor:
        n = tgt_pts.shape[0]
        return (
            self.mask_weight * bce_cost(pred_pts, tgt_pts)
            + self.class_weight * class_cost(logits, n)
            + self.dice_weight * dice_cost(pred_pts, tgt_pts)
        )


class HungarianMatcher(_Base):
    """Image-level matcher of one view."""

    @torch.no_grad()
    def cost_matrix(
        self,
        logits: Tensor,
        masks: Tensor,
        targets: Tensor,
        pad_hw: tuple[int, int],
        coords: Tensor,
    ) -> Tensor:
        """(Q, N) cost. logits (Q, 2); masks (Q, Hp/4, Wp/4) logits; targets (N, h, w) in the
        top-left of the (Hp, Wp) padded frame; coords (P, 2) normalised padded-frame points."""
        with torch.autocast(device_type=masks.device.type, enabled=False):
            q = masks.shape[0]
            pred = point_sample(masks[:, None].float(), coords[None].expand(q, -1, -1))[:, 0]
            tgt = sample_unpadded(targets, coords, pad_hw)
            return self._total(logits.float(), pred, tgt)

    @torch.no_grad()
    def match(
        self,
        logits: Tensor,
        masks: Tensor,
        targets: Tensor,
        pad_hw: tuple[int, int],
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Matched (query indices, target indices) for one view (see :meth:`cost_matrix`)."""
        if targets.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return empty, empty
        coords = random_coords(self.num_points, generator, masks.device)
        return assign(self.cost_matrix(logits, masks, targets, pad_hw, coords))


class ViewHungarianMatcher(_Base):
    """Batch-level matcher of one image over its T views jointly."""

    @torch.no_grad()
    def cost_matrix(
        self,
        logits: Tensor,
        masks: Tensor,
        targets: Sequence[Tensor],
        pad_hw: tuple[int, int],
        coords: Tensor,
    ) -> Tensor:
        """(Q, N) cost. logits (Q, 2); masks (Q, T, Hp/4, Wp/4); targets: T tensors (N, h_t, w_t)
        (view t's masks, zeros where the entity is absent); coords (P, 2) shared by all views."""
        with torch.autocast(device_type=masks.device.type, enabled=False):
            q, t = masks.shape[:2]
            pred = point_sample(
                masks.float().flatten(0, 1)[:, None], coords[None].expand(q * t, -1, -1)
            )[:, 0].reshape(q, t * coords.shape[0])
            tgt = torch.cat([sample_unpadded(m, coords, pad_hw) for m in targets], dim=1)
            return self._total(logits.float(), pred, tgt)

    @torch.no_grad()
    def match(
        self,
        logits: Tensor,
        masks: Tensor,
        targets: Sequence[Tensor],
        pad_hw: tuple[int, int],
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Matched (query indices, target indices) for one image over all views."""
        if len(targets) == 0 or targets[0].shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return empty, empty
        coords = random_coords(self.num_points, generator, masks.device)
        return assign(self.cost_matrix(logits, masks, targets, pad_hw, coords))
