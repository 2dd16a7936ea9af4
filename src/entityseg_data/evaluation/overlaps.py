"""Check and remove overlaps between predicted masks (AP^e needs non-overlapping predictions)."""

from __future__ import annotations

import numpy as np

from entityseg_data.evaluation.image_eval import PredImage
from entityseg_data.evaluation.matching import sort_detections
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks import runs as R


def overlap_pixels(pred: PredImage) -> int:
    """Pixels covered by more than one prediction (a pixel covered k times counts k - 1)."""
    return rle_utils.overlap_pixels(list(pred.rles)) if len(pred.rles) > 1 else 0


def fix_overlaps(pred: PredImage, height: int, width: int) -> PredImage:
    """Make predictions disjoint by score: each pixel goes to the highest-scoring prediction
    covering it (ties: the earlier one). Predictions left empty are dropped; the others keep
    their score and order. Painted from the masks' runs by the mask core (one flat int32 label
    map, never dense stacks of masks)."""
    n = len(pred.rles)
    if n < 2 or overlap_pixels(pred) == 0:
        return pred
    # lowest score first, later wins: the highest-scoring prediction keeps a shared pixel
    # (equal scores: the earlier one, as sort_detections orders them)
    order = sort_detections(pred.scores)[::-1]
    flat = R.paint(
        [rle_utils.runs(pred.rles[i]) for i in order],
        height * width,
        policy="later_wins",
        values=order + 1,
        dtype=np.int32,
    )
    rles = rle_utils.flat_label_map_to_rles(flat, height, width, range(1, n + 1))
    keep = [i for i in range(n) if rle_utils.area(rles[i + 1]) > 0]
    return PredImage(
        rles=tuple(rles[i + 1] for i in keep),
        scores=np.asarray(pred.scores, dtype=np.float64)[keep],
    )
