"""COCO run-length encoding: the canonical mask store of the toolkit.

Masks are (H, W) arrays (bool or uint8, 1 = inside). RLEs are COCO dicts
``{"size": [H, W], "counts": str}`` (compressed, ``counts`` as text so they serialise to JSON);
the readers also take uncompressed RLEs (``counts`` a list) and polygons.

Every function that reads an RLE decodes it with the strict decoder of
:mod:`entityseg_data.masks.runs`: a truncated or garbage string, counts that do not add up to
``H * W``, negative runs or a size that is not two non-negative integers raise
:class:`~entityseg_data.errors.RLEError`, prefixed with ``where`` (name the record there:
:func:`record_name`). Areas, boxes, unions, overlaps and label maps are computed on the runs in
numpy, for any number of masks (pycocotools' ``area()`` overflows a uint8 at 256 RLEs with
numpy 2, and its ``merge`` loops forever on a corrupt RLE). pycocotools is only handed
polygons (to rasterise) and validated RLEs (``iou_matrix``).

COCO order is column-major: the flat index of pixel (y, x) is ``x * H + y``. Label maps are
built and cut through one transpose each way (:func:`~entityseg_data.masks.runs.transpose`).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from entityseg_data.errors import DataError, RLEError
from entityseg_data.masks import runs as R
from entityseg_data.masks.runs import OverlapPolicy, OverlapRule, Runs

RLE: TypeAlias = dict[str, Any]
"""A COCO RLE dict ``{"size": [H, W], "counts": str}`` (compressed, text counts)."""


def record_name(
    file: str | None = None,
    image_id: Any = None,
    annotation_id: Any = None,
    index: int | None = None,
) -> str:
    """The record part of an error message: ``"gt.json: image 3, annotation 7"`` (parts given
    only); ``index`` is the position in the file's annotation list when there is no id."""
    parts = []
    if image_id is not None:
        parts.append(f"image {image_id}")
    if annotation_id is not None:
        parts.append(f"annotation {annotation_id}")
    elif index is not None:
        parts.append(f"annotations[{index}]")
    rec = ", ".join(parts)
    if file and rec:
        return f"{file}: {rec}"
    return file or rec


def _pre(where: str) -> str:
    return f"{where}: " if where else ""


def _int(v: Any) -> int | None:
    if type(v) is int:
        return v
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def size(rle: Mapping[str, Any], *, where: str = "") -> tuple[int, int]:
    """(H, W) of an RLE; RLEError unless ``size`` is two non-negative integers."""
    try:
        s = rle["size"]
    except (KeyError, TypeError):
        raise RLEError(f"{_pre(where)}RLE has no 'size'") from None
    if type(s) is list and len(s) == 2 and type(s[0]) is int and type(s[1]) is int and min(s) >= 0:
        return s[0], s[1]
    if not isinstance(s, list | tuple | np.ndarray) or len(s) != 2:
        raise RLEError(f"{_pre(where)}RLE 'size' must be [height, width], got {s!r:.40}")
    h, w = _int(s[0]), _int(s[1])
    if h is None or w is None or h < 0 or w < 0:
        raise RLEError(f"{_pre(where)}RLE 'size' must be two non-negative integers, got {s!r:.40}")
    return h, w


def check_size(rle: Mapping[str, Any], height: int, width: int, where: str = "") -> None:
    """Raise RLEError naming ``where`` when the RLE size differs from (height, width)."""
    h, w = size(rle, where=where)
    if (h, w) != (height, width):
        raise RLEError(
            f"{_pre(where)}RLE size {h}x{w} differs from the image size {height}x{width}"
        )


class _Names:
    """Record names of N RLEs, built only when an error needs one."""

    def __init__(self, where: str | Sequence[str], n: int) -> None:
        if not isinstance(where, str) and len(where) != n:
            raise ValueError(f"{n} RLEs but {len(where)} record names")
        self.where, self.n = where, n

    def __getitem__(self, i: int) -> str:
        if not isinstance(self.where, str):
            return self.where[i]
        if self.n == 1:
            return self.where
        return f"{self.where}{', ' if self.where else ''}mask {i}"

    def all(self) -> list[str]:
        return [self[i] for i in range(self.n)]


def _names(where: str | Sequence[str], n: int) -> _Names:
    return _Names(where, n)


def _checked(
    r: Any, names: _Names, i: int, height: int | None, width: int | None
) -> tuple[int, Any]:
    """(pixels, raw counts) of RLE ``i`` after the checks of its type, size and counts type."""
    if type(r) is not dict and not isinstance(r, Mapping):
        raise RLEError(f"{_pre(names[i])}RLE must be a dict, got {type(r).__name__}")
    try:
        hw = size(r)
    except RLEError:
        size(r, where=names[i])
        raise
    if height is not None and width is not None and hw != (height, width):
        raise RLEError(
            f"{_pre(names[i])}RLE size {hw[0]}x{hw[1]} differs from the image size {height}x{width}"
        )
    c = r.get("counts")
    if not (type(c) is str or isinstance(c, str | bytes | list | tuple | np.ndarray)):
        raise RLEError(f"{_pre(names[i])}RLE 'counts' must be a string or a list")
    return hw[0] * hw[1], c


def _negative(names: _Names, i: int) -> RLEError:
    return RLEError(f"{_pre(names[i])}RLE has a negative run length (corrupt counts)")


def _cover(names: _Names, i: int, got: int, npix: int) -> RLEError:
    return RLEError(f"{_pre(names[i])}RLE counts cover {got} pixels, image has {npix}")


def _batch(
    rles: Sequence[Mapping[str, Any]],
    height: int | None,
    width: int | None,
    where: str | Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All counts of ``rles`` concatenated, the (N + 1,) offsets and the (N,) pixel counts,
    strictly validated (vectorised over the RLEs; see :func:`counts_many`)."""
    n = len(rles)
    names = _names(where, n)
    npix = np.empty(n, np.int64)
    strings: list[str | bytes] = []
    str_at: list[int] = []
    lists: dict[int, np.ndarray] = {}
    for i, r in enumerate(rles):
        npix[i], c = _checked(r, names, i, height, width)
        if type(c) is str or isinstance(c, str | bytes):
            strings.append(c)
            str_at.append(i)
        else:
            lists[i] = _list_counts(c, names[i])
    if not lists:
        flat, offsets = R.decode_strings(strings, where=names)
    else:
        sflat, soff = R.decode_strings(strings, where=[names[i] for i in str_at])
        parts: list[np.ndarray] = [np.zeros(0, np.int64)] * n
        for k, i in enumerate(str_at):
            parts[i] = sflat[soff[k] : soff[k + 1]]
        for i, c in lists.items():
            parts[i] = c
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        offsets = np.zeros(n + 1, np.int64)
        offsets[1:] = np.cumsum([p.size for p in parts])
    if flat.size and int(flat.min()) < 0:
        i = int(np.searchsorted(offsets, int(np.flatnonzero(flat < 0)[0]), side="right")) - 1
        raise _negative(names, i)
    cs = np.concatenate(([0], np.cumsum(flat)))
    sums = cs[offsets[1:]] - cs[offsets[:-1]]
    bad = np.flatnonzero(sums != npix)
    if bad.size:
        i = int(bad[0])
        raise _cover(names, i, int(sums[i]), int(npix[i]))
    return flat, offsets, npix


def counts_many(
    rles: Sequence[Mapping[str, Any]],
    height: int | None = None,
    width: int | None = None,
    *,
    where: str | Sequence[str] = "",
) -> list[np.ndarray]:
    """Validated counts (int64, column-major, 0-run first) of RLEs, decoded in one pass.

    Args:
        rles: compressed (text/bytes counts) or uncompressed (list counts) RLE dicts.
        height, width: the image size every RLE must have (None = each its own size).
        where: one record name for all (``", mask i"`` is added) or one per RLE.

    Raises:
        RLEError: naming the record: no/invalid size, a size other than (height, width),
        garbage or truncated strings, negative runs, counts not adding up to H * W.
    """
    flat, off, _ = _batch(rles, height, width, where)
    return [flat[off[i] : off[i + 1]] for i in range(len(rles))]


def _list_counts(c: Any, where: str) -> np.ndarray:
    try:
        a = np.asarray(c)
    except (TypeError, ValueError):
        raise RLEError(f"{_pre(where)}RLE counts list is not a list of integers") from None
    if a.size == 0:
        return np.zeros(0, np.int64)
    if a.ndim != 1 or a.dtype.kind not in "iuf" or a.dtype == bool:
        raise RLEError(f"{_pre(where)}RLE counts list is not a list of integers")
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise RLEError(f"{_pre(where)}RLE counts list is not a list of integers")
    return a.astype(np.int64)


def counts(
    rle: Mapping[str, Any], height: int | None = None, width: int | None = None, *, where: str = ""
) -> np.ndarray:
    """Validated counts of one RLE (see :func:`counts_many`)."""
    c = rle.get("counts") if type(rle) is dict else None
    if type(c) is str and len(c) <= R.SMALL_STRING:  # the common one-mask call, without numpy
        names = _names(where, 1)
        npix, _ = _checked(rle, names, 0, height, width)
        out = R.decode_string(c, where=where)
        if out.size and int(out.min()) < 0:
            raise _negative(names, 0)
        got = int(out.sum())
        if got != npix:
            raise _cover(names, 0, got, npix)
        return out
    return counts_many([rle], height, width, where=where)[0]


def validate(
    rle: Any, height: int | None = None, width: int | None = None, *, where: str = ""
) -> RLE:
    """The RLE as a compressed text RLE after strict validation (RLEError naming ``where``)."""
    c = counts(rle, height, width, where=where)
    h, w = size(rle)
    if isinstance(rle["counts"], str):
        return {"size": [h, w], "counts": rle["counts"]}
    if isinstance(rle["counts"], bytes):
        return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    return from_counts(c, h, w)


def runs(rle: Mapping[str, Any], *, where: str = "") -> Runs:
    """1-runs of an RLE in column-major flat order."""
    return R.counts_to_runs(counts(rle, where=where))


def runs_many(
    rles: Sequence[Mapping[str, Any]],
    height: int | None = None,
    width: int | None = None,
    *,
    where: str | Sequence[str] = "",
) -> list[Runs]:
    """1-runs (column-major) of many RLEs, decoded in one pass."""
    flat, off, _ = _batch(rles, height, width, where)
    s, e, owner = _flat_runs(flat, off)
    cut = np.searchsorted(owner, np.arange(len(rles) + 1))
    return [Runs(s[cut[i] : cut[i + 1]], e[cut[i] : cut[i + 1]]) for i in range(len(rles))]


def _flat_runs(flat: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-runs of concatenated valid counts: (starts, ends, owner), grouped by owner, each
    group's runs sorted, non-empty and maximal (touching runs merged)."""
    n = off.size - 1
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(off))
    cs = np.cumsum(flat)
    pos = cs - np.concatenate(([0], cs))[off[:-1]][owner]  # end of each run inside its mask
    m = np.arange(flat.size) - off[:-1][owner]
    one = ((m & 1) == 1) & (flat > 0)
    e = pos[one]
    s = e - flat[one]
    own = owner[one]
    if s.size > 1:
        touch = (s[1:] == e[:-1]) & (own[1:] == own[:-1])
        if touch.any():  # zero-length 0-runs in non-canonical counts
            new = np.concatenate(([True], ~touch))
            idx = np.flatnonzero(new)
            e = np.maximum.reduceat(e, idx)
            s, own = s[idx], own[idx]
    return s, e, own


def from_counts(cnts: np.ndarray | Sequence[int], height: int, width: int) -> RLE:
    """Compressed text RLE of valid counts of an (H, W) mask."""
    return {"size": [int(height), int(width)], "counts": R.encode_string(cnts)}


def from_runs(runs_: Runs, height: int, width: int) -> RLE:
    """Compressed text RLE of column-major runs of an (H, W) mask."""
    return from_counts(R.runs_to_counts(runs_, int(height) * int(width)), height, width)


# ----------------------------------------------------------------------------- masks
def encode(mask: np.ndarray) -> RLE:
    """Compressed RLE of one (H, W) mask (any dtype; nonzero = inside)."""
    if mask.ndim != 2:
        raise DataError(f"encode expects an (H, W) mask, got shape {mask.shape}")
    m = mask.view(np.uint8) if mask.dtype == bool else mask
    if m.dtype != np.uint8:
        m = (m != 0).view(np.uint8)
    return encode_fortran_view(R.transpose(m))


def encode_fortran_view(mask_t: np.ndarray) -> RLE:
    """Encode a mask given as its C-contiguous transpose (W, H) (no copy is made)."""
    if mask_t.ndim != 2:
        raise DataError(f"encode expects a 2-D mask, got shape {mask_t.shape}")
    w, h = mask_t.shape
    return from_runs(R.runs_of_mask(mask_t.reshape(-1)), h, w)


def decode(rle: Mapping[str, Any], *, where: str = "") -> np.ndarray:
    """(H, W) uint8 mask (0/1) of a compressed or uncompressed RLE (strictly validated)."""
    c = counts(rle, where=where)
    h, w = size(rle)
    return R.transpose(R.mask_of_counts(c).reshape(w, h))


def decode_many(
    rles: Sequence[Mapping[str, Any]], *, where: str | Sequence[str] = ""
) -> np.ndarray:
    """(N, H, W) uint8 masks of RLEs that share one size."""
    if not rles:
        raise DataError("decode_many needs at least one RLE")
    h, w = size(rles[0], where=_names(where, len(rles))[0])
    cs = counts_many(rles, h, w, where=where)
    out = np.empty((len(rles), h, w), np.uint8)
    for i, c in enumerate(cs):
        out[i] = R.transpose(R.mask_of_counts(c).reshape(w, h))
    return out


def to_compressed(
    segm: Any, height: int | None = None, width: int | None = None, *, where: str = ""
) -> RLE:
    """Normalise a COCO segmentation (compressed RLE, uncompressed RLE with a counts list, or
    polygons, which need ``height``/``width``) to a validated compressed RLE."""
    if isinstance(segm, Mapping):
        if "counts" not in segm or "size" not in segm:
            raise RLEError(
                f"{_pre(where)}RLE dict needs 'size' and 'counts', got keys {sorted(segm)}"
            )
        return validate(segm, where=where)
    if isinstance(segm, list):
        if height is None or width is None:
            raise DataError(f"{_pre(where)}polygon segmentation needs the image height and width")
        return polygons_to_rle(segm, int(height), int(width), where=where)
    raise DataError(f"{_pre(where)}unsupported segmentation of type {type(segm).__name__}")


def polygons_to_rle(polys: Sequence[Any], height: int, width: int, *, where: str = "") -> RLE:
    """Union of COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixels) rasterised by
    pycocotools; polygons of fewer than 3 points are ignored."""
    from pycocotools import mask as mask_utils

    good = []
    for p in polys:
        if not isinstance(p, list | tuple) or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in p
        ):
            raise DataError(f"{_pre(where)}a polygon must be a flat list of numbers")
        if len(p) % 2:
            raise DataError(f"{_pre(where)}a polygon needs an even number of coordinates")
        if not np.isfinite(np.asarray(p, np.float64)).all():
            raise DataError(f"{_pre(where)}polygon coordinates must be finite")
        if len(p) >= 6:
            good.append([float(v) for v in p])
    if not good or height * width == 0:
        return from_counts([height * width], height, width)
    parts = mask_utils.frPyObjects(good, height, width)
    cs = counts_many([{"size": p["size"], "counts": p["counts"]} for p in parts], where=where)
    return from_runs(R.union([R.counts_to_runs(c) for c in cs]), height, width)


# ----------------------------------------------------------------------------- measures
def area(rle: Mapping[str, Any], *, where: str = "") -> int:
    """Pixels inside."""
    return int(counts(rle, where=where)[1::2].sum())


def areas(rles: Sequence[Mapping[str, Any]], *, where: str | Sequence[str] = "") -> np.ndarray:
    """(N,) int64 pixel counts, for any number of RLEs."""
    if not rles:
        return np.zeros(0, np.int64)
    flat, off, _ = _batch(rles, None, None, where)
    m = np.arange(flat.size) - np.repeat(off[:-1], np.diff(off))
    cs = np.concatenate(([0], np.cumsum(np.where(m & 1, flat, 0))))
    return cs[off[1:]] - cs[off[:-1]]


def bbox(rle: Mapping[str, Any], *, where: str = "") -> list[float]:
    """[x, y, w, h] in pixels (COCO convention; zeros for an empty mask)."""
    h, _ = size(rle, where=where)
    return [float(v) for v in R.bbox_colmajor(runs(rle, where=where), h)]


def iou_matrix(
    dt: Sequence[Mapping[str, Any]],
    gt: Sequence[Mapping[str, Any]],
    iscrowd: Sequence[int] | None = None,
    *,
    trusted: bool = False,
) -> np.ndarray:
    """(len(dt), len(gt)) mask IoU; crowd GT uses COCO's intersection / dt-area.

    The RLEs are validated before pycocotools computes it, unless ``trusted`` says the caller
    read them with this module's strict decoder already (compressed text RLEs)."""
    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    from pycocotools import mask as mask_utils

    if trusted:
        d = [_as_bytes(r) for r in dt]
        g = [_as_bytes(r) for r in gt]
    else:
        d = [_as_bytes(validate(r, where=f"detection {i}")) for i, r in enumerate(dt)]
        g = [_as_bytes(validate(r, where=f"ground truth {i}")) for i, r in enumerate(gt)]
    crowd = [int(c) for c in iscrowd] if iscrowd is not None else [0] * len(gt)
    return np.asarray(mask_utils.iou(d, g, crowd), np.float64).reshape(len(dt), len(gt))


def _as_bytes(rle: Mapping[str, Any]) -> dict[str, Any]:
    c = rle["counts"]
    return {"size": list(rle["size"]), "counts": c.encode("ascii") if isinstance(c, str) else c}


def merge(
    rles: Sequence[Mapping[str, Any]], intersect: bool = False, *, where: str | Sequence[str] = ""
) -> RLE:
    """Union (or intersection) of RLEs of one size."""
    if not rles:
        raise DataError("merge needs at least one RLE")
    h, w = size(rles[0], where=_names(where, len(rles))[0])
    rs = runs_many(rles, h, w, where=where)
    return from_runs(R.intersection(rs) if intersect else R.union(rs), h, w)


def overlap_pixels(rles: Sequence[Mapping[str, Any]], *, where: str | Sequence[str] = "") -> int:
    """Sum of the areas minus the area of the union: 0 when the RLEs are disjoint (a pixel
    covered k times counts k - 1). Any number of RLEs; all must share one size."""
    if not rles:
        return 0
    h, w = size(rles[0], where=_names(where, len(rles))[0])
    flat, off, _ = _batch(rles, h, w, where)
    s, e, _ = _flat_runs(flat, off)
    if s.size < 2:
        return 0
    total = int((e - s).sum())
    return total - R.normalize_runs(s, e).area


# ----------------------------------------------------------------------------- label maps
def label_map_to_rles(label_map: np.ndarray, ids: Iterable[int] | None = None) -> dict[int, RLE]:
    """RLE of every nonzero id of an (H, W) integer label map (0 = no entity), or of ``ids``
    (an id without pixels gets an empty RLE).

    One pass: the map is transposed once (COCO's column-major order) and cut into runs of equal
    value; each id's runs become its counts. Cost: one pass over the pixels plus work
    proportional to the number of runs, whatever the number of entities (a compare per id would
    be N passes over H x W).
    """
    if label_map.ndim != 2:
        raise DataError(f"label map must be (H, W), got shape {label_map.shape}")
    h, w = label_map.shape
    return flat_label_map_to_rles(R.transpose(label_map).reshape(-1), h, w, ids)


def flat_label_map_to_rles(
    flat: np.ndarray, height: int, width: int, ids: Iterable[int] | None = None
) -> dict[int, RLE]:
    """:func:`label_map_to_rles` of a label map given flat in column-major order (the (W, H)
    transpose's rows), e.g. one painted by :func:`entityseg_data.masks.runs.paint`."""
    by_id = R.label_runs(np.asarray(flat).reshape(-1), None if ids is None else list(ids))
    return {i: from_runs(r, height, width) for i, r in by_id.items()}


def rles_to_label_map(
    rles: Sequence[Mapping[str, Any]],
    height: int,
    width: int,
    dtype: Any = None,
    ids: Sequence[int] | None = None,
    *,
    policy: OverlapPolicy | OverlapRule = "later_wins",
    where: str | Sequence[str] = "",
) -> np.ndarray:
    """(H, W) label map of RLEs: ``ids[i]`` (default ``i + 1``) where ``rles[i]`` is, 0 elsewhere.

    Overlaps follow ``policy`` (see :func:`entityseg_data.masks.runs.paint`; ``"reject"`` raises
    :class:`~entityseg_data.errors.OverlapError`). ``dtype`` defaults to uint16 (uint32 beyond
    65535). Every RLE must have the size (height, width).
    """
    rs = runs_many(rles, height, width, where=where)
    if dtype is None:
        top = max(ids) if ids is not None and len(ids) else len(rles)
        dtype = np.uint16 if top < 65536 else np.uint32
    flat = R.paint(
        rs,
        height * width,
        policy=policy,
        values=ids,
        dtype=dtype,
        where=where if isinstance(where, str) else "",
    )
    return R.transpose(flat.reshape(width, height))


def label_map_t(
    rles: Sequence[Mapping[str, Any]],
    height: int,
    width: int,
    *,
    policy: OverlapPolicy | OverlapRule = "later_wins",
    dtype: Any = None,
    where: str | Sequence[str] = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Transposed label map and overlap flags of RLEs, straight from their runs (no transpose).

    Returns:
        ``(lm_t, overlapped)``: ``lm_t`` (W, H) (value ``i + 1`` = ``rles[i]``, 0 = none;
        uint16, uint32 beyond 65535 masks); ``overlapped`` (N,) bool, True for masks sharing
        pixels with another one (their pixels follow ``policy``; measure them on their own).
    """
    rs = runs_many(rles, height, width, where=where)
    if dtype is None:
        dtype = np.uint16 if len(rles) < 65536 else np.uint32
    flat = R.paint(
        rs,
        height * width,
        policy=policy,
        dtype=dtype,
        where=where if isinstance(where, str) else "",
    )
    return flat.reshape(width, height), R.conflicts(rs)


__all__ = [
    "RLE",
    "area",
    "areas",
    "bbox",
    "check_size",
    "counts",
    "counts_many",
    "decode",
    "decode_many",
    "encode",
    "encode_fortran_view",
    "from_counts",
    "flat_label_map_to_rles",
    "from_runs",
    "iou_matrix",
    "label_map_t",
    "label_map_to_rles",
    "merge",
    "overlap_pixels",
    "polygons_to_rle",
    "record_name",
    "rles_to_label_map",
    "runs",
    "runs_many",
    "size",
    "to_compressed",
    "validate",
]
