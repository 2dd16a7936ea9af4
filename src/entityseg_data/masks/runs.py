"""Run-length algebra of binary masks and label maps (pure numpy; the one mask core).

Pixel order. Everything here works on a *flat* pixel index chosen by the caller. COCO RLEs run
over an (H, W) mask in column-major order, flat index ``x * H + y`` (the rows of the (W, H)
transpose); Label Studio brush RLEs run in row-major order, ``y * W + x``. Functions that take an
(H, W) array say which order they use.

Representations (all int64, lengths in pixels):

* **counts**: ``(K,)`` alternating run lengths, 0-run first (COCO's uncompressed ``counts``);
  ``counts.sum() == H * W``. Canonical counts (what the encoders write) have no trailing 0 run
  except ``[0]`` for an empty image; decoders accept any valid counts (zero-length runs too).
* **string**: COCO's compressed counts text (pycocotools ``rleToString``): every count, from the
  4th on as the difference to the count two before it, in 5-bit groups, least significant first,
  each char ``48 + group | 0x20 if more groups follow``; the last group's bit 4 is the sign.
* :class:`Runs`: the 1-runs of a mask, ``starts`` and ``ends`` (exclusive), sorted, disjoint and
  non-empty.
* **label map**: a flat integer array (0 = no entity); :func:`paint` builds one from several
  masks' runs under an overlap policy, :func:`label_runs` cuts one into runs in one pass.

Every decoder here is strict: it raises :class:`~entityseg_data.errors.RLEError` (with the
caller's ``where`` prefix naming the record) for anything a valid encoder cannot have written,
instead of reading past the end (pycocotools reads uninitialised memory on a truncated string
and loops forever on counts that do not add up).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from entityseg_data.errors import DataError, OverlapError, RLEError

#: 5-bit groups per count at most: 7 groups hold +-2^34, more than any image has pixels
#: (pycocotools' encoder never writes more for counts below 2^32; longer numbers would overflow).
MAX_GROUPS = 7


class RecordNames(Protocol):
    """Record names by index (a list, or names built only when an error needs one)."""

    def __getitem__(self, i: int, /) -> str: ...


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


# ----------------------------------------------------------------------------- counts <-> string
def decode_strings(
    strings: Sequence[str | bytes], *, where: str | RecordNames = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of many compressed COCO strings at once (one vectorised pass over all chars).

    Args:
        strings: compressed ``counts`` (text or ASCII bytes).
        where: a record name for every error message, or one per string.

    Returns:
        ``(counts, offsets)``: all counts concatenated (int64) and ``(N + 1,)`` offsets; string
        ``i``'s counts are ``counts[offsets[i]:offsets[i + 1]]``.

    Raises:
        RLEError: a char outside the COCO alphabet ('0'..'o'), a string that ends inside a
        number (truncated), or a number of more than :data:`MAX_GROUPS` groups. Counts are not
        checked here (see :func:`check_counts`).
    """
    names = [where] * len(strings) if isinstance(where, str) else where
    raw = [_ascii(s, names, i) for i, s in enumerate(strings)]
    if len(raw) == 1 and len(raw[0]) <= SMALL_STRING:
        one = _decode_small(raw[0], names[0])
        return one, np.array([0, one.size], np.int64)
    lens = np.fromiter(map(len, raw), np.int64, len(raw))
    if len(raw) == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    c = np.frombuffer(b"".join(raw), np.uint8).astype(np.int64) - 48
    str_end = np.cumsum(lens)
    bad = (c < 0) | (c > 63)
    if bad.any():
        i = int(np.searchsorted(str_end, np.flatnonzero(bad)[0], side="right"))
        raise RLEError(
            f"{_prefix(names[i])}RLE counts string has characters outside the COCO alphabet"
        )
    last = (c & 0x20) == 0  # the last group of a number
    # every non-empty string must end on a last group (else it is truncated)
    nonempty = lens > 0
    tail_ok = last[str_end[nonempty] - 1]
    if not tail_ok.all():
        i = int(np.flatnonzero(nonempty)[np.flatnonzero(~tail_ok)[0]])
        raise RLEError(f"{_prefix(names[i])}RLE counts string is truncated (ends inside a count)")
    ends = np.flatnonzero(last)
    if ends.size == 0:
        return np.zeros(0, np.int64), np.zeros(len(raw) + 1, np.int64)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    ngroups = ends - starts + 1
    if int(ngroups.max()) > MAX_GROUPS:
        j = int(np.flatnonzero(ngroups > MAX_GROUPS)[0])
        i = int(np.searchsorted(str_end, ends[j], side="right"))
        raise RLEError(f"{_prefix(names[i])}RLE count has {int(ngroups[j])} groups (corrupt)")
    k = np.arange(c.size) - np.repeat(starts, ngroups)
    vals = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    neg = (c[ends] & 0x10) != 0
    vals = np.where(neg, vals - (np.int64(1) << (5 * ngroups)), vals)
    # which string each number belongs to, and its index m inside that string
    owner = np.repeat(np.arange(len(raw), dtype=np.int64), lens)[ends]
    per = np.bincount(owner, minlength=len(raw))
    offsets = np.zeros(len(raw) + 1, np.int64)
    offsets[1:] = np.cumsum(per)
    m = np.arange(vals.size) - offsets[owner]
    # counts[m] = x[m] + counts[m - 2] for m > 2: running sums of x along the odd m (from 1) and
    # the even m (from 2) of each string; m = 0 stands alone
    odd = (m & 1) == 1
    even = ~odd & (m > 0)
    out = vals.copy()
    for sel in (odd, even):
        cs = np.cumsum(np.where(sel, vals, 0))
        before = np.concatenate(([0], cs))[offsets[:-1]]  # sum before each string's start
        out[sel] = cs[sel] - before[owner[sel]]
    return out, offsets


def _ascii(s: str | bytes, names: RecordNames | Sequence[str], i: int) -> bytes:
    if not isinstance(s, str):
        return bytes(s)
    try:
        return s.encode("ascii")
    except UnicodeEncodeError:  # non-ASCII text: outside the alphabet (not decoded as '?')
        raise RLEError(
            f"{_prefix(names[i])}RLE counts string has characters outside the COCO alphabet"
        ) from None


#: one string up to this many chars is decoded in plain Python (numpy's ~30 calls per batch cost
#: more than the loop below for short strings: the one-mask-at-a-time callers)
SMALL_STRING = 256
_ALPHABET = bytes(range(48, 112))  # '0'..'o'


def _decode_small(raw: bytes, where: str) -> np.ndarray:
    """Counts of one short compressed string: the same result and errors as the vectorised pass
    (alphabet checked first, then truncation, then the groups of each count in order)."""
    if raw.translate(None, _ALPHABET):
        raise RLEError(
            f"{_prefix(where)}RLE counts string has characters outside the COCO alphabet"
        )
    if raw and (raw[-1] - 48) & 0x20:
        raise RLEError(f"{_prefix(where)}RLE counts string is truncated (ends inside a count)")
    out: list[int] = []
    x = k = 0
    for b in raw:
        c = b - 48
        x |= (c & 0x1F) << (5 * k)
        k += 1
        if c & 0x20:
            continue
        if k > MAX_GROUPS:
            raise RLEError(f"{_prefix(where)}RLE count has {k} groups (corrupt)")
        if c & 0x10:
            x -= 1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
        x = k = 0
    return np.array(out, np.int64)


def decode_string(counts: str | bytes, *, where: str = "") -> np.ndarray:
    """Counts (int64) of one compressed COCO string (strict; see :func:`decode_strings`)."""
    out, _ = decode_strings([counts], where=where)
    return out


def encode_string(counts: np.ndarray | Sequence[int]) -> str:
    """Compressed COCO string of counts (byte-identical to pycocotools ``rleToString``)."""
    if len(counts) <= 48:  # few counts: plain Python beats numpy's per-call overhead
        return _encode_small([int(v) for v in counts])
    c = np.asarray(counts, np.int64)
    x = c.copy()
    if x.size > 3:
        x[3:] -= c[1:-2]
    # groups per number: the fewest 5-bit two's-complement groups holding it
    ng = np.ones(x.size, np.int64)
    for g in range(1, 13):
        half = np.int64(1) << (5 * g - 1)
        ng += (x < -half) | (x >= half)
    total = int(ng.sum())
    first = np.cumsum(ng) - ng
    j = np.arange(total) - np.repeat(first, ng)
    groups = (np.repeat(x, ng) >> (5 * j)) & 0x1F
    more = j < np.repeat(ng, ng) - 1
    chars = (groups | np.where(more, 0x20, 0)) + 48
    return chars.astype(np.uint8).tobytes().decode("ascii")


def _encode_small(c: list[int]) -> str:
    out = []
    for i, v in enumerate(c):
        x = v - c[i - 2] if i > 2 else v
        while True:
            g = x & 0x1F
            x >>= 5
            more = x != -1 if g & 0x10 else x != 0
            out.append(chr(48 + (g | 0x20 if more else g)))
            if not more:
                break
    return "".join(out)


def check_counts(counts: np.ndarray, npix: int, *, where: str = "") -> np.ndarray:
    """Return ``counts`` after checking they are >= 0 and add up to ``npix``; else RLEError."""
    counts = np.asarray(counts, np.int64)
    if counts.size and int(counts.min()) < 0:
        raise RLEError(f"{_prefix(where)}RLE has a negative run length (corrupt counts)")
    total = int(counts.sum())
    if total != npix:
        raise RLEError(f"{_prefix(where)}RLE counts cover {total} pixels, image has {npix}")
    return counts


# ----------------------------------------------------------------------------- counts <-> runs
class Runs(NamedTuple):
    """1-runs of a binary mask in some flat pixel order: ``starts``/``ends`` (exclusive), int64,
    sorted, disjoint, non-empty."""

    starts: np.ndarray
    ends: np.ndarray

    @property
    def area(self) -> int:
        """Pixels inside."""
        return int((self.ends - self.starts).sum())

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts


EMPTY = Runs(np.zeros(0, np.int64), np.zeros(0, np.int64))


def counts_to_runs(counts: np.ndarray | Sequence[int]) -> Runs:
    """The 1-runs of valid counts (zero-length runs dropped, touching runs merged)."""
    c = np.asarray(counts, np.int64)
    pos = np.cumsum(c)
    ones = c[1::2]
    starts = pos[0::2][: ones.size]
    ends = pos[1::2]
    keep = ones > 0
    return normalize_runs(starts[keep], ends[keep], presorted=True)


def runs_to_counts(runs: Runs, npix: int) -> np.ndarray:
    """Canonical counts of runs over ``npix`` pixels (no trailing 0 run; ``[0]`` when npix=0)."""
    s, e = runs
    if s.size == 0:
        return np.array([npix], np.int64)
    out = np.empty(2 * s.size + 1, np.int64)
    out[0] = s[0]
    out[1::2] = e - s
    out[2:-1:2] = s[1:] - e[:-1]
    out[-1] = npix - e[-1]
    return out if out[-1] else out[:-1]


def normalize_runs(starts: np.ndarray, ends: np.ndarray, *, presorted: bool = False) -> Runs:
    """Runs of the union of intervals ``[starts, ends)`` (any order, overlaps allowed)."""
    s = np.asarray(starts, np.int64)
    e = np.asarray(ends, np.int64)
    keep = e > s
    s, e = s[keep], e[keep]
    if s.size == 0:
        return EMPTY
    if not presorted:
        order = np.argsort(s, kind="stable")
        s, e = s[order], e[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(s.size, bool)
    new[1:] = s[1:] > reach[:-1]
    if new.all():
        return Runs(s, e)
    idx = np.flatnonzero(new)
    return Runs(s[idx], np.maximum.reduceat(e, idx))


def runs_of_mask(flat: np.ndarray) -> Runs:
    """Runs of a flat mask (nonzero = inside)."""
    a = np.asarray(flat).reshape(-1)
    m = a.view(np.uint8) if a.dtype == bool else (a != 0).view(np.uint8)
    if m.size == 0:
        return EMPTY
    d = np.diff(m.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return Runs(starts.astype(np.int64), ends.astype(np.int64))


def mask_of_runs(runs: Runs, npix: int) -> np.ndarray:
    """Flat uint8 mask (0/1) of ``npix`` pixels."""
    counts = runs_to_counts(runs, npix)
    vals = np.zeros(counts.size, np.uint8)
    vals[1::2] = 1
    return np.repeat(vals, counts)


def mask_of_counts(counts: np.ndarray) -> np.ndarray:
    """Flat uint8 mask (0/1) of valid counts."""
    c = np.asarray(counts, np.int64)
    vals = np.zeros(c.size, np.uint8)
    vals[1::2] = 1
    return np.repeat(vals, c)


# ----------------------------------------------------------------------------- set operations
def union(regions: Sequence[Runs]) -> Runs:
    """Runs of the union of several masks."""
    if not regions:
        return EMPTY
    if len(regions) == 1:
        return regions[0]
    return normalize_runs(
        np.concatenate([r.starts for r in regions]), np.concatenate([r.ends for r in regions])
    )


def coverage(regions: Sequence[Runs]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coverage of several masks as segments: ``(starts, ends, k)`` where every pixel of
    ``[starts[i], ends[i])`` lies in exactly ``k[i] >= 1`` of the masks (segments sorted)."""
    if not regions:
        z = np.zeros(0, np.int64)
        return z, z, z
    s = np.concatenate([r.starts for r in regions])
    e = np.concatenate([r.ends for r in regions])
    pos = np.concatenate([s, e])
    delta = np.concatenate([np.ones(s.size, np.int64), -np.ones(e.size, np.int64)])
    order = np.argsort(pos, kind="stable")
    pos, delta = pos[order], delta[order]
    uniq, first = np.unique(pos, return_index=True)
    d = np.add.reduceat(delta, first) if pos.size else delta
    k = np.cumsum(d)
    seg_s, seg_e, seg_k = uniq[:-1], uniq[1:], k[:-1]
    keep = seg_k > 0
    return seg_s[keep], seg_e[keep], seg_k[keep]


def intersection(regions: Sequence[Runs]) -> Runs:
    """Runs of the pixels inside every mask."""
    if not regions:
        return EMPTY
    if len(regions) == 1:
        return regions[0]
    s, e, k = coverage(regions)
    keep = k == len(regions)
    return normalize_runs(s[keep], e[keep], presorted=True)


def difference(a: Runs, b: Runs) -> Runs:
    """Runs of the pixels of ``a`` outside ``b``."""
    if a.starts.size == 0 or b.starts.size == 0:
        return a
    hi = max(int(a.ends[-1]), int(b.ends[-1]))
    comp_s = np.concatenate([[0], b.ends])
    comp_e = np.concatenate([b.starts, [hi]])
    keep = comp_e > comp_s
    return intersection([a, Runs(comp_s[keep], comp_e[keep])])


def overlap_pixels(regions: Sequence[Runs]) -> int:
    """Sum of the areas minus the area of the union (a pixel inside k masks counts k - 1)."""
    if len(regions) < 2:
        return 0
    return sum(r.area for r in regions) - union(regions).area


def conflicts(regions: Sequence[Runs]) -> np.ndarray:
    """Bool ``(N,)``: True for each mask that shares a pixel with another one."""
    out = np.zeros(len(regions), bool)
    s, e, lab = _flat_runs(regions)
    if s.size < 2:
        return out
    hit = _conflicting(s, e)
    out[np.unique(lab[hit])] = True
    return out


def overlap_pairs(regions: Sequence[Runs]) -> dict[tuple[int, int], int]:
    """``{(i, j): shared pixels}`` for every pair ``i < j`` of masks that overlap."""
    s, e, lab = _flat_runs(regions)
    pairs: dict[tuple[int, int], int] = {}
    if s.size < 2:
        return pairs
    hit = _conflicting(s, e)
    s, e, lab = s[hit], e[hit], lab[hit]
    active: list[tuple[int, int]] = []  # (end, label) of runs still open
    for a, b, li in zip(s.tolist(), e.tolist(), lab.tolist()):
        active = [(be, bl) for be, bl in active if be > a]
        for be, bl in active:
            if bl != li:
                key = (bl, li) if bl < li else (li, bl)
                pairs[key] = pairs.get(key, 0) + min(be, b) - a
        active.append((b, li))
    return pairs


def _flat_runs(regions: Sequence[Runs]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All runs sorted by start: (starts, ends, region index)."""
    if not regions:
        z = np.zeros(0, np.int64)
        return z, z, z
    s = np.concatenate([r.starts for r in regions])
    e = np.concatenate([r.ends for r in regions])
    lab = np.repeat(np.arange(len(regions), dtype=np.int64), [r.starts.size for r in regions])
    order = np.argsort(s, kind="stable")
    return s[order], e[order], lab[order]


def _conflicting(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Bool mask of the runs (sorted by start) that overlap another run: run k meets an earlier
    one iff it starts before the furthest earlier end, and a later one iff the next start lies
    before its end."""
    hit = np.zeros(s.size, bool)
    if s.size < 2:
        return hit
    reach = np.maximum.accumulate(e)
    hit[1:] = s[1:] < reach[:-1]
    hit[:-1] |= s[1:] < e[:-1]
    return hit


# ----------------------------------------------------------------------------- label maps
OverlapPolicy = Literal["reject", "later_wins", "earlier_wins", "smaller_wins"]
OVERLAP_POLICIES: tuple[str, ...] = ("reject", "later_wins", "earlier_wins", "smaller_wins")


@runtime_checkable
class OverlapRule(Protocol):
    """An overlap rule beyond the named policies (the extension point for rules that need more
    than the masks, e.g. each region's seed).

    :meth:`pieces` splits every region into pieces with a paint priority: where pieces overlap,
    the one with the highest priority keeps the pixel (ties: the later region). The pieces of
    region ``i`` must partition ``regions[i]``. A rule holds its own context (built with, say,
    the seeds of the regions in the same order).
    """

    def pieces(self, regions: Sequence[Runs]) -> Sequence[Sequence[tuple[Runs, float]]]: ...


def _rule_pieces(regions: Sequence[Runs], rule: OverlapRule) -> list[list[tuple[Runs, float]]]:
    """The pieces of an :class:`OverlapRule` (the named policies are painted without pieces)."""
    out = [list(p) for p in rule.pieces(regions)]
    if len(out) != len(regions):
        raise ValueError(f"overlap rule gave pieces for {len(out)} of {len(regions)} regions")
    return out


def label_dtype(n_labels: int) -> type[np.unsignedinteger]:
    """Narrowest unsigned dtype holding labels 0..n_labels."""
    return np.uint8 if n_labels < 256 else np.uint16 if n_labels < 65536 else np.uint32


def paint(
    regions: Sequence[Runs],
    npix: int,
    *,
    policy: OverlapPolicy | OverlapRule = "reject",
    values: Sequence[int] | np.ndarray | None = None,
    dtype: type | np.dtype | None = None,
    where: str = "",
) -> np.ndarray:
    """Flat label map of ``npix`` pixels: region ``i`` painted with ``values[i]`` (default
    ``i + 1``), 0 elsewhere.

    Overlaps follow ``policy``: ``"reject"`` raises :class:`~entityseg_data.errors.OverlapError`
    (its ``pairs`` hold the overlapping region indices and pixels), ``"later_wins"`` paints in
    order, ``"earlier_wins"`` in reverse order (the first region covering a pixel keeps it),
    ``"smaller_wins"`` lets the region of fewer pixels keep the pixel (ties: the later),
    an :class:`OverlapRule` decides by piece priority. Disjoint regions cost one ``np.repeat``
    whatever their number; only runs that overlap are painted one by one.
    """
    n = len(regions)
    vals = np.arange(1, n + 1, dtype=np.int64) if values is None else np.asarray(values, np.int64)
    if vals.size != n:
        raise ValueError(f"{n} regions but {vals.size} values")
    if dtype is None:
        dtype = label_dtype(int(vals.max()) if n else 0)
    if n == 0:
        return np.zeros(npix, dtype)
    if isinstance(policy, str):
        if policy not in OVERLAP_POLICIES:
            raise ValueError(
                f"unknown overlap policy {policy!r} (one of {', '.join(OVERLAP_POLICIES)})"
            )
        sizes = np.fromiter((r.starts.size for r in regions), np.int64, n)
        if policy == "smaller_wins":
            prio = -np.fromiter((r.area for r in regions), np.float64, n)
        elif policy == "earlier_wins":
            prio = -np.arange(n, dtype=np.float64)
        else:
            prio = np.zeros(n)
        s_l = [r.starts for r in regions]
        e_l = [r.ends for r in regions]
        v_l = [np.repeat(vals, sizes)]
        p_l = [np.repeat(prio, sizes)]
        i_l = [np.repeat(np.arange(n, dtype=np.int64), sizes)]
    else:
        s_l, e_l, v_l, p_l, i_l = [], [], [], [], []
        for i, plist in enumerate(_rule_pieces(regions, policy)):
            for runs, pr in plist:
                k = runs.starts.size
                s_l.append(runs.starts)
                e_l.append(runs.ends)
                v_l.append(np.full(k, vals[i], np.int64))
                p_l.append(np.full(k, pr, np.float64))
                i_l.append(np.full(k, i, np.int64))
    s = np.concatenate(s_l)
    e = np.concatenate(e_l)
    if s.size == 0:
        return np.zeros(npix, dtype)
    if int(e.max()) > npix or int(s.min()) < 0:
        raise RLEError(f"{_prefix(where)}runs exceed the {npix} pixels of the label map")
    v = np.concatenate(v_l)
    order = np.argsort(s, kind="stable")
    s, e, v = s[order], e[order], v[order]
    hit = _conflicting(s, e)
    if hit.any() and isinstance(policy, str) and policy == "reject":
        raise OverlapError(
            f"{_prefix(where)}masks overlap: "
            + ", ".join(
                f"{a + 1}&{b + 1} ({px} px)"
                for (a, b), px in sorted(overlap_pairs(regions).items())[:5]
            ),
            overlap_pairs(regions),
        )
    keep = ~hit
    ks, ke, kv = s[keep], e[keep], v[keep]
    counts = np.empty(2 * ks.size + 1, np.int64)
    counts[0] = ks[0] if ks.size else npix
    if ks.size:
        counts[1::2] = ke - ks
        counts[2:-1:2] = ks[1:] - ke[:-1]
        counts[-1] = npix - ke[-1]
    lv = np.zeros(counts.size, dtype)
    lv[1::2] = kv
    flat = np.repeat(lv, counts)
    if hit.any():
        p = np.concatenate(p_l)[order][hit]
        idx = np.concatenate(i_l)[order][hit]
        hs, he, hv = s[hit], e[hit], v[hit]
        for j in np.lexsort((idx, p)).tolist():  # ascending priority, then region order
            flat[hs[j] : he[j]] = hv[j]
    return flat


def paint_masks(
    masks: Iterable[np.ndarray],
    *,
    shape: tuple[int, int] | None = None,
    policy: OverlapPolicy | OverlapRule = "reject",
    values: Sequence[int] | np.ndarray | None = None,
    dtype: type | np.dtype | None = None,
    where: str | RecordNames = "",
) -> np.ndarray:
    """(H, W) label map of dense (H, W) masks (nonzero = inside): :func:`paint` of their
    row-major runs, mask ``i`` painted with ``values[i]`` (default ``i + 1``) under ``policy``.

    The masks are read one at a time and only their runs kept (never a stack of masks).
    ``shape``: the (H, W) every mask must have (default: the first mask's; needed when there
    may be no mask). ``where``: a name for messages, or one per mask. Raises
    :class:`~entityseg_data.errors.DataError` naming the mask whose shape differs.
    """
    label = where if isinstance(where, str) else ""
    regions: list[Runs] = []
    for i, m in enumerate(masks):
        a = np.asarray(m)
        if shape is None and a.ndim == 2:
            shape = (int(a.shape[0]), int(a.shape[1]))
        if shape is None or a.shape != tuple(shape):
            name = f"{_prefix(label)}mask {i}" if isinstance(where, str) else where[i]
            expected = "(H, W)" if shape is None else f"{tuple(shape)}"
            raise DataError(f"{name} has shape {a.shape}, expected {expected}")
        regions.append(runs_of_mask(a))
    if shape is None:
        raise DataError(f"{_prefix(label)}no masks and no size")
    h, w = shape
    return paint(regions, h * w, policy=policy, values=values, dtype=dtype, where=label).reshape(
        h, w
    )


def label_runs(flat: np.ndarray, labels: Sequence[int] | None = None) -> dict[int, Runs]:
    """Runs of every nonzero label of a flat label map (or of ``labels``, 0 included if listed;
    a label without pixels gets empty runs), in one pass over the pixels plus work per run."""
    flat = np.asarray(flat).reshape(-1)
    n = flat.size
    if n == 0:
        return {int(i): EMPTY for i in (labels or [])}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [n]]).astype(np.int64)
    values = flat[starts]
    if labels is None or 0 not in labels:  # 0 (background) only when asked for
        fg = values != 0
        starts, ends, values = starts[fg], ends[fg], values[fg]
    order = np.argsort(values, kind="stable")
    starts, ends, values = starts[order], ends[order], values[order]
    uniq, first = np.unique(values, return_index=True)
    last = np.append(first[1:], values.size)
    bounds = {int(u): (int(a), int(b)) for u, a, b in zip(uniq.tolist(), first, last)}
    wanted = list(bounds) if labels is None else [int(i) for i in labels]
    out: dict[int, Runs] = {}
    for i in wanted:
        if i not in bounds:
            out[i] = EMPTY
            continue
        a, b = bounds[i]
        out[i] = Runs(starts[a:b], ends[a:b])
    return out


def column_range(runs: Runs, height: int) -> tuple[int, int]:
    """``[x0, x1)``: the image columns touched by column-major runs ((0, 0) when empty)."""
    s, e = runs
    if s.size == 0:
        return 0, 0
    return int(s[0] // height), int((e[-1] - 1) // height) + 1


def decode_columns(runs: Runs, height: int, x0: int, x1: int) -> np.ndarray:
    """``(x1 - x0, H)`` uint8 block of a mask's transpose: image columns x0..x1-1 as rows, from
    column-major runs (only those pixels are written)."""
    a, b = x0 * height, x1 * height
    s = np.clip(runs.starts, a, b) - a
    e = np.clip(runs.ends, a, b) - a
    keep = e > s
    return mask_of_runs(Runs(s[keep], e[keep]), b - a).reshape(x1 - x0, height)


def columns_to_runs(block_t: np.ndarray, x0: int, height: int) -> Runs:
    """Column-major runs of a mask that is zero outside columns x0..x0+len(block_t)-1, given
    the ``(w_c, H)`` transposed block (nonzero = inside)."""
    r = runs_of_mask(np.ascontiguousarray(block_t).reshape(-1))
    off = x0 * height
    return Runs(r.starts + off, r.ends + off)


# ----------------------------------------------------------------------------- geometry
def bbox_colmajor(runs: Runs, height: int) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` in pixels of runs in COCO (column-major) order; zeros when empty."""
    s, e = runs
    if s.size == 0:
        return 0, 0, 0, 0
    last = e - 1
    x0, x1 = int(s[0] // height), int(last[-1] // height)
    spans = (s // height) != (last // height)
    ys = np.where(spans, 0, s % height)
    ye = np.where(spans, height - 1, last % height)
    y0, y1 = int(ys.min()), int(ye.max())
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def transpose(a: np.ndarray) -> np.ndarray:
    """C-contiguous transpose of a 2-D array (OpenCV's when importable, ~4x numpy's on 12 MP;
    else tile by tile, ~3x ``np.ascontiguousarray(a.T)`` which thrashes the cache)."""
    if a.ndim != 2:
        raise ValueError(f"transpose expects a 2-D array, got shape {a.shape}")
    if a.size >= (1 << 16) and a.dtype in (np.uint8, np.uint16, np.int32, np.float32):
        cv2 = _cv2()
        if cv2 is not None:
            return cv2.transpose(np.ascontiguousarray(a))
    r_n, c_n = a.shape
    if a.size < (1 << 16):
        return np.ascontiguousarray(a.T)
    if a.dtype == bool:
        return transpose(a.view(np.uint8)).view(bool)
    out = np.empty((c_n, r_n), a.dtype)
    block = 512
    for i in range(0, r_n, block):
        for j in range(0, c_n, block):
            out[j : j + block, i : i + block] = a[i : i + block, j : j + block].T
    return out


def _cv2() -> Any:
    try:
        import cv2  # optional accelerator
    except ImportError:
        return None
    return cv2


__all__ = [
    "EMPTY",
    "MAX_GROUPS",
    "OVERLAP_POLICIES",
    "OverlapPolicy",
    "OverlapRule",
    "Runs",
    "bbox_colmajor",
    "check_counts",
    "column_range",
    "columns_to_runs",
    "decode_columns",
    "difference",
    "conflicts",
    "counts_to_runs",
    "coverage",
    "decode_string",
    "decode_strings",
    "encode_string",
    "intersection",
    "label_dtype",
    "label_runs",
    "mask_of_counts",
    "mask_of_runs",
    "normalize_runs",
    "overlap_pairs",
    "overlap_pixels",
    "paint",
    "paint_masks",
    "runs_of_mask",
    "runs_to_counts",
    "transpose",
    "union",
]
