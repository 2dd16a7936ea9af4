"""A clearly labelled annotator SIMULATION for demos and tests (no human is present).

A simulated annotator starts from the pre-annotation (a non-overlapping label map) and applies
seeded, realistic edits, so that the agreement between two simulated annotators lands in a range we
can predict:

* moved boundaries: an entity grows by a few pixels into its neighbours;
* merged entities: two adjacent entities become one;
* split entities: a large entity is cut in two along its longer side;
* a missed entity: one entity is left unlabelled;
* an overlap: one extra, dilated copy of an entity that overlaps its neighbours (which the QA on
  pull must find).

Stage-2 naming draws a free-form name per mask from a vocabulary of realistic variants (plurals,
synonyms, case, misspellings) or 'unknown' / 'blurred' / '<supercategory>_other'.

Everything here is a pure function of its inputs and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from entityseg_data.annotation.rounds import EditBreakdown

SIMULATION_LABEL = "SIMULATED annotator (demo): seeded edits of the pre-annotations, not a human"


@dataclass(frozen=True)
class EditPlan:
    """How many edits of each kind a simulated annotator makes (per image).

    ``boundary_px`` is the width in pixels of a moved boundary.
    """

    moved_boundaries: int = 2
    boundary_px: int = 3
    merges: int = 1
    splits: int = 1
    missed: int = 1
    overlaps: int = 0


@dataclass
class EditLog:
    """What the simulation did, for reports and tests."""

    moved: list[int] = field(default_factory=list)
    merged: list[tuple[int, int]] = field(default_factory=list)
    split: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    overlapped: list[int] = field(default_factory=list)


def _ids(label_map: np.ndarray) -> list[int]:
    return [int(i) for i in np.unique(label_map) if i != 0]


def _neighbours(label_map: np.ndarray, k: int) -> list[int]:
    ring = ndimage.binary_dilation(label_map == k, iterations=1) & (label_map != k)
    return [int(i) for i in np.unique(label_map[ring]) if i != 0]


def simulate_masks(
    label_map: np.ndarray, *, seed: int, plan: EditPlan | None = None
) -> tuple[list[np.ndarray], EditLog]:
    """Edit a pre-annotation the way a (simulated) annotator would.

    Args:
        label_map: (H, W) integer label map of the pre-annotation (0 = unlabelled).
        seed: the simulated annotator's seed (different annotators = different seeds).
        plan: the edits to make.

    Returns:
        (masks, log): a list of (H, W) bool masks (disjoint, except for the planned overlaps),
        and the log of edits made.
    """
    plan = plan or EditPlan()
    rng = np.random.default_rng(seed)
    lm = label_map.astype(np.int32, copy=True)
    log = EditLog()
    ids = _ids(lm)
    next_id = (max(ids) if ids else 0) + 1

    for _ in range(plan.moved_boundaries):
        ids = _ids(lm)
        if not ids:
            break
        k = int(rng.choice(ids))
        grown = ndimage.binary_dilation(lm == k, iterations=max(1, plan.boundary_px))
        lm[grown & (lm != 0)] = k
        log.moved.append(k)

    for _ in range(plan.merges):
        ids = _ids(lm)
        candidates = [(a, b) for a in ids for b in _neighbours(lm, a) if a < b]
        if not candidates:
            break
        a, b = candidates[int(rng.integers(len(candidates)))]
        lm[lm == b] = a
        log.merged.append((a, b))

    for _ in range(plan.splits):
        ids = _ids(lm)
        if not ids:
            break
        sizes = np.array([(lm == k).sum() for k in ids])
        k = ids[int(np.argmax(sizes))]
        ys, xs = np.nonzero(lm == k)
        if xs.max() - xs.min() >= ys.max() - ys.min():
            cut = np.median(xs)
            sel = xs > cut
        else:
            cut = np.median(ys)
            sel = ys > cut
        if sel.any() and (~sel).any():
            lm[ys[sel], xs[sel]] = next_id
            next_id += 1
            log.split.append(k)

    for _ in range(plan.missed):
        ids = _ids(lm)
        if len(ids) <= 1:
            break
        sizes = np.array([(lm == k).sum() for k in ids])
        k = ids[int(np.argmin(sizes))]  # annotators miss small things
        lm[lm == k] = 0
        log.missed.append(k)

    masks = {k: lm == k for k in _ids(lm)}
    for _ in range(plan.overlaps):
        if not masks:
            break
        k = int(rng.choice(list(masks)))
        # the annotator paints over the neighbours without erasing them
        masks[k] = ndimage.binary_dilation(masks[k], iterations=max(2, 2 * plan.boundary_px))
        log.overlapped.append(k)
    return list(masks.values()), log


@dataclass(frozen=True)
class LeadTimeModel:
    """Seconds a SIMULATED annotator is said to spend (no human is timed): a base per task plus
    a cost per seed entity reviewed and per edit made, so better seeds cost less time. The
    numbers are assumptions for demos (stated wherever the times are shown), not measurements.
    """

    base: float = 20.0  # open the task, look at the image
    per_seed_entity: float = 2.0  # review one pre-annotated entity
    per_edited: float = 10.0  # correct a boundary
    per_deleted: float = 4.0  # delete a wrong entity
    per_added: float = 30.0  # draw a missing entity from scratch
    stage2_base: float = 10.0
    per_named: float = 4.0  # stage 2: type one name


def simulated_lead_time(
    breakdown: EditBreakdown, *, stage: int = 1, model: LeadTimeModel | None = None
) -> float:
    """The SIMULATED seconds of one task from its edit breakdown against the seed (stage 1) or
    its number of named entities (stage 2)."""
    m = model or LeadTimeModel()
    if stage == 2:
        return m.stage2_base + m.per_named * breakdown.n_final
    return (
        m.base
        + m.per_seed_entity * breakdown.n_seed
        + m.per_edited * breakdown.edited
        + m.per_deleted * breakdown.deleted
        + m.per_added * breakdown.added
    )


# Realistic raw-name variants per concept: what different people type for the same thing.
NAME_VARIANTS: dict[str, tuple[str, ...]] = {
    "person": ("person", "People", "man", "human", "persons", "pedestrian"),
    "sky": ("sky", "Sky", "skies", "clear sky"),
    "tree": ("tree", "trees", "Tree", "treee"),
    "grass": ("grass", "lawn", "Grass", "grasses"),
    "building": ("building", "buildings", "house", "Building"),
    "car": ("car", "cars", "automobile", "auto"),
    "cat": ("cat", "cats", "kitty", "Cat"),
    "cup": ("cup", "mug", "cups", "coffee cup"),
    "rocket": ("rocket", "Rocket", "rockets", "missile"),
    "road": ("road", "roads", "street", "Road"),
    "wall": ("wall", "walls", "Wall", "wal"),
    "table": ("table", "tables", "desk", "Table"),
}
SPECIAL_NAMES = ("unknown", "blurred", "furniture_other", "plant_other")


def simulate_name(
    concept: str | None, *, rng: np.random.Generator, special_rate: float = 0.15
) -> str:
    """A free-form stage-2 name for an entity of ``concept`` (None = unknown concept)."""
    if concept is None or rng.random() < special_rate:
        return str(rng.choice(SPECIAL_NAMES))
    variants = NAME_VARIANTS.get(concept, (concept, concept + "s", concept.capitalize()))
    return str(rng.choice(variants))
