"""All entities' COCO RLEs from a label map in one pass.

:func:`entityseg_data.masks.rle.label_map_to_rles` compares the whole map with every id (N passes
over H x W). Here the map is flattened once in column-major order (COCO's order), cut into runs
of equal value, and the runs are grouped by id; each id's run list becomes its uncompressed RLE
counts, which pycocotools compresses. Cost: one pass over the pixels plus work proportional to
the number of runs (the entity boundaries), whatever the number of entities.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pycocotools import mask as mask_utils

from entityseg_data.errors import DataError
from entityseg_data.masks.rle import RLE


def label_map_to_rles_fast(
    label_map: np.ndarray, ids: Iterable[int] | None = None
) -> dict[int, RLE]:
    """Compressed RLE (text counts) of each nonzero id of an (H, W) integer label map; ids
    without pixels get an empty RLE. Same output as ``masks.rle.label_map_to_rles``."""
    if label_map.ndim != 2:
        raise DataError(f"label map must be (H, W), got shape {label_map.shape}")
    h, w = label_map.shape
    flat = np.ascontiguousarray(label_map.T).ravel()  # column-major order of the map
    n = flat.size
    if n == 0:
        return {int(i): _compress([0], h, w) for i in (ids or [])}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [n]]).astype(np.int64)
    values = flat[starts]
    fg = values != 0
    starts, ends, values = starts[fg], ends[fg], values[fg]
    order = np.argsort(values, kind="stable")
    starts, ends, values = starts[order], ends[order], values[order]
    uniq, first = np.unique(values, return_index=True)
    bounds = dict(zip(uniq.tolist(), zip(first.tolist(), [*first[1:].tolist(), len(values)])))
    wanted = [int(i) for i in uniq.tolist()] if ids is None else [int(i) for i in ids]
    out: dict[int, RLE] = {}
    for i in wanted:
        if i not in bounds:
            out[i] = _compress([n], h, w)
            continue
        a, b = bounds[i]
        s, e = starts[a:b], ends[a:b]
        counts = np.empty(2 * len(s) + 1, dtype=np.int64)
        counts[0] = s[0]
        counts[1:-1:2] = e - s
        counts[2:-1:2] = s[1:] - e[:-1]
        counts[-1] = n - e[-1]
        if counts[-1] == 0:  # pycocotools writes no trailing empty run
            counts = counts[:-1]
        out[i] = _compress(counts.tolist(), h, w)
    return out


def _compress(counts: list[int], h: int, w: int) -> RLE:
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    c = rle["counts"]
    return {"size": [h, w], "counts": c.decode("ascii") if isinstance(c, bytes) else c}
