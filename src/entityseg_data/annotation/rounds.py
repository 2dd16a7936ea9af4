"""What an annotator did to the seed a task started from: the edit breakdown (issue 18).

Pure functions of a seed (the pre-annotation, or for stage 2 the approved stage-1 masks) and the
submission as pulled (after the overlap rule). The pull stores the result per submission in the
catalog (:class:`~entityseg_data.catalog.EditRecord`); ``entityseg-data rounds report`` sums it
per round and per model version.

**Matching rule.** A submitted entity is the edit of the seed entity it overlaps most: pairs with
mask IoU >= ``match_iou`` (default 0.5) are taken greedily by decreasing IoU, each entity at most
once (equal IoU: the pair whose ids are equal first, then the lower seed index, then the lower
submission index). Region ids are not trusted alone: a person may delete a region and redraw it
(new id, same object), or reuse an id for something else. With IoU > 0.5 on both sides a mask
can overlap only one other mask that much when the masks of each side are disjoint, so for
non-overlapping masks the matching does not depend on the greedy order.

Then, of the seed's ``n_seed`` entities: ``unchanged`` were matched to a submitted entity with
exactly the same pixels (IoU 1), ``edited`` were matched with IoU < 1 (binned by IoU:
:data:`~entityseg_data.catalog.records.IOU_BINS`), ``deleted`` were not matched (deleted, merged
into another or redrawn beyond recognition); of the submission's ``n_final`` entities, ``added``
were not matched. ``unchanged + edited + deleted == n_seed`` and ``unchanged + edited + added ==
n_final``.

**Pixels changed**: pixels whose entity differs between the seed and the submission, a matched
pair counting as the same entity; a pixel labelled on one side only counts as changed. Where the
masks of one side overlap, the later mask in file order holds the pixel (the pull's overlap rule
leaves the submission disjoint except under the ``reject`` policy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from entityseg_data.catalog.records import IOU_BINS, iou_bin_labels
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import ImageAnnotation

MATCH_IOU = 0.5


@dataclass(frozen=True)
class EditBreakdown:
    """Edits of one submission against its seed (module docstring: the rule and the counts).

    ``matches`` lists ``(seed entity id, submitted entity id, IoU)`` of the matched pairs;
    ``iou_bins`` counts edited entities per bin (keys ``"0.50-0.75"`` ...); pixel counts are
    of the whole image (``pixels_total`` = height x width)."""

    n_seed: int
    n_final: int
    unchanged: int
    edited: int
    deleted: int
    added: int
    iou_bins: Mapping[str, int] = field(default_factory=dict)
    pixels_changed: int = 0
    pixels_total: int = 0
    matches: tuple[tuple[str, str, float], ...] = ()

    @property
    def accepted_fraction(self) -> float | None:
        """Share of the seed's entities accepted unchanged (None without a seed)."""
        return self.unchanged / self.n_seed if self.n_seed else None

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "matches"}
        out["iou_bins"] = dict(self.iou_bins)
        return out


class SeedMeasure(Protocol):
    """Scores a seed as predictions against a submission as ground truth (given by the API from
    the evaluation stage; the annotation stage does not import it). Returns fractions under the
    keys ``ap``, ``ap50``, ``ar``, ``boundary_ap`` (any may be missing)."""

    def __call__(self, seed: ImageAnnotation, final: ImageAnnotation) -> Mapping[str, float]: ...


def match_entities(
    ious: np.ndarray,
    seed_ids: Sequence[str],
    final_ids: Sequence[str],
    match_iou: float = MATCH_IOU,
) -> list[tuple[int, int, float]]:
    """One-to-one ``(seed index, submission index, IoU)`` pairs of the matching rule (module
    docstring); ``ious`` is (n_seed, n_final)."""
    if ious.size == 0:
        return []
    s_idx, f_idx = np.nonzero(ious >= match_iou)
    same = np.array(
        [str(seed_ids[a]) == str(final_ids[b]) for a, b in zip(s_idx, f_idx)], dtype=bool
    )
    # sort keys, last one first: -IoU, then equal ids first, then seed index, submission index
    order = np.lexsort((f_idx, s_idx, ~same, -ious[s_idx, f_idx]))
    taken_s: set[int] = set()
    taken_f: set[int] = set()
    pairs = []
    for k in order:
        a, b = int(s_idx[k]), int(f_idx[k])
        if a not in taken_s and b not in taken_f:
            taken_s.add(a)
            taken_f.add(b)
            pairs.append((a, b, float(ious[a, b])))
    return pairs


def bin_of(iou: float, edges: Sequence[float] = IOU_BINS) -> int:
    """Index of the IoU bin ``[edges[k], edges[k+1])`` holding ``iou`` (the last bin is closed
    at its top edge)."""
    for k in range(len(edges) - 1):
        if iou < edges[k + 1]:
            return k
    return len(edges) - 2


def _label_map(ann: ImageAnnotation, values: Sequence[int]) -> np.ndarray:
    """(H, W) int32 map: entity k -> ``values[k]`` (0 = unlabelled; later masks win)."""
    if not ann.entities:
        return np.zeros((ann.height, ann.width), np.int32)
    return rle_utils.rles_to_label_map(
        [e.segmentation for e in ann.entities],
        ann.height,
        ann.width,
        dtype=np.int32,
        ids=list(values),
        policy="later_wins",
    )


def edit_breakdown(
    seed: ImageAnnotation | None,
    final: ImageAnnotation,
    *,
    match_iou: float = MATCH_IOU,
    edges: Sequence[float] = IOU_BINS,
) -> EditBreakdown:
    """The edit breakdown of ``final`` (a submission after the overlap rule) against ``seed``
    (None: the task had no seed, every entity is added). Sizes must agree."""
    labels = iou_bin_labels(tuple(edges))
    bins = dict.fromkeys(labels, 0)
    h, w = final.height, final.width
    if seed is not None and (seed.height, seed.width) != (h, w):
        raise ValueError(f"seed is {seed.height}x{seed.width}, submission is {h}x{w}")
    seed_ents = seed.entities if seed is not None else ()
    fin = final.entities
    if seed_ents and fin:
        ious = rle_utils.iou_matrix(
            [e.segmentation for e in seed_ents], [e.segmentation for e in fin]
        )
    else:
        ious = np.zeros((len(seed_ents), len(fin)))
    pairs = match_entities(
        np.asarray(ious, np.float64),
        [str(e.id) for e in seed_ents],
        [str(e.id) for e in fin],
        match_iou,
    )
    unchanged = 0
    for _, _, iou in pairs:
        if iou >= 1.0:
            unchanged += 1
        else:
            bins[labels[bin_of(iou, edges)]] += 1
    edited = len(pairs) - unchanged
    # pixels: seed entity k -> the submission's entity it matched (1-based), unmatched seeds get
    # labels past the submission's so they never agree with it
    final_of = {a: b + 1 for a, b, _ in pairs}
    seed_values = [final_of.get(k, len(fin) + 1 + k) for k in range(len(seed_ents))]
    if seed is not None and seed_ents:
        changed = int(
            np.count_nonzero(
                _label_map(seed, seed_values) != _label_map(final, range(1, len(fin) + 1))
            )
        )
    else:
        changed = int(rle_utils.area(rle_utils.merge([e.segmentation for e in fin]))) if fin else 0
    return EditBreakdown(
        n_seed=len(seed_ents),
        n_final=len(fin),
        unchanged=unchanged,
        edited=edited,
        deleted=len(seed_ents) - len(pairs),
        added=len(fin) - len(pairs),
        iou_bins=bins,
        pixels_changed=changed,
        pixels_total=h * w,
        matches=tuple((str(seed_ents[a].id), str(fin[b].id), iou) for a, b, iou in pairs),
    )


__all__ = [
    "MATCH_IOU",
    "EditBreakdown",
    "SeedMeasure",
    "bin_of",
    "edit_breakdown",
    "match_entities",
]
