"""Choosing what to annotate next: the pure parts (no files, no catalog).

* :func:`prediction_signals`: uncertainty signals of one image's model prediction (mean entity
  score, covered area fraction, full-view vs crop-view disagreement when the model recorded it);
* :func:`uncertainty`: one number in [0, 1] from those signals (weighted mean of the signals
  that are known), with the reasons in words;
* :func:`k_center_greedy`: diversity by greedy k-center over embeddings (each pick is the
  candidate farthest from everything annotated or chosen so far), optionally blended with the
  uncertainty, with near-duplicate removal and per-group (source) quotas;
* :func:`random_pick`: the seeded random baseline under the same quotas;
* :func:`coverage`: how well a set of chosen points covers a point cloud (max / mean distance of
  any point to its nearest chosen one, clusters hit), for tests and benchmarks.

Every function is deterministic: candidates are ordered by image id and ties go to the smaller
id; randomness only through an explicit seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from entityseg_data.errors import ConfigError
from entityseg_data.masks import rle as rle_ops
from entityseg_data.masks.types import ImageMasks

#: the ``extra`` key of a predicted entity holding its view disagreement in [0, 1]
VIEW_DISAGREEMENT = "view_disagreement"


@dataclass(frozen=True)
class ImageSignals:
    """Uncertainty signals of one image's prediction.

    ``mean_score``: mean entity score in [0, 1] (None: no scored entity); ``covered``: fraction
    of the image's pixels inside some entity, in [0, 1]; ``view_disagreement``: area-weighted
    mean over entities of their full-view vs crop-view disagreement in [0, 1] (None when the
    model did not record it); ``n_entities``: entities predicted."""

    mean_score: float | None
    covered: float
    view_disagreement: float | None
    n_entities: int

    def to_json(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"covered": self.covered, "n_entities": self.n_entities}
        if self.mean_score is not None:
            out["mean_score"] = self.mean_score
        if self.view_disagreement is not None:
            out["view_disagreement"] = self.view_disagreement
        return out


def _number(v: Any) -> float | None:
    """A finite number as float, else None (bools are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def signals_of(
    pixels: int,
    areas: Sequence[float],
    scores: Sequence[float | None],
    disagreements: Sequence[float | None],
) -> ImageSignals:
    """:class:`ImageSignals` from per-entity areas (pixels), scores and view disagreements
    (None where unknown) of an image of ``pixels`` pixels."""
    n = len(areas)
    if n == 0:
        return ImageSignals(mean_score=None, covered=0.0, view_disagreement=None, n_entities=0)
    covered = float(min(1.0, float(sum(areas)) / max(1, pixels)))
    known = [s for s in scores if s is not None]
    mean_score = float(np.clip(np.mean(known), 0.0, 1.0)) if known else None
    vd = [(v, float(a)) for v, a in zip(disagreements, areas) if v is not None]
    disagreement = None
    if vd:
        tot = sum(a for _, a in vd)
        val = sum(v * a for v, a in vd) / tot if tot > 0 else sum(v for v, _ in vd) / len(vd)
        disagreement = float(min(1.0, max(0.0, val)))
    return ImageSignals(
        mean_score=mean_score, covered=covered, view_disagreement=disagreement, n_entities=n
    )


def prediction_signals(masks: ImageMasks) -> ImageSignals:
    """The :class:`ImageSignals` of one prediction (entities' ``score``, areas from their RLEs,
    ``extra["view_disagreement"]`` when present)."""
    areas = [float(a) for a in rle_ops.areas(masks.rles)] if masks.entities else []
    return signals_of(
        int(masks.height) * int(masks.width),
        areas,
        [None if e.score is None else float(e.score) for e in masks.entities],
        [_number(e.extra.get(VIEW_DISAGREEMENT)) for e in masks.entities],
    )


def payload_signals(data: Mapping[str, Any]) -> ImageSignals | None:
    """The :class:`ImageSignals` of a prediction file's payload from the ``area`` / ``score`` /
    ``view_disagreement`` each entity record carries (the prediction writers store them), without
    decoding a mask: ~1 ms instead of ~40-60 ms for 100 entities at 1.5 MP. None when the
    payload lacks a usable size or an entity's ``area`` (then use :func:`prediction_signals`
    on the checked masks)."""
    h, w = data.get("height"), data.get("width")
    entities = data.get("entities")
    if type(h) is not int or type(w) is not int or h <= 0 or w <= 0:
        return None
    if not isinstance(entities, list) or not all(isinstance(e, Mapping) for e in entities):
        return None
    areas = [_number(e.get("area")) for e in entities]
    if any(a is None or not 0 <= a <= h * w for a in areas):
        return None
    return signals_of(
        h * w,
        [float(a) for a in areas if a is not None],
        [_number(e.get("score")) for e in entities],
        [_number(e.get(VIEW_DISAGREEMENT)) for e in entities],
    )


@dataclass(frozen=True)
class UncertaintyWeights:
    """Weights (>= 0) of the uncertainty terms: ``score`` (1 - mean entity score), ``area``
    (1 - covered fraction), ``views`` (view disagreement). A term whose signal is unknown is
    left out and the others are re-normalised."""

    score: float = 1.0
    area: float = 1.0
    views: float = 1.0

    def __post_init__(self) -> None:
        for name in ("score", "area", "views"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ConfigError(f"uncertainty weight {name!r} must be a number >= 0, got {v!r}")


def uncertainty(
    signals: ImageSignals | None,
    weights: UncertaintyWeights = UncertaintyWeights(),
    *,
    missing: float = 1.0,
) -> tuple[float, tuple[str, ...]]:
    """``(u, reasons)``: the image's uncertainty in [0, 1] (weighted mean of the known terms:
    ``1 - mean_score``, ``1 - covered``, ``view_disagreement``) and why, in words.

    ``signals`` None (no prediction) or no known term with a positive weight gives ``missing``.
    """
    if signals is None:
        return float(missing), (f"no prediction (uncertainty {missing:.2f} assumed)",)
    terms: list[tuple[float, float, str]] = []
    if signals.mean_score is not None and weights.score > 0:
        terms.append(
            (weights.score, 1.0 - signals.mean_score, f"mean entity score {signals.mean_score:.2f}")
        )
    elif signals.n_entities == 0 and weights.score > 0:
        terms.append((weights.score, 1.0, "no entity predicted"))
    if weights.area > 0:
        terms.append((weights.area, 1.0 - signals.covered, f"covered area {signals.covered:.0%}"))
    if signals.view_disagreement is not None and weights.views > 0:
        terms.append(
            (
                weights.views,
                signals.view_disagreement,
                f"full/crop views disagree {signals.view_disagreement:.2f}",
            )
        )
    if not terms:
        return float(missing), (f"no uncertainty signal (uncertainty {missing:.2f} assumed)",)
    total = sum(w for w, _, _ in terms)
    u = sum(w * v for w, v, _ in terms) / total
    return float(min(1.0, max(0.0, u))), tuple(text for _, _, text in terms)


# ---------------------------------------------------------------------- quotas
def parse_quotas(entries: Sequence[str], n: int) -> dict[str, int]:
    """``["coco=10", "unsplash=0.25"]`` -> ``{"coco": 10, "unsplash": round(0.25 * n)}``: the
    most images chosen per source (a count, or a fraction in (0, 1) of ``n``). ConfigError
    naming the entry when it is malformed."""
    out: dict[str, int] = {}
    for entry in entries:
        name, sep, value = str(entry).partition("=")
        name = name.strip()
        try:
            if not sep or not name:
                raise ValueError
            v = float(value)
            if not math.isfinite(v) or v < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"quota {entry!r}: expected SOURCE=COUNT or SOURCE=FRACTION (e.g. coco=10, "
                "unsplash=0.25)"
            ) from None
        if name in out:
            raise ConfigError(f"quota {entry!r}: source {name!r} given twice")
        if 0 < v < 1:
            out[name] = math.floor(v * n + 0.5)
        elif v != int(v):
            raise ConfigError(f"quota {entry!r}: a count must be a whole number")
        else:
            out[name] = int(v)
    return out


# ---------------------------------------------------------------------- greedy k-center
@dataclass(frozen=True)
class Pick:
    """One chosen candidate: ``index`` into the candidate arrays, its ``image_id``, the
    ``gain`` it won with, its distance to the nearest center before it was chosen (None when
    there was none yet) and its uncertainty."""

    index: int
    image_id: int
    gain: float
    distance: float | None
    uncertainty: float


@dataclass(frozen=True)
class Duplicate:
    """A candidate dropped as a near duplicate of ``of`` (an image chosen or already annotated)
    at ``distance``: the embedding distance (``kind="embedding"``) or the pHash Hamming distance
    in bits (``kind="phash"``)."""

    image_id: int
    of: int
    distance: float
    kind: str = "embedding"


def _hash_array(hashes: Sequence[int | None] | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 values, has-a-hash mask) of ``n`` optional 64-bit perceptual hashes."""
    vals = np.zeros(n, dtype=np.uint64)
    has = np.zeros(n, dtype=bool)
    if hashes is not None:
        if len(hashes) != n:
            raise ValueError(f"hashes must have {n} entries")
        for i, h in enumerate(hashes):
            if h is not None:
                vals[i] = np.uint64(int(h) & 0xFFFFFFFFFFFFFFFF)
                has[i] = True
    return vals, has


@dataclass(frozen=True)
class GreedyResult:
    picks: tuple[Pick, ...]
    duplicates: tuple[Duplicate, ...] = ()
    quota_full: tuple[str, ...] = field(default=())


class _Space:
    """Euclidean distances from every point to one point, as ``|x|^2 + |c|^2 - 2 x.c`` (one
    matrix-vector product in the points' dtype: no (N, D) temporary; float32 embeddings stay
    float32), float64 results."""

    def __init__(self, points: np.ndarray) -> None:
        self.points = points
        self.sq = np.einsum("ij,ij->i", points, points, dtype=np.float64)

    def to(self, c: np.ndarray) -> np.ndarray:
        c = np.asarray(c, dtype=self.points.dtype)
        dots = (self.points @ c).astype(np.float64)
        d2 = self.sq + float(np.dot(c.astype(np.float64), c.astype(np.float64))) - 2.0 * dots
        return np.sqrt(np.maximum(d2, 0.0))


def _as_points(points: np.ndarray) -> np.ndarray:
    a = np.asarray(points)
    return np.ascontiguousarray(a if a.dtype in (np.float32, np.float64) else a.astype(np.float64))


def k_center_greedy(
    points: np.ndarray,
    k: int,
    *,
    ids: Sequence[int],
    uncertainty: np.ndarray | None = None,
    uncertainty_weight: float = 0.0,
    centers: np.ndarray | None = None,
    center_ids: Sequence[int] | None = None,
    min_distance: float = 0.0,
    groups: Sequence[str] | None = None,
    quotas: Mapping[str, int] | None = None,
    hashes: Sequence[int | None] | None = None,
    center_hashes: Sequence[int | None] | None = None,
    max_hash_distance: int = -1,
) -> GreedyResult:
    """Choose up to ``k`` candidates by greedy k-center, blended with uncertainty.

    Args:
        points: (N, D) float embeddings of the candidates (Euclidean distance; for
            L2-normalised vectors ``d**2 = 2 - 2 cos``).
        k: how many to choose.
        ids: (N,) distinct image ids (ties go to the smaller id).
        uncertainty: (N,) in [0, 1], or None (all 0).
        uncertainty_weight: ``w`` in [0, 1]: each step picks the eligible candidate with the
            largest ``(1 - w) * d / d_max + w * u`` where ``d`` is its distance to the nearest
            center (images already annotated, ``centers``, and the ones chosen so far) and
            ``d_max`` the largest such distance among the eligible; with no center yet every
            ``d / d_max`` is 1. ``w = 0`` is plain k-center greedy (the farthest point first),
            ``w = 1`` ranks by uncertainty alone.
        centers: (M, D) embeddings of images already annotated (or chosen earlier), or None.
        center_ids: (M,) their image ids (for duplicate reports).
        min_distance: a candidate closer than this to a center or to a chosen one is dropped
            as a near duplicate (0 = keep all).
        groups: (N,) group (source) of each candidate; ``quotas`` maps a group to the most
            picks it may get (groups not named are unlimited).
        hashes / center_hashes: 64-bit perceptual hashes (None: unknown) of the candidates and
            the centers; a candidate within ``max_hash_distance`` bits (Hamming) of a center or
            a chosen one is dropped as a near duplicate too (-1 = off).

    Returns the picks in order, the candidates dropped as duplicates and the groups whose
    quota filled up. Cost: O(k * N * D) time (one matrix-vector product per pick, in the
    points' dtype: pass float32 embeddings to halve it), O(N) extra memory.
    """
    pts = _as_points(points)
    n = int(pts.shape[0]) if pts.ndim == 2 else 0
    if pts.ndim != 2:
        raise ValueError(f"points must be (N, D), got shape {pts.shape}")
    ids_arr = np.asarray(list(ids), dtype=np.int64)
    if ids_arr.shape != (n,) or len(set(ids_arr.tolist())) != n:
        raise ValueError("ids must be N distinct image ids")
    if not 0.0 <= uncertainty_weight <= 1.0:
        raise ValueError(f"uncertainty_weight must be in [0, 1], got {uncertainty_weight}")
    u = np.zeros(n) if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
    if u.shape != (n,):
        raise ValueError(f"uncertainty must be ({n},), got {u.shape}")
    grp = [""] * n if groups is None else [str(g) for g in groups]
    if len(grp) != n:
        raise ValueError(f"groups must have {n} entries")
    quotas = dict(quotas or {})
    # process in id order: argmax returns the first maximum = the smallest id
    order = np.argsort(ids_arr, kind="stable")
    pts, ids_arr, u = pts[order], ids_arr[order], u[order]
    space = _Space(pts)
    hv, has_h = _hash_array(hashes, n)
    hv, has_h = hv[order], has_h[order]
    use_hash = max_hash_distance >= 0 and bool(has_h.any())
    grp = [grp[i] for i in order]
    grp_arr = np.asarray(grp, dtype=object)

    mind = np.full(n, np.inf)
    nearest = np.full(n, -1, dtype=np.int64)
    if centers is not None and len(centers):
        cen = np.asarray(centers)
        cids = list(center_ids) if center_ids is not None else [-1] * len(cen)
        for j in range(len(cen)):
            d = space.to(cen[j])
            closer = d < mind
            mind[closer] = d[closer]
            nearest[closer] = int(cids[j])
    alive = np.ones(n, dtype=bool)
    duplicates: list[Duplicate] = []

    def drop_hash_twins(h: int, of: int) -> None:
        bits = np.bitwise_count(np.bitwise_xor(hv, np.uint64(h)))
        dup = alive & has_h & (bits <= max_hash_distance)
        for j in np.flatnonzero(dup):
            duplicates.append(Duplicate(int(ids_arr[j]), of, float(bits[j]), "phash"))
        alive[dup] = False

    if min_distance > 0:
        dup = alive & (mind < min_distance)
        for i in np.flatnonzero(dup):
            duplicates.append(Duplicate(int(ids_arr[i]), int(nearest[i]), float(mind[i])))
        alive &= ~dup
    if use_hash and centers is not None and len(centers):
        cvals, chas = _hash_array(center_hashes, len(centers))
        cids = list(center_ids) if center_ids is not None else [-1] * len(centers)
        for j in np.flatnonzero(chas):
            drop_hash_twins(int(cvals[j]), int(cids[j]))
    taken: dict[str, int] = {}
    full: list[str] = []
    picks: list[Pick] = []
    while len(picks) < k:
        eligible = alive.copy()
        for g, q in quotas.items():
            if taken.get(g, 0) >= q:
                eligible &= grp_arr != g
        if not eligible.any():
            break
        finite = eligible & np.isfinite(mind)
        if finite.any():
            dmax = float(mind[finite].max())
            dn = np.where(np.isfinite(mind), mind / dmax if dmax > 0 else 0.0, 1.0)
        else:
            dn = np.ones(n)
        gain = (1.0 - uncertainty_weight) * dn + uncertainty_weight * u
        gain = np.where(eligible, gain, -np.inf)
        i = int(np.argmax(gain))
        dist = None if not np.isfinite(mind[i]) else float(mind[i])
        picks.append(Pick(int(order[i]), int(ids_arr[i]), float(gain[i]), dist, float(u[i])))
        alive[i] = False
        g = grp[i]
        taken[g] = taken.get(g, 0) + 1
        if g in quotas and taken[g] >= quotas[g] and g not in full:
            full.append(g)
        d = space.to(pts[i])
        if min_distance > 0:
            dup = alive & (d < min_distance)
            for j in np.flatnonzero(dup):
                duplicates.append(Duplicate(int(ids_arr[j]), int(ids_arr[i]), float(d[j])))
            alive &= ~dup
        if use_hash and has_h[i]:
            drop_hash_twins(int(hv[i]), int(ids_arr[i]))
        closer = d < mind
        mind[closer] = d[closer]
        nearest[closer] = int(ids_arr[i])
    return GreedyResult(tuple(picks), tuple(duplicates), tuple(full))


def random_pick(
    ids: Sequence[int],
    k: int,
    *,
    seed: int,
    groups: Sequence[str] | None = None,
    quotas: Mapping[str, int] | None = None,
) -> list[int]:
    """The seeded random baseline: up to ``k`` of ``ids`` in a random order (a permutation of
    the ids sorted ascending, by ``numpy.random.default_rng(seed)``), skipping a group whose
    quota is full. Same ids, seed and quotas -> same list."""
    pairs = sorted(zip((int(i) for i in ids), groups or [""] * len(ids)))
    rng = np.random.default_rng(int(seed))
    quotas = dict(quotas or {})
    taken: dict[str, int] = {}
    out: list[int] = []
    for j in rng.permutation(len(pairs)):
        if len(out) >= k:
            break
        image_id, g = pairs[int(j)]
        if g in quotas and taken.get(g, 0) >= quotas[g]:
            continue
        taken[g] = taken.get(g, 0) + 1
        out.append(image_id)
    return out


# ---------------------------------------------------------------------- measuring coverage
@dataclass(frozen=True)
class Coverage:
    """How well chosen points cover a point cloud: ``max_distance`` (the k-center objective)
    and ``mean_distance`` of every point to its nearest chosen point; ``clusters_hit`` of
    ``clusters`` (when labels are given: clusters with at least one chosen point)."""

    max_distance: float
    mean_distance: float
    clusters_hit: int | None = None
    clusters: int | None = None


def coverage(
    points: np.ndarray, chosen: Sequence[int], labels: Sequence[int] | None = None
) -> Coverage:
    """:class:`Coverage` of ``points`` (N, D) by the rows ``chosen`` (indices)."""
    pts = _as_points(points)
    idx = [int(i) for i in chosen]
    if not idx:
        return Coverage(math.inf, math.inf, 0 if labels is not None else None)
    mind = np.full(len(pts), np.inf)
    space = _Space(pts)
    for i in idx:
        mind = np.minimum(mind, space.to(pts[i]))
    hit = total = None
    if labels is not None:
        lab = np.asarray(labels)
        hit = len({int(lab[i]) for i in idx})
        total = len(set(lab.tolist()))
    return Coverage(float(mind.max()), float(mind.mean()), hit, total)


__all__ = [
    "VIEW_DISAGREEMENT",
    "Coverage",
    "Duplicate",
    "GreedyResult",
    "ImageSignals",
    "Pick",
    "UncertaintyWeights",
    "coverage",
    "k_center_greedy",
    "parse_quotas",
    "payload_signals",
    "prediction_signals",
    "random_pick",
    "signals_of",
    "uncertainty",
]
