"""COCO run-length encoding: the canonical mask store of the toolkit.

Masks are (H, W) arrays (bool or uint8, 1 = inside). RLEs are pycocotools dicts
``{"size": [H, W], "counts": str}`` (compressed, ``counts`` as text so they serialise to JSON).

pycocotools wants column-major (Fortran) uint8 input; copying a C-ordered 12 MP mask to Fortran
order costs more than encoding it. :func:`label_map_to_rles` therefore transposes a label map
once and encodes every entity from its column-major runs in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from entityseg_data.errors import DataError

RLE = dict[str, Any]


def _to_text(rle: dict[str, Any]) -> RLE:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def _to_bytes(rle: RLE) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": list(rle["size"]), "counts": counts}


def encode(mask: np.ndarray) -> RLE:
    """Compressed RLE of one (H, W) mask (any dtype; nonzero = inside)."""
    if mask.ndim != 2:
        raise DataError(f"encode expects an (H, W) mask, got shape {mask.shape}")
    m = mask if mask.dtype == np.uint8 else (mask != 0).astype(np.uint8)
    if not m.flags.f_contiguous:
        m = np.asfortranarray(m)
    return _to_text(mask_utils.encode(m))


def encode_fortran_view(mask_t: np.ndarray) -> RLE:
    """Encode a mask given as its C-contiguous transpose (W, H) (no copy is made)."""
    m = (
        mask_t
        if mask_t.dtype == np.uint8
        else mask_t.view(np.uint8)
        if mask_t.dtype == bool
        else (mask_t != 0).astype(np.uint8)
    )
    return _to_text(mask_utils.encode(m.T))


def decode(rle: RLE) -> np.ndarray:
    """(H, W) uint8 mask (0/1) of a compressed or uncompressed RLE."""
    return np.ascontiguousarray(mask_utils.decode(to_compressed(rle)))


def decode_many(rles: Sequence[RLE]) -> np.ndarray:
    """(N, H, W) uint8 masks of RLEs that share one size."""
    if not rles:
        raise DataError("decode_many needs at least one RLE")
    out = mask_utils.decode([_to_bytes(to_compressed(r)) for r in rles])  # (H, W, N) Fortran
    return np.ascontiguousarray(np.moveaxis(out, -1, 0))


def to_compressed(segm: Any, height: int | None = None, width: int | None = None) -> RLE:
    """Normalise a COCO segmentation (compressed RLE, uncompressed RLE with a counts list, or
    polygons, which need ``height``/``width``) to a compressed RLE."""
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise DataError(f"RLE dict needs 'size' and 'counts', got keys {sorted(segm)}")
        if isinstance(segm["counts"], list):
            h, w = segm["size"]
            return _to_text(mask_utils.frPyObjects(segm, int(h), int(w)))
        return _to_text(segm)
    if isinstance(segm, list):
        if height is None or width is None:
            raise DataError("polygon segmentation needs the image height and width")
        if not segm:
            return encode(np.zeros((height, width), np.uint8))
        polys = [p for p in segm if len(p) >= 6]
        if not polys:
            return encode(np.zeros((height, width), np.uint8))
        rles = mask_utils.frPyObjects(polys, int(height), int(width))
        return _to_text(mask_utils.merge(rles))
    raise DataError(f"unsupported segmentation of type {type(segm).__name__}")


def area(rle: RLE) -> int:
    return int(mask_utils.area(_to_bytes(rle)))


def areas(rles: Sequence[RLE]) -> np.ndarray:
    if not rles:
        return np.zeros(0, np.int64)
    return mask_utils.area([_to_bytes(r) for r in rles]).astype(np.int64)


def bbox(rle: RLE) -> list[float]:
    """[x, y, w, h] in pixels (COCO convention; zeros for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(_to_bytes(rle))]


def iou_matrix(
    dt: Sequence[RLE], gt: Sequence[RLE], iscrowd: Sequence[int] | None = None
) -> np.ndarray:
    """(len(dt), len(gt)) mask IoU; crowd GT uses COCO's intersection / dt-area."""
    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    crowd = list(iscrowd) if iscrowd is not None else [0] * len(gt)
    return np.asarray(mask_utils.iou([_to_bytes(r) for r in dt], [_to_bytes(r) for r in gt], crowd))


def merge(rles: Sequence[RLE], intersect: bool = False) -> RLE:
    return _to_text(mask_utils.merge([_to_bytes(r) for r in rles], intersect=intersect))


def size(rle: RLE) -> tuple[int, int]:
    """(H, W) of an RLE."""
    return int(rle["size"][0]), int(rle["size"][1])


def check_size(rle: RLE, height: int, width: int, where: str = "") -> None:
    """Raise DataError naming ``where`` when the RLE size differs from (height, width)."""
    h, w = size(rle)
    if (h, w) != (height, width):
        raise DataError(
            f"{where + ': ' if where else ''}RLE size {h}x{w} differs from the "
            f"image size {height}x{width}"
        )


def label_map_to_rles(label_map: np.ndarray, ids: Iterable[int] | None = None) -> dict[int, RLE]:
    """RLE of every nonzero id of an (H, W) integer label map (0 = no entity), or of ``ids``
    (an id without pixels gets an empty RLE).

    One pass: the map is flattened once in column-major order (COCO's order) and cut into runs
    of equal value; each id's runs become its uncompressed counts, which pycocotools compresses.
    Cost: one pass over the pixels plus work proportional to the number of runs, whatever the
    number of entities (a compare per id would be N passes over H x W).
    """
    if label_map.ndim != 2:
        raise DataError(f"label map must be (H, W), got shape {label_map.shape}")
    h, w = label_map.shape
    flat = np.ascontiguousarray(label_map.T).ravel()  # column-major order of the map
    n = flat.size
    if n == 0:
        return {int(i): _from_counts([0], h, w) for i in (ids or [])}
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
            out[i] = _from_counts([n], h, w)
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
        out[i] = _from_counts(counts.tolist(), h, w)
    return out


def _from_counts(counts: list[int], h: int, w: int) -> RLE:
    return _to_text(mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w))


def rles_to_label_map(
    rles: Sequence[RLE],
    height: int,
    width: int,
    dtype: Any = np.uint16,
    ids: Sequence[int] | None = None,
) -> np.ndarray:
    """Paint RLEs into an (H, W) label map in order (later ones win where they overlap).

    ``ids`` gives each RLE's value (default 1..N).
    """
    lm = np.zeros((height, width), dtype=dtype)
    values = ids if ids is not None else range(1, len(rles) + 1)
    for value, rle in zip(values, rles):
        check_size(rle, height, width)
        m = decode(rle).astype(bool)
        lm[m] = value
    return lm


def overlap_pixels(rles: Sequence[RLE]) -> int:
    """Sum of the areas minus the area of the union: 0 when the RLEs are disjoint (a pixel
    covered k times counts k - 1)."""
    if len(rles) < 2:
        return 0
    total = int(areas(rles).sum())
    union = area(merge(rles))
    return total - union
