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
    their score and order. Works on the columns each mask occupies, never on full dense stacks
    of masks (one (W, H) int32 label map)."""
    n = len(pred.rles)
    if n < 2 or overlap_pixels(pred) == 0:
        return pred
    lm_t = np.zeros((width, height), np.int32)
    for i in sort_detections(pred.scores):
        r = rle_utils.runs(pred.rles[i])
        x0, x1 = R.column_range(r, height)
        if x1 <= x0:
            continue
        block = R.decode_columns(r, height, x0, x1)
        region = lm_t[x0:x1]
        region[(block != 0) & (region == 0)] = i + 1
    rles = rle_utils.flat_label_map_to_rles(lm_t.reshape(-1), height, width, range(1, n + 1))
    keep = [i for i in range(n) if rle_utils.area(rles[i + 1]) > 0]
    return PredImage(
        rles=tuple(rles[i + 1] for i in keep),
        scores=np.asarray(pred.scores, dtype=np.float64)[keep],
    )
