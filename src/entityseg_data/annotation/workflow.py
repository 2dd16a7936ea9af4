"""The pure part of the two-stage workflow: assignment, approval, the stage-2 merge, rework notes.

No I/O here: these functions take and return typed records, so the unit tier tests them without
an annotation server (push and pull apply them to the workspace and a backend).

**Assignment** (the Community edition of Label Studio has no task assignment; the convention is
one project per stage and annotator). Images are taken in id order; each new image's *primary*
annotator is the one with the fewest primary images so far (ties: a stable hash of the seed and
the image id picks among them), so every annotator stays within one image of the mean, the result
is deterministic, and images assigned before keep their annotators (adding images never moves
old ones). A sample of images (each independently with probability ``overlap_fraction``, at most
``overlap_images`` in total, like the paper's 500 images / 1.5%) also goes to
``overlap_annotators - 1`` more annotators, again the least loaded in that role.

**Approval.** For each image, the annotation of the first annotator in the image's assignment
order (the primary first) whose annotation passed QA is ``approved``; other passing ones are
``pulled``; failing ones keep their status (``rejected`` / ``rework``).

**Stage-2 merge.** Geometry is locked in stage 2: every seeded region keeps its stage-1 mask
exactly and gets the name or flag the annotator gave it. A seeded region whose mask was changed,
a region that was not seeded, and a seeded region that was deleted are reported (errors: the
annotation goes back for rework); regions shown only as context (display label ``context``,
e.g. an entity named in another tile) are ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from entityseg_data.annotation.backend import Feedback, RegionInfo
from entityseg_data.annotation.qa import Finding
from entityseg_data.errors import ConfigError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity, ImageAnnotation
from entityseg_data.masks.types import EntityId

CONTEXT_LABEL = "context"
FIX_LABEL = "QA fix"
UNKNOWN = "unknown"
BLURRED = "blurred"


def flag_choices(supercategories: Sequence[str]) -> list[str]:
    """The stage-2 flags: 'unknown', 'blurred', then '<supercategory>_other' for each."""
    return [UNKNOWN, BLURRED, *(f"{s}_other" for s in supercategories)]


# ------------------------------------------------------------------------------------ assignment
def _unit(seed: int, image_id: int, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _least_loaded(
    candidates: Sequence[str], load: Mapping[str, int], seed: int, image_id: int, salt: str
) -> str:
    low = min(load[a] for a in candidates)
    tied = [a for a in candidates if load[a] == low]
    return tied[int(_unit(seed, image_id, salt) * len(tied)) % len(tied)]


def assign_images(
    image_ids: Iterable[int],
    annotators: Sequence[str],
    *,
    overlap_fraction: float,
    overlap_images: int,
    overlap_annotators: int,
    seed: int = 0,
    existing: Mapping[int, Sequence[str]] | None = None,
) -> dict[int, list[str]]:
    """Annotators of each new image, primary first (see the module docstring).

    Args:
        image_ids: images to assign (already assigned ones, in ``existing``, are skipped).
        annotators: the team, in order.
        overlap_fraction: probability that an image joins the overlap sample.
        overlap_images: cap on the overlap sample (counting ``existing``).
        overlap_annotators: annotators per overlap image (primary included).
        seed: the workspace seed (tie breaks and the overlap draw).
        existing: image id -> annotators of images assigned before; they count towards the
            loads and the cap and are not returned.

    Returns ``{image_id: [primary, ...]}`` for the new images.
    """
    if not annotators:
        raise ConfigError("annotation.annotators is empty: name at least one annotator")
    if len(set(annotators)) != len(annotators):
        raise ConfigError(f"annotation.annotators has duplicates: {list(annotators)}")
    existing = existing or {}
    primary = {a: 0 for a in annotators}
    second = {a: 0 for a in annotators}
    n_overlap = 0
    for group in existing.values():
        if group and group[0] in primary:
            primary[group[0]] += 1
        for a in group[1:]:
            if a in second:
                second[a] += 1
        n_overlap += len(group) > 1
    m = max(1, min(overlap_annotators, len(annotators)))
    out: dict[int, list[str]] = {}
    for iid in sorted(set(int(i) for i in image_ids)):
        if iid in existing:
            continue
        overlap = (
            m > 1 and n_overlap < overlap_images and _unit(seed, iid, "overlap") < overlap_fraction
        )
        candidates: Sequence[str] = annotators
        if overlap:  # among the least loaded, the one who did most overlap work leads
            low = min(primary.values())
            tied = [a for a in annotators if primary[a] == low]
            most = max(second[a] for a in tied)
            candidates = [a for a in tied if second[a] == most]
        first = _least_loaded(candidates, primary, seed, iid, "primary")
        primary[first] += 1
        group = [first]
        if overlap:
            for k in range(m - 1):
                rest = [a for a in annotators if a not in group]
                extra = _least_loaded(rest, second, seed, iid, f"overlap{k}")
                second[extra] += 1
                group.append(extra)
            n_overlap += 1
        out[iid] = group
    return out


# ------------------------------------------------------------------------------------ approval
@dataclass(frozen=True)
class Candidate:
    """One (image, annotator) annotation of a stage as the approval sees it."""

    image_id: int
    annotator: str
    status: str
    passed: bool


def approval(
    candidates: Iterable[Candidate],
    assignment: Mapping[int, Sequence[str]],
    *,
    keep: Collection[int] = (),
) -> dict[tuple[int, str], str]:
    """The status changes the approval rule makes: ``{(image_id, annotator): new status}``.

    Candidates whose status is ``pulled`` or ``approved`` and whose QA passed can be approved;
    the first of them in the image's assignment order wins (annotators not in the assignment
    come after, by name). A previously approved one that lost its place goes back to ``pulled``,
    except for images in ``keep`` (stage 1 of an image already pushed to stage 2: its stage-2
    tasks were made from the approved masks), whose approved candidate stays while it passes.
    """
    by_image: dict[int, list[Candidate]] = {}
    for c in candidates:
        by_image.setdefault(c.image_id, []).append(c)
    changes: dict[tuple[int, str], str] = {}
    for image_id, rows in by_image.items():
        order = list(assignment.get(image_id) or sorted(r.annotator for r in rows))
        rank = {a: i for i, a in enumerate(order)}
        passing = [r for r in rows if r.status in ("pulled", "approved") and r.passed]
        passing.sort(key=lambda r: (rank.get(r.annotator, len(rank)), r.annotator))
        chosen = passing[0].annotator if passing else None
        if image_id in keep:
            current = [r.annotator for r in passing if r.status == "approved"]
            chosen = current[0] if current else chosen
        for r in rows:
            if r.annotator == chosen and r.status != "approved":
                changes[(image_id, r.annotator)] = "approved"
            elif r.annotator != chosen and r.status == "approved":
                changes[(image_id, r.annotator)] = "pulled"
    return changes


def approved_count(candidates: Iterable[Candidate], changes: Mapping[tuple[int, str], str]) -> int:
    """Images with an approved annotation once ``changes`` are applied."""
    return len(
        {
            c.image_id
            for c in candidates
            if changes.get((c.image_id, c.annotator), c.status) == "approved"
        }
    )


# ------------------------------------------------------------------------------------ stage 2
@dataclass(frozen=True)
class GeometryChange:
    """A seeded region whose mask differs from its seed: pixels added and removed."""

    region: EntityId
    added: int
    removed: int


@dataclass(frozen=True)
class Stage2Merge:
    """The stage-2 annotation (stage-1 masks + names) and what QA must report about it."""

    annotation: ImageAnnotation
    seed_ids: tuple[EntityId, ...]
    unnamed: tuple[EntityId, ...] = ()
    changed: tuple[GeometryChange, ...] = ()
    unseeded: tuple[EntityId, ...] = ()
    deleted: tuple[EntityId, ...] = ()


def geometry_change(region: EntityId, seg: Mapping, seed: Mapping) -> GeometryChange | None:
    """None when ``seg`` equals ``seed`` pixel for pixel."""
    if seg.get("counts") == seed.get("counts") and list(seg["size"]) == list(seed["size"]):
        return None
    both = rle_utils.area(rle_utils.merge([dict(seg), dict(seed)], intersect=True))
    added = rle_utils.area(dict(seg)) - both
    removed = rle_utils.area(dict(seed)) - both
    if added == 0 and removed == 0:
        return None
    return GeometryChange(region=region, added=int(added), removed=int(removed))


def merge_stage2(
    ann: ImageAnnotation, regions: Sequence[RegionInfo], seed: ImageAnnotation | None
) -> Stage2Merge:
    """Stage-2 annotation over the seeded stage-1 regions (see the module docstring).

    Args:
        ann: the submission as drawn (entities with geometry; names = name or flag).
        regions: every region the submission mentions (a name alone is enough).
        seed: the approved stage-1 annotation the task was made from.
    """
    info = {r.id: r for r in regions}
    context = {r.id for r in regions if r.label == CONTEXT_LABEL}
    drawn = {e.id: e for e in ann.entities if e.id not in context}
    seeds = {e.id: e for e in seed.entities} if seed is not None else {}
    entities: list[Entity] = []
    unnamed, changed, deleted = [], [], []
    for rid, s in seeds.items():
        r = info.get(rid)
        if rid in context:
            continue
        if r is None:
            deleted.append(rid)
        name = (r.name or r.flag) if r is not None else None
        if rid in drawn:
            ch = geometry_change(rid, drawn[rid].segmentation, s.segmentation)
            if ch is not None:
                changed.append(ch)
        entities.append(
            Entity(id=rid, rle=s.segmentation, name=name, score=s.score, origin="stage2")
        )
        if not name:
            unnamed.append(rid)
    unseeded = tuple(rid for rid in drawn if rid not in seeds)
    return Stage2Merge(
        annotation=replace(ann, entities=tuple(entities)),
        seed_ids=tuple(rid for rid in seeds if rid not in context),
        unnamed=tuple(unnamed),
        changed=tuple(changed),
        unseeded=unseeded,
        deleted=tuple(deleted),
    )


# ------------------------------------------------------------------------------------ rework
REGION_ADVICE = {
    "overlap": "overlaps another region",
    "unnamed": "needs a name (or a flag)",
    "geometry_changed": "its mask was changed (masks are fixed in stage 2): the stage-1 mask "
    "is back in your draft, leave it as it is",
    "unknown_region": "was not in the task: delete it (stage 2 only names the given regions)",
    "bad_result": "could not be read: redraw it",
    "size_mismatch": "has the wrong image size: redraw it",
    "rotation": "was drawn on a rotated image: redraw it without rotation",
    "tiny": "is tiny: merge it into a neighbour or delete it",
}


def feedback_for(findings: Sequence[Finding], *, stage: int) -> Feedback:
    """The rework note of a rejected annotation: its errors in plain words, and one message per
    offending region (region id -> what to do). Warnings are named after the errors."""
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity != "error"]
    regions: dict[str, list[str]] = {}
    for f in errors:
        rids = [f.region] if f.region else []
        if f.check == "overlap":
            rids = sorted({r for pair in f.pairs for r in pair})
        for rid in rids:
            advice = REGION_ADVICE.get(f.check, f.detail)
            if advice not in regions.setdefault(str(rid), []):
                regions[str(rid)].append(advice)
    where = f"the regions marked '{FIX_LABEL}' (red)" if regions else "it"
    lines = [f"QA rejected this stage-{stage} annotation: fix {where} and submit again."]
    counts: dict[str, int] = {}
    for f in errors:
        counts[f.check] = counts.get(f.check, 0) + 1
    for check, k in counts.items():
        example = next(f.detail for f in errors if f.check == check)
        lines.append(f"- {check} x{k}: {example}")
    if warnings:
        lines.append("Also: " + "; ".join(sorted({f.check for f in warnings})))
    restore = tuple(
        sorted({str(f.region) for f in errors if f.check == "geometry_changed" and f.region})
    )
    return Feedback(
        note="\n".join(lines),
        regions={k: "; ".join(v) for k, v in regions.items()},
        restore=restore,
    )


__all__ = [
    "CONTEXT_LABEL",
    "Candidate",
    "GeometryChange",
    "Stage2Merge",
    "approval",
    "approved_count",
    "assign_images",
    "feedback_for",
    "flag_choices",
    "geometry_change",
    "merge_stage2",
]
