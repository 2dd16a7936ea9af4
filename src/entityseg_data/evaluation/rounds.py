"""What pre-annotation saves, round by round (issue 18): time, edits, seed AP^e, agreement.

Inputs are the catalog's records: the rounds (:class:`~entityseg_data.catalog.RoundRecord`, one
per push) and one :class:`~entityseg_data.catalog.EditRecord` per pulled submission (lead time,
seed version, edit breakdown; :mod:`entityseg_data.annotation.rounds` defines the breakdown).

Definitions (per round, per seed model version, and for selected vs not-selected rounds):

* an *annotation* is one annotator's work on one image of a stage; its submissions are the first
  one and every rework resubmission. Its time is the sum of their lead times (seconds, as the
  tool recorded them); its edits are those of its *latest* submission (what the annotator made of
  the seed in the end).
* ``minutes_per_image``: mean time of the timed annotations, in minutes (an image annotated by
  two people counts twice: it is person-time); ``minutes_per_entity``: their total time over
  the entities of their latest submissions. Annotations without a lead time are left out of
  both (``timed`` says how many are in). ``simulated`` is True when any lead time in the group
  came from a simulated annotator (reports then label the time SIMULATED).
* the edit breakdown sums the latest submissions: ``accepted`` = unchanged / seed entities,
  ``pixels_changed_fraction`` = changed / image pixels.
* the seed's AP^e / AP50 / AR@100 / boundary AP: the pre-annotations of the group's images scored
  as predictions against their APPROVED stage-1 masks (the seed version each approved annotation
  started from), one class-agnostic evaluation over the group (:class:`~.evaluator.Evaluator`).
* agreement: the mean pairwise mask mAP (:func:`~.consistency.consistency`) on the group's images
  that two or more annotators annotated (the overlap sample).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from entityseg_data.catalog.records import EditRecord, RoundRecord, iou_bin_labels
from entityseg_data.errors import EntitySegError

if TYPE_CHECKING:
    from entityseg_data.masks.store import ImageAnnotation
    from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)

NO_SEED = "(no seed)"
NO_ROUND = "(before rounds)"
NO_SELECTION = "no selection"


def selection_kind(selection: str | None, strategy: str | None = None) -> str:
    """How a round's images were chosen: ``"<strategy> selection"`` (``uncertainty`` /
    ``random``, from ``entityseg-data select``), ``"selection <name>"`` when the strategy is not
    known (a name given with explicit image ids), or ``"no selection"`` (every eligible image,
    by id)."""
    if not selection:
        return NO_SELECTION
    return f"{strategy} selection" if strategy else f"selection {selection}"


@dataclass(frozen=True)
class SeedQuality:
    """A seed scored against final masks: fractions, -1 when undefined (no GT)."""

    images: int
    ap: float
    ap50: float
    ar: float
    boundary_ap: float


@dataclass(frozen=True)
class GroupSummary:
    """Time and edits of a group of annotations (module docstring: the definitions)."""

    annotations: int = 0
    submissions: int = 0
    timed: int = 0
    simulated: bool = False
    seconds: float = 0.0
    minutes_per_image: float | None = None
    minutes_per_entity: float | None = None
    n_seed: int = 0
    n_final: int = 0
    unchanged: int = 0
    edited: int = 0
    deleted: int = 0
    added: int = 0
    iou_bins: Mapping[str, int] = field(default_factory=dict)
    pixels_changed: int = 0
    pixels_total: int = 0
    seed: SeedQuality | None = None
    agreement_map: float | None = None
    overlap_images: int = 0

    @property
    def accepted(self) -> float | None:
        """Share of seed entities accepted unchanged."""
        return self.unchanged / self.n_seed if self.n_seed else None

    @property
    def pixels_changed_fraction(self) -> float | None:
        return self.pixels_changed / self.pixels_total if self.pixels_total else None

    @property
    def rework(self) -> int:
        """Submissions beyond the first of each annotation (resubmissions after QA)."""
        return self.submissions - self.annotations


@dataclass(frozen=True)
class RoundRow:
    """One round: its record (None for tasks pushed before rounds were recorded) and summary."""

    round: RoundRecord | None
    stage: int
    summary: GroupSummary
    kind: str = "no selection"

    @property
    def label(self) -> str:
        return NO_ROUND if self.round is None else f"round {self.round.id}"


@dataclass(frozen=True)
class RoundsReport:
    """Every round, every seed model version and selected vs not-selected rounds."""

    rounds: tuple[RoundRow, ...] = ()
    versions: Mapping[str, GroupSummary] = field(default_factory=dict)  # stage-1 seed version
    selection: Mapping[str, GroupSummary] = field(default_factory=dict)  # kind -> stage 1
    edits: tuple[EditRecord, ...] = ()

    @property
    def simulated(self) -> bool:
        return any(r.summary.simulated for r in self.rounds)


def _group(edits: Iterable[EditRecord]) -> dict[tuple[int, int, str], list[EditRecord]]:
    out: dict[tuple[int, int, str], list[EditRecord]] = defaultdict(list)
    for e in edits:
        out[(e.image_id, e.stage, e.annotator)].append(e)
    return out


def summarize(annotations: Sequence[Sequence[EditRecord]]) -> GroupSummary:
    """Time and edits of annotations, each given as its submissions in pull order."""
    labels = list(iou_bin_labels())
    bins = dict.fromkeys(labels, 0)
    timed = 0
    seconds = 0.0
    timed_entities = 0
    totals = dict.fromkeys(("n_seed", "n_final", "unchanged", "edited", "deleted", "added"), 0) | {
        "pixels_changed": 0,
        "pixels_total": 0,
    }
    simulated = False
    submissions = 0
    for subs in annotations:
        if not subs:
            continue
        submissions += len(subs)
        last = subs[-1]
        times = [s.lead_time for s in subs if s.lead_time is not None]
        simulated = simulated or any(s.simulated for s in subs)
        if times:
            timed += 1
            seconds += float(sum(times))
            timed_entities += last.n_final
        for key in totals:
            totals[key] += int(getattr(last, key))
        for k, v in last.iou_bins.items():
            bins[k] = bins.get(k, 0) + int(v)
    n = sum(1 for s in annotations if s)
    return GroupSummary(
        annotations=n,
        submissions=submissions,
        timed=timed,
        simulated=simulated,
        seconds=seconds,
        minutes_per_image=seconds / 60.0 / timed if timed else None,
        minutes_per_entity=seconds / 60.0 / timed_entities if timed_entities else None,
        iou_bins=bins,
        n_seed=totals["n_seed"],
        n_final=totals["n_final"],
        unchanged=totals["unchanged"],
        edited=totals["edited"],
        deleted=totals["deleted"],
        added=totals["added"],
        pixels_changed=totals["pixels_changed"],
        pixels_total=totals["pixels_total"],
    )


def summarize_rounds(
    rounds: Sequence[RoundRecord],
    edits: Sequence[EditRecord],
    strategies: Mapping[str, str] | None = None,
) -> RoundsReport:
    """Time and edits per round, per stage-1 seed version and per way of choosing the images
    (:func:`selection_kind`; ``strategies``: selection name -> strategy). Pure: no seed AP or
    agreement (:func:`rounds_report` adds those)."""
    by_key = _group(edits)
    known = {r.id for r in rounds}
    kind_of = {
        r.id: selection_kind(r.selection, (strategies or {}).get(r.selection or "")) for r in rounds
    }
    # (round id, stage) -> annotations; round id None: pushed before rounds were recorded
    per_round: dict[tuple[int | None, int], list[list[EditRecord]]] = defaultdict(list)
    per_version: dict[str, list[list[EditRecord]]] = defaultdict(list)
    per_kind: dict[str, list[list[EditRecord]]] = defaultdict(list)
    for (_, stage, _), subs in sorted(by_key.items()):
        last = subs[-1]
        rid = last.round_id if last.round_id in known else None
        per_round[(rid, stage)].append(subs)
        if stage == 1:
            per_version[last.seed_version or NO_SEED].append(subs)
            if rid is not None:
                per_kind[kind_of[rid]].append(subs)
    rows = [
        RoundRow(
            round=r,
            stage=r.stage,
            summary=summarize(per_round.get((r.id, r.stage), [])),
            kind=kind_of[r.id],
        )
        for r in rounds
    ]
    for rid, stage in sorted(k for k in per_round if k[0] is None):
        rows.append(RoundRow(round=None, stage=stage, summary=summarize(per_round[(rid, stage)])))
    return RoundsReport(
        rounds=tuple(rows),
        versions={v: summarize(a) for v, a in sorted(per_version.items())},
        selection={k: summarize(a) for k, a in sorted(per_kind.items())},
        edits=tuple(edits),
    )


# ------------------------------------------------------------------ seed quality
def seed_scores(seed: ImageAnnotation, final: ImageAnnotation) -> dict[str, float]:
    """One image: the seed as predictions (scores kept, missing ones 1) against ``final`` as
    ground truth; ``{"ap", "ap50", "ar", "boundary_ap"}`` fractions (-1: undefined). The pull
    stores these per submission (the API passes this function as its ``measure``)."""
    q = _evaluate([(final, seed)])
    return {"ap": q.ap, "ap50": q.ap50, "ar": q.ar, "boundary_ap": q.boundary_ap}


def _evaluate(pairs: Sequence[tuple[Any, Any]]) -> SeedQuality:
    """``(ground truth, seed)`` annotations of several images -> one evaluation."""
    from entityseg_data.evaluation.evaluator import Evaluator

    ev = Evaluator(boundary=True)
    for gt, seed in pairs:
        preds = [
            {"segmentation": e.segmentation, "score": 1.0 if e.score is None else float(e.score)}
            for e in seed.entities
        ]
        ev.process(gt, preds)
    m = ev.evaluate()
    return SeedQuality(
        images=len(pairs),
        ap=float(m["segm"]["AP"]),
        ap50=float(m["segm"]["AP50"]),
        ar=float(m["segm"]["AR100"]),
        boundary_ap=float(m["boundary"]["AP"]),
    )


def approved_seed_pairs(
    workspace: Workspace,
    image_ids: Iterable[int],
    version_of: Callable[[int, str], str | None],
) -> dict[int, tuple[Any, Any]]:
    """image id -> (approved stage-1 annotation, its seed as an annotation) for the images with
    an approved stage-1 annotation and a readable seed; ``version_of(image_id, annotator)``
    names the seed version (None: none)."""
    from entityseg_data.masks.store import ImageAnnotation, load_annotation

    wanted = {int(i) for i in image_ids}
    out: dict[int, tuple[Any, Any]] = {}
    with workspace.catalog() as cat:
        approved = [r for r in cat.annotations(stage=1, status="approved") if r.image_id in wanted]
    for rec in approved:
        version = version_of(rec.image_id, rec.annotator)
        if not version:
            continue
        gt = load_annotation(workspace.root, 1, rec.annotator, rec.image_id)
        found = workspace.prediction_masks(rec.image_id, version)
        if gt is None or found is None:
            continue
        masks = found[1]
        if (masks.height, masks.width) != (gt.height, gt.width):
            log.warning("image %s: seed %s has another size; left out", rec.image_id, version)
            continue
        seed = ImageAnnotation(
            image_id=rec.image_id,
            height=masks.height,
            width=masks.width,
            stage=1,
            annotator="model",
            entities=tuple(masks.entities),
        )
        out[rec.image_id] = (gt, seed)
    return out


# ------------------------------------------------------------------ agreement
def overlap_agreement(sets: Sequence[Any], image_ids: Iterable[int]) -> tuple[float | None, int]:
    """Mean pairwise mask mAP of the annotator sets (:class:`~.consistency.AnnotatorSet`) on
    the given images that two or more of them annotated; ``(mAP or None, images)``."""
    from entityseg_data.evaluation.consistency import AnnotatorSet, consistency

    wanted = {int(i) for i in image_ids}
    maps: list[tuple[float, int]] = []
    shared: set[int] = set()
    for i, a in enumerate(sets):
        for b in sets[i + 1 :]:
            common = sorted(wanted & set(a.images) & set(b.images))
            if not common:
                continue
            pair = [
                AnnotatorSet(
                    s.name,
                    {k: s.images[k] for k in common},
                    {k: s.names[k] for k in common},
                    {k: s.file_names[k] for k in common},
                )
                for s in (a, b)
            ]
            rep = consistency(pair)
            if rep["mean_mask_map"] >= 0:
                maps.append((float(rep["mean_mask_map"]), len(common)))
                shared.update(common)
    if not maps:
        return None, 0
    total = sum(n for _, n in maps)
    return sum(m * n for m, n in maps) / total, len(shared)


def rounds_report(workspace: Workspace) -> RoundsReport:
    """:func:`summarize_rounds` of the workspace's catalog, with each group's seed quality
    against the approved masks and its agreement on the overlap sample."""
    from entityseg_data.evaluation.consistency import load_annotator_sets
    from entityseg_data.masks.store import annotators as file_annotators

    with workspace.catalog() as cat:
        rounds = cat.rounds()
        edits = cat.edits()
        pushed = {(r.image_id, r.stage, r.annotator): r.round_id for r in cat.annotations()}
        strategies = {}
        for name in {r.selection for r in rounds if r.selection}:
            info = cat.selection_info(name)
            if info is not None:
                strategies[name] = info.strategy
    base = summarize_rounds(rounds, edits, strategies)
    latest: dict[tuple[int, str], EditRecord] = {}
    for e in edits:
        if e.stage == 1:
            latest[(e.image_id, e.annotator)] = e
    round_version = {r.id: r.model_version for r in rounds}

    def version_of(image_id: int, annotator: str) -> str | None:
        e = latest.get((image_id, annotator))
        if e is not None:
            return e.seed_version or None
        rid = pushed.get((image_id, 1, annotator))
        return round_version.get(rid) if rid is not None else None

    def images_of(row: RoundRow) -> set[int]:
        if row.round is not None:
            return set(row.round.images)
        orphans = (e for e in edits if e.stage == row.stage and e.round_id not in round_version)
        return {e.image_id for e in orphans}

    all_ids = {e.image_id for e in edits} | {i for r in rounds for i in r.images}
    pairs = approved_seed_pairs(workspace, all_ids, version_of)
    sets_by_stage: dict[int, list[Any]] = {}
    for stage in (1, 2):
        names = file_annotators(workspace.root, stage)
        try:
            sets_by_stage[stage] = (
                load_annotator_sets([f"ws:{n}" for n in names], workspace=workspace, stage=stage)
                if len(names) > 1
                else []
            )
        except EntitySegError as exc:  # an unreadable file must not sink the whole report
            log.warning("agreement of stage %s left out: %s", stage, exc)
            sets_by_stage[stage] = []

    def quality(ids: Iterable[int]) -> SeedQuality | None:
        chosen = [pairs[i] for i in sorted(set(ids)) if i in pairs]
        return _evaluate(chosen) if chosen else None

    rows = []
    for row in base.rounds:
        ids = images_of(row)
        agree, n_overlap = overlap_agreement(sets_by_stage.get(row.stage, []), ids)
        seed = quality(ids) if row.stage == 1 else None
        rows.append(
            replace(
                row,
                summary=replace(
                    row.summary, seed=seed, agreement_map=agree, overlap_images=n_overlap
                ),
            )
        )
    versions = {}
    for version, summary in base.versions.items():
        ids = {i for (i, a), e in latest.items() if (e.seed_version or NO_SEED) == version}
        agree, n_overlap = overlap_agreement(sets_by_stage.get(1, []), ids)
        versions[version] = replace(
            summary,
            seed=quality(ids) if version != NO_SEED else None,
            agreement_map=agree,
            overlap_images=n_overlap,
        )
    selection = {}
    kind_ids: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        if row.stage == 1 and row.round is not None:
            kind_ids[row.kind] |= images_of(row)
    for kind, summary in base.selection.items():
        agree, n_overlap = overlap_agreement(sets_by_stage.get(1, []), kind_ids[kind])
        selection[kind] = replace(
            summary, seed=quality(kind_ids[kind]), agreement_map=agree, overlap_images=n_overlap
        )
    return RoundsReport(
        rounds=tuple(rows), versions=versions, selection=selection, edits=base.edits
    )


def summary_fields() -> list[str]:
    """Column names of a flat summary row (CSV/JSON)."""
    return [f.name for f in fields(GroupSummary) if f.name not in ("iou_bins", "seed")]


__all__ = [
    "NO_ROUND",
    "NO_SELECTION",
    "NO_SEED",
    "GroupSummary",
    "RoundRow",
    "RoundsReport",
    "SeedQuality",
    "approved_seed_pairs",
    "overlap_agreement",
    "rounds_report",
    "seed_scores",
    "selection_kind",
    "summarize",
    "summarize_rounds",
    "summary_fields",
]
