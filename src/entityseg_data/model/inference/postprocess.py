"""From model outputs to non-overlapping entities: decoder choice, fusion, scores, selection.

Decoders (the paper's ablation, ``decoder=``):

* ``"batch_full_crops"`` (default, official): batch-level (3D) outputs, full view + all crops fused;
* ``"crops_only"``: batch-level outputs of the crop views only;
* ``"full_only"``: batch-level outputs of the full view only;
* ``"image_full_only"``: image-level (2D) outputs of the full view only.

Mask2Former (``ModelOutput.batch_level is None``): the single view, the top ``mask2former_topk``
queries by entity probability, ``logit > 0`` (REFERENCE.md 6.2).

Scores (``score_mode=``): ``"reference"`` reproduces the official score
``p_entity * mean(sigmoid(p))`` over the final mask, ``p`` the fused probability (a sigmoid
applied to a probability, so the mask term lies in (0.62, 0.73]); ``"calibrated"`` (default) uses
``p_entity * mean(p)``, a product of two probabilities. Entities with an empty final mask, below
``min_area`` or ``score_thresh`` are dropped; the rest get ids 1..N by descending score. The
official rule paints ALL queries before any filtering, so the pixels of a dropped entity become
0 (they are not handed to a lower-scoring query).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.errors import ConfigError
from entityseg_data.model.config import InferenceConfig
from entityseg_data.model.inference.disagreement import view_disagreement
from entityseg_data.model.inference.fusion import Painted, fuse_and_paint
from entityseg_data.model.inference.result import SegmentationResult
from entityseg_data.model.inference.views import ViewGeometry

if TYPE_CHECKING:
    import torch

    from entityseg_data.model.outputs import ModelOutput

#: The post-processing options are the model's :class:`InferenceConfig` (one class; this name is
#: kept for existing callers).
PostprocessOptions = InferenceConfig


def select_outputs(
    output: ModelOutput, index: int, geometry: ViewGeometry, decoder: str
) -> tuple[torch.Tensor, torch.Tensor, ViewGeometry, bool]:
    """``(class_logits (Q, 2), mask_logits (Q, V', Hp/4, Wp/4), geometry', mask2former)`` of
    image ``index`` of a batch ``ModelOutput`` for ``decoder``."""
    if output.batch_level is None or decoder == "image_full_only":
        lvl = output.image_level.final
        if lvl.pred_masks is None:
            raise ConfigError(
                f"decoder {decoder!r} needs the image-level masks: run the model with "
                "image_masks=True"
            )
        return (
            lvl.pred_logits[index, 0],
            lvl.pred_masks[index, 0][:, None],
            (geometry.select([0])),
            output.batch_level is None,
        )
    lvl = output.batch_level.final
    assert lvl.pred_masks is not None  # the batch level always has its final masks
    logits, masks = lvl.pred_logits[index], lvl.pred_masks[index]
    if decoder == "batch_full_crops":
        return logits, masks, geometry, False
    if decoder == "full_only":
        return logits, masks[:, :1], geometry.select([0]), False
    views = list(range(1, geometry.num_views))
    if not views:
        raise ConfigError("decoder 'crops_only' needs crop views")
    return logits, masks[:, 1:], geometry.select(views), False


def postprocess_single(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    geometry: ViewGeometry,
    options: PostprocessOptions = PostprocessOptions(),
    *,
    mask2former: bool = False,
    workers: int | None = None,
) -> SegmentationResult:
    """Entities of one image from its (Q, 2) class logits and (Q, V, Hp/4, Wp/4) mask logits.

    ``workers``: threads fusing tiles in parallel (default: torch's intra-op thread count)."""
    import torch

    class_logits = class_logits.detach().float()
    mask_logits = mask_logits.detach()
    scores_q = class_logits.softmax(-1)[:, 0]
    cand = torch.arange(scores_q.shape[0], device=scores_q.device)
    if mask2former:
        k = min(int(options.mask2former_topk), int(scores_q.shape[0]))
        cand = scores_q.topk(k, sorted=False).indices
    s_c = scores_q[cand]
    # official painting: ascending stable sort, later wins -> descending priority = its reverse
    order = torch.sort(s_c, stable=True).indices.flip(0)
    painted = fuse_and_paint(
        # CropFormer: every query is a candidate, cand = arange(Q): no (Q, V, h, w) copy
        mask_logits[cand] if mask2former else mask_logits,
        order.cpu().numpy(),
        geometry,
        threshold_logits=mask2former,
        tile=options.tile,
        tile_budget_mb=options.tile_budget_mb,
        workers=torch.get_num_threads() if workers is None else workers,
    )
    result = finalize(
        painted,
        s_c.cpu().numpy().astype(np.float32),
        cand.cpu().numpy().astype(np.int64),
        options,
    )
    if mask2former:
        return result
    vd = view_disagreement(mask_logits, geometry, result.query_index)
    return result if vd is None else dataclasses.replace(result, view_disagreement=vd)


def candidate_scores(
    painted: Painted, class_scores: np.ndarray, score_mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, mask_quality)`` per candidate: the final score in ``score_mode`` and the mean
    fused probability over the final mask (0 for an empty mask)."""
    areas = painted.areas.astype(np.float64)
    nonempty = areas > 0
    quality = np.where(nonempty, painted.sum_prob / np.maximum(areas, 1), 0.0)
    if score_mode == "reference":
        mask_term = painted.sum_sig_prob / (areas + 1e-6)
    else:
        mask_term = quality
    scores = np.where(nonempty, class_scores.astype(np.float64) * mask_term, 0.0)
    return scores.astype(np.float32), quality.astype(np.float32)


def finalize(
    painted: Painted,
    class_scores: np.ndarray,
    query_index: np.ndarray,
    options: PostprocessOptions,
) -> SegmentationResult:
    """Score, filter and renumber the painted candidates (ids 1..N by descending score)."""
    scores, quality = candidate_scores(painted, class_scores, options.score_mode)
    keep = (painted.areas >= max(1, int(options.min_area))) & (scores >= options.score_thresh)
    idx = np.nonzero(keep)[0]
    # descending score; ties: higher class score, then lower query index
    idx = idx[np.lexsort((query_index[idx], -class_scores[idx], -scores[idx]))]
    if options.max_entities is not None:
        idx = idx[: int(options.max_entities)]
    lut = np.zeros(len(scores) + 1, dtype=np.uint16)
    lut[idx + 1] = np.arange(1, len(idx) + 1, dtype=np.uint16)
    label_map = lut[painted.label_map]
    x0, y0, x1, y1 = painted.boxes[idx].T if len(idx) else np.zeros((4, 0), np.int64)
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], 1).astype(np.int64)
    return SegmentationResult(
        label_map=label_map,
        scores=scores[idx],
        class_scores=class_scores[idx].astype(np.float32),
        mask_quality=quality[idx],
        areas=painted.areas[idx].astype(np.int64),
        boxes=boxes,
        query_index=query_index[idx],
        score_mode=options.score_mode,
    )


def postprocess_batch(
    output: Any,
    geometries: Sequence[ViewGeometry],
    options: PostprocessOptions = PostprocessOptions(),
    *,
    workers: int | None = None,
) -> list[SegmentationResult]:
    """One :class:`SegmentationResult` per image of a batch ``ModelOutput`` (``workers``: see
    :func:`postprocess_single`)."""
    results = []
    for b, geo in enumerate(geometries):
        logits, masks, g, m2f = select_outputs(output, b, geo, options.decoder)
        hv = [max(h for h, _ in g.resized_hw), max(w for _, w in g.resized_hw)]
        h4, w4 = int(masks.shape[-2]), int(masks.shape[-1])
        if hv[0] > 4 * h4 or hv[1] > 4 * w4:
            raise ConfigError(f"image {b}: views larger than the padded mask logits")
        results.append(
            postprocess_single(logits, masks, g, options, mask2former=m2f, workers=workers)
        )
    return results
