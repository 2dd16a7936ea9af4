"""Label Studio brush RLE, vectorised (bit-for-bit equal to ``label_studio_sdk.converter.brush``).

A brush result's ``value.rle`` is a list of ints 0-255: a bit-packed run-length stream over the
flattened (H, W, 4) RGBA uint8 image, row-major; Label Studio reads the alpha channel (nonzero =
inside, as its editor does). Bitstream, MSB first, zero padded to a byte:

* 32 bits: number of values N (= H * W * 4); 5 bits: word size - 1 (8-bit words);
  4 x 4 bits: the four count-field sizes - 1 (the SDK writes 3, 4, 8, 16);
* records until N values are produced: 1 flag bit (1 = run of one repeated word, 0 = block of
  literal words), 2 bits choosing a count-field size, that many bits = count - 1, then one word
  (run) or ``count`` words (literals).

:func:`encode_brush` writes exactly what the SDK's ``mask2rle(mask * 255)`` writes, including its
quirks (runs of 257..65536 values use the 16-bit field; longer runs are split in chunks of
2^16; an extra zero byte when the stream already ends on a byte boundary), but builds the stream
with numpy instead of Python string concatenation. :func:`decode_brush` reads any valid stream
(also the editor's own, with literal blocks and other field sizes); it walks the records with
integer arithmetic on a bit string and fills the output with one ``np.repeat``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from entityseg_data.errors import DataError, OverlapError
from entityseg_data.masks import rle as rle_ops
from entityseg_data.masks import runs as R
from entityseg_data.masks.rle import RLE
from entityseg_data.masks.types import EntityId

_SIZES = (3, 4, 8, 16)
_WORD = 8
_MAX_RUN = 1 << 16


def _header(num: int) -> bytes:
    """The 53-bit header the SDK writes, left-aligned in 7 bytes."""
    value = num
    value = (value << 5) | (_WORD - 1)
    for s in _SIZES:
        value = (value << 4) | (s - 1)
    return (value << 3).to_bytes(7, "big")


_HEADER_BITS = 53


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths and values of a 1-D array."""
    n = flat.size
    change = np.flatnonzero(flat[1:] != flat[:-1])
    ends = np.concatenate([change, [n - 1]])
    starts = np.concatenate([[0], change + 1])
    return ends - starts + 1, flat[ends]


def _pack(header: bytes, codes: np.ndarray, nbits: np.ndarray) -> np.ndarray:
    """Header bytes followed by variable-length fields (MSB first, each <= 32 bits) as bytes.

    Fields never share bits, so each field is shifted into a 40-bit window starting at its first
    byte and the five bytes of every window are summed into place with one ``bincount``.
    The length is ``total_bits // 8 + 1``: the SDK's padding (a whole zero byte when aligned).
    """
    total = _HEADER_BITS + int(nbits.sum())
    nbytes = total // 8 + 1
    offsets = _HEADER_BITS + np.cumsum(nbits) - nbits
    byte0 = offsets >> 3
    shift = (40 - (offsets & 7) - nbits).astype(np.uint64)
    window = codes.astype(np.uint64) << shift
    idx = np.concatenate([byte0 + k for k in range(5)])
    vals = np.concatenate(
        [((window >> np.uint64(32 - 8 * k)) & np.uint64(0xFF)).astype(np.float64) for k in range(5)]
    )
    out = np.bincount(idx, weights=vals, minlength=nbytes + 5)[:nbytes]
    out[: len(header)] += np.frombuffer(header, np.uint8)
    return out.astype(np.uint8)


def encode_brush(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of an (H, W) mask (nonzero = inside; written as 255 in RGBA).

    Returns the byte list for ``value.rle``; identical to the SDK's
    ``mask2rle((mask != 0).astype(np.uint8) * 255)``.
    """
    if mask.ndim != 2:
        raise DataError(f"encode_brush expects an (H, W) mask, got shape {mask.shape}")
    flat = (np.asarray(mask).reshape(-1) != 0).view(np.uint8)
    if flat.size == 0:
        return _encode_pixel_runs(np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    plen, pval = _runs(flat)
    return _encode_pixel_runs(plen.astype(np.int64), pval.astype(np.int64), flat.size)


def encode_brush_runs(starts: np.ndarray, lengths: np.ndarray, npix: int) -> list[int]:
    """Brush RLE of a binary mask of ``npix`` pixels given its runs of ones (flat row-major
    ``starts`` and ``lengths``, sorted, not overlapping); equal to :func:`encode_brush` of the
    dense mask, without building it."""
    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    if starts.size:
        # merge touching runs so that runs are maximal, as in the dense encoder
        ends = starts + lengths
        new = np.ones(starts.size, bool)
        new[1:] = starts[1:] != ends[:-1]
        starts = starts[new]
        ends = np.maximum.reduceat(ends, np.flatnonzero(new))
        lengths = ends - starts
    # alternate zero gaps and one runs
    ends = starts + lengths
    gaps = starts - np.concatenate([[0], ends[:-1]])
    tail = npix - (ends[-1] if ends.size else 0)
    plen = np.empty(2 * starts.size + 1, np.int64)
    pval = np.zeros(2 * starts.size + 1, np.int64)
    plen[0:-1:2] = gaps
    plen[1::2] = lengths
    pval[1::2] = 1
    plen[-1] = tail
    keep = plen > 0
    return _encode_pixel_runs(plen[keep], pval[keep], npix)


def _encode_pixel_runs(plen: np.ndarray, pval: np.ndarray, npix: int) -> list[int]:
    """Brush RLE from maximal runs over the pixels (lengths, values 0/1)."""
    num = npix * 4
    if num >= 1 << 32:
        raise DataError(f"mask of {npix} pixels is too large for the brush format (32-bit count)")
    lengths = plen * 4  # every pixel repeats its value in 4 channels
    values = pval.astype(np.uint64) * np.uint64(255)
    # split runs longer than 2^16 values: (L - 1) // 2^16 full chunks, then the remainder
    n_full = np.maximum((lengths - 1) // _MAX_RUN, 0)
    rem = lengths - n_full * _MAX_RUN
    reps = n_full + 1
    rec_len = np.repeat(rem, reps)
    rec_val = np.repeat(values, reps)
    # full chunks come first within each run: mark the last record of each run as the remainder
    last = np.cumsum(reps) - 1
    is_full = np.ones(rec_len.size, bool)
    is_full[last] = False
    rec_len = np.where(is_full, _MAX_RUN, rec_len)
    big = (lengths > 256).repeat(reps)
    code = np.where(big, 3, np.where(rec_len <= 8, 0, np.where(rec_len <= 16, 1, 2)))
    sizes = np.asarray(_SIZES, np.int64)[code]
    # single values (never produced by masks, kept for completeness) are literal blocks "0 00 000"
    literal = rec_len == 1
    flag = np.where(literal, 0, 1).astype(np.uint64)
    code = np.where(literal, 0, code)
    sizes = np.where(literal, 3, sizes)
    count = (rec_len - 1).astype(np.uint64)
    field = (flag << np.uint64(2)) | code.astype(np.uint64)
    field = (field << sizes.astype(np.uint64)) | count
    field = (field << np.uint64(_WORD)) | rec_val
    nbits = (3 + sizes + _WORD).astype(np.int64)
    return _pack(_header(num), field, nbits).tolist()


def decode_brush_runs(rle: list[int] | bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray, type]:
    """Runs of a brush RLE: (lengths, values, dtype) with ``lengths.sum() == N`` (the number of
    values in the stream); literal words become runs of length 1."""
    data = np.asarray(rle, dtype=np.int64)
    if data.size < 7:
        raise DataError(f"brush RLE too short ({data.size} bytes)")
    if data.min() < 0 or data.max() > 255:
        raise DataError("brush RLE values must be bytes (0-255)")
    bits = np.unpackbits(data.astype(np.uint8))
    s = (bits + ord("0")).tobytes().decode("ascii")
    total = len(s)
    num = int(s[0:32], 2)
    word = int(s[32:37], 2) + 1
    sizes = [int(s[37 + 4 * k : 41 + 4 * k], 2) + 1 for k in range(4)]
    p = 53
    dtype = np.uint8 if word < 9 else np.uint16 if word < 17 else np.uint32
    run_len: list[int] = []
    run_val: list[int] = []
    lit_pos: list[int] = []  # bit offset of a literal block
    lit_cnt: list[int] = []
    lit_at: list[int] = []  # index into run_len where the block's values go
    i = 0
    try:
        while i < num:
            head = int(s[p : p + 3], 2)
            size = sizes[head & 3]
            p += 3
            count = int(s[p : p + size], 2) + 1
            p += size
            if count > num - i:
                count = num - i
            if head >> 2:
                run_len.append(count)
                run_val.append(int(s[p : p + word], 2))
                p += word
            else:
                lit_at.append(len(run_len))
                run_len.append(count)
                run_val.append(0)
                lit_pos.append(p)
                lit_cnt.append(count)
                p += count * word
            i += count
            if p > total:
                raise ValueError("stream ends inside a record")
    except ValueError as exc:
        raise DataError(f"malformed brush RLE at bit {p}: {exc}") from None
    lengths = np.asarray(run_len, np.int64)
    values = np.asarray(run_val, np.int64)
    if i < num:
        raise DataError(f"brush RLE ends after {i} of {num} values")
    if not lit_pos:
        return lengths, values, dtype
    # literal blocks: expand to one record per word, read every word with vectorised bit math
    is_lit = np.zeros(lengths.size, bool)
    is_lit[lit_at] = True
    reps = np.where(is_lit, lengths, 1)
    rec_len = np.where(is_lit, 1, lengths).repeat(reps)
    rec_val = values.repeat(reps)
    lit_cnt_a = np.asarray(lit_cnt, np.int64)
    starts = np.asarray(lit_pos, np.int64).repeat(lit_cnt_a)
    offs = np.arange(starts.size) - np.repeat(np.cumsum(lit_cnt_a) - lit_cnt_a, lit_cnt_a)
    bitpos = starts + offs * word
    weights = 1 << np.arange(word - 1, -1, -1, dtype=np.int64)
    words = (bits[bitpos[:, None] + np.arange(word)[None, :]].astype(np.int64) * weights).sum(1)
    first_of_run = np.cumsum(reps) - reps
    lit_slots = (first_of_run[is_lit][:, None] + 0).ravel()
    slots = (np.repeat(lit_slots, lit_cnt_a) + offs).astype(np.int64)
    rec_val[slots] = words
    return rec_len, rec_val, dtype


def decode_brush_values(rle: list[int] | bytes | np.ndarray) -> np.ndarray:
    """All N decoded words (the flattened RGBA array) of a brush RLE, as uint8/16/32."""
    lengths, values, dtype = decode_brush_runs(rle)
    return np.repeat(values.astype(dtype), lengths)


def _alpha_runs(
    rle: list[int] | bytes | np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, type]:
    lengths, values, dtype = decode_brush_runs(rle)
    num = int(lengths.sum())
    if num != height * width * 4:
        raise DataError(
            f"brush RLE holds {num} values, expected {height}x{width}x4 = "
            f"{height * width * 4} (original_width/original_height do not match the mask)"
        )
    # pixel i's alpha is value 4i+3: it lies in the run whose end E (exclusive) first exceeds
    # 4i+3, so run k covers the pixels [E_{k-1} // 4, E_k // 4)
    pix_end = np.cumsum(lengths) // 4
    pix_len = np.diff(pix_end, prepend=0)
    return pix_len, values, dtype


def brush_pixel_runs(
    rle: list[int] | bytes | np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Runs of inside pixels (nonzero alpha) of a brush RLE: flat row-major (starts, lengths)."""
    pix_len, values, _ = _alpha_runs(rle, height, width)
    ends = np.cumsum(pix_len)
    inside = (values != 0) & (pix_len > 0)
    return (ends - pix_len)[inside], pix_len[inside]


def decode_brush(rle: list[int] | bytes | np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 mask (0/1; 1 where the alpha channel is nonzero, as the editor reads it)."""
    pix_len, values, _ = _alpha_runs(rle, height, width)
    return np.repeat((values != 0).view(np.uint8), pix_len).reshape(height, width)


def decode_brush_alpha(rle: list[int] | bytes | np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) alpha channel as stored (what the SDK's ``decode_from_annotation`` returns)."""
    pix_len, values, dtype = _alpha_runs(rle, height, width)
    return np.repeat(values.astype(dtype), pix_len).reshape(height, width)


# ----------------------------------------------------------------------------- results
#: Label Studio tag names of the toolkit's labeling configs (``annotation/configs.py`` uses the
#: same values): the image, the brush tool and its one label.
LS_IMAGE = "image"
LS_BRUSH = "mask"
LS_LABEL = "entity"


def brush_result(
    rle: list[int],
    *,
    region_id: EntityId,
    height: int,
    width: int,
    score: float | None = None,
    readonly: bool = False,
    from_name: str = LS_BRUSH,
    to_name: str = LS_IMAGE,
    label: str = LS_LABEL,
) -> dict[str, Any]:
    """The Label Studio ``brushlabels`` result of one region whose brush RLE is ``rle`` (from
    :func:`encode_brush` & co.), over an image of (height, width) pixels, not rotated. The one
    builder of brush results (annotation push, the ML backend, ``SegmentationResult``)."""
    out: dict[str, Any] = {
        "id": str(region_id),
        "type": "brushlabels",
        "from_name": from_name,
        "to_name": to_name,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": rle, "brushlabels": [label]},
    }
    if score is not None:
        out["score"] = float(score)
    if readonly:
        out["readonly"] = True
    return out


def brush_rles_of_label_map(
    label_map: np.ndarray, ids: Sequence[int] | None = None
) -> dict[int, list[int]]:
    """Brush RLE of every nonzero id of an (H, W) label map (or of ``ids``), from the row-major
    runs of one pass over the map (no dense per-id masks)."""
    if label_map.ndim != 2:
        raise DataError(f"label map must be (H, W), got shape {label_map.shape}")
    npix = label_map.size
    by_id = R.label_runs(label_map.reshape(-1), ids)
    return {i: encode_brush_runs(r.starts, r.lengths, npix) for i, r in by_id.items()}


def brush_rles_of_rles(
    rles: Sequence[Mapping[str, Any]], height: int, width: int, *, where: str = ""
) -> list[list[int]]:
    """Brush RLE of each COCO RLE (of size (height, width)) as it is: disjoint masks go through
    one label map and one transpose; overlapping ones mask by mask."""
    if not rles:
        return []
    regions = rle_ops.runs_many(rles, height, width, where=where)
    npix = height * width
    try:
        flat_t = R.paint(regions, npix, policy="reject")
    except OverlapError:
        return [encode_brush(rle_ops.decode(r)) for r in rles]
    lm = R.transpose(flat_t.reshape(width, height))
    by_id = R.label_runs(lm.reshape(-1), range(1, len(rles) + 1))
    return [encode_brush_runs(by_id[i].starts, by_id[i].lengths, npix) for i in by_id]


def rles_of_brush_runs(regions: Sequence[R.Runs], height: int, width: int) -> list[RLE]:
    """COCO RLE of each region given by its row-major pixel runs (e.g. :func:`brush_pixel_runs`),
    as drawn: disjoint regions through one label map and one transpose, overlapping ones region
    by region."""
    if not regions:
        return []
    npix = height * width
    try:
        flat = R.paint(regions, npix, policy="reject")
    except OverlapError:
        return [rle_ops.encode(R.mask_of_runs(r, npix).reshape(height, width)) for r in regions]
    lm_t = R.transpose(flat.reshape(height, width))  # column-major order of the image
    by_id = R.label_runs(lm_t.reshape(-1), range(1, len(regions) + 1))
    return [rle_ops.from_runs(by_id[i], height, width) for i in by_id]


__all__ = [
    "LS_BRUSH",
    "LS_IMAGE",
    "LS_LABEL",
    "brush_result",
    "brush_rles_of_label_map",
    "brush_rles_of_rles",
    "rles_of_brush_runs",
    "brush_pixel_runs",
    "decode_brush",
    "decode_brush_alpha",
    "decode_brush_runs",
    "decode_brush_values",
    "encode_brush",
    "encode_brush_runs",
]
