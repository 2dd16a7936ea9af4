"""Pull annotations from an annotation backend into the workspace, check them, send rejected ones
back for rework, and approve.

For each stage and each annotator project (see :mod:`.push`), every task's newest submission of
the project's annotator is read (masks exactly as drawn, names joined on the region id), merged
with the task's seed (stage 2: the stage-1 masks, geometry locked), checked (:mod:`.qa`, with the
overlap rule of ``annotation.overlap_policy``, default ``intent`` relative to the seed), written
with :func:`~entityseg_data.masks.store.save_annotation` to ``masks/stage{s}/{annotator}/{id}.json``
and recorded in the catalog (status ``pulled`` or ``rejected``, QA findings, backend ids) in one
transaction per task. A submission already pulled (same id and ``updated_at``) is skipped, so an
interrupted pull loses nothing and a re-run only does the rest.

Rework (``annotation.rework``, on by default): a rejected submission goes back to its annotator
(:meth:`~.backend.AnnotationBackend.send_back`: in Label Studio the task is back in their queue
with the QA note at the top and the offending regions marked ``QA fix``); its status becomes
``rework`` and the task counts as "in rework" until the annotator submits again; the next pull
reads the fixed version and clears the note once it passes.

Approval (:func:`~.workflow.approval`): after the pull, for each image of the stage, the
annotation of the first annotator in the image's assignment order whose annotation passed QA
becomes ``approved``. Approved stage-1 masks seed stage 2; once an image is pushed to stage 2 its
approved stage-1 annotation stays approved while it passes (the stage-2 tasks were made from it).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from entityseg_data.annotation import tiled
from entityseg_data.annotation.backend import (
    AnnotationBackend,
    Submission,
    SubmissionInfo,
    TaskState,
)
from entityseg_data.annotation.push import assignment_key, load_seed, projects_key
from entityseg_data.annotation.qa import Finding, QAResult, check_annotation, finding
from entityseg_data.annotation.rounds import SeedMeasure, edit_breakdown
from entityseg_data.annotation.tiling import TilingConfig
from entityseg_data.annotation.workflow import (
    Candidate,
    approval,
    approved_count,
    feedback_for,
    merge_stage2,
)
from entityseg_data.catalog import AnnotationRecord, Catalog, EditRecord, ImageRecord
from entityseg_data.config.annotation import AnnotationConfig
from entityseg_data.errors import DataError, EntitySegError
from entityseg_data.masks.store import ImageAnnotation, load_annotation, save_annotation
from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)

DONE_STATUSES = ("pulled", "approved", "rejected", "rework")


@dataclass
class PullReport:
    """What one pull did, and the QA findings per (image, annotator)."""

    stage: int
    tasks: int = 0
    pulled: int = 0
    unchanged: int = 0
    unannotated: int = 0
    rejected: int = 0
    sent_back: int = 0
    in_rework: int = 0
    approved: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    findings: dict[str, Counter] = field(default_factory=dict)  # annotator -> check -> count
    moved: dict[str, int] = field(default_factory=dict)  # overlap rule clause -> pixels
    per_task: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["findings"] = {a: dict(c) for a, c in self.findings.items()}
        return out


def _pick_submission(task: TaskState, annotator: str) -> tuple[SubmissionInfo | None, str | None]:
    """The annotator's submission, else the newest one of someone else (reported)."""
    own = task.submission_of(annotator)
    if own is not None or not task.submissions:
        return own, None
    other = max(task.submissions, key=lambda s: s.updated_at)
    return other, other.annotator


def _send_back(
    send: Callable[[], bool],
    task: TaskState,
    annotator: str,
    report: PullReport,
) -> bool:
    """Send a rejected submission back for rework (``send`` does it); a tool error is reported
    (the annotation stays ``rejected`` and the next pull tries again), never fatal to the pull."""
    try:
        sent = send()
    except EntitySegError as exc:
        log.warning("task %s: could not send it back for rework: %s", task.id, exc)
        report.errors.append({"task": task.id, "annotator": annotator, "error": str(exc)})
        return False
    if sent:
        report.sent_back += 1
        report.in_rework += 1
    return sent


@dataclass(frozen=True)
class _Unit:
    """One image's work of one annotator as the pull sees it: a whole-image task, or the tiles
    of an image (:mod:`.tiled`). ``task`` is the task recorded in the catalog (the first tile);
    ``stamp`` changes whenever a submission changes."""

    image_id: int
    task: TaskState
    info: SubmissionInfo | None
    other: str | None
    stamp: str
    read: Callable[[], tuple[Submission, dict[str, Any]]]
    send_back: Callable[[Sequence[Finding]], bool]
    clear: Callable[[], None]


def _whole_unit(backend: AnnotationBackend, task: TaskState, annotator: str, stage: int) -> _Unit:
    info, other = _pick_submission(task, annotator)

    def read() -> tuple[Submission, dict[str, Any]]:
        assert info is not None
        return backend.read_submission(task, info, stage), {}

    def send_back(findings: Sequence[Finding]) -> bool:
        assert info is not None
        return backend.send_back(task, info, feedback_for(findings, stage=stage))

    def clear() -> None:
        if task.data.get("qa_status") == "rework" or task.data.get("qa_note"):
            backend.clear_feedback(task)

    return _Unit(
        image_id=task.image_id,
        task=task,
        info=info,
        other=other,
        stamp=info.updated_at if info is not None else "",
        read=read,
        send_back=send_back,
        clear=clear,
    )


def _tiled_unit(
    backend: AnnotationBackend,
    tasks: Sequence[TaskState],
    annotator: str,
    stage: int,
    config: AnnotationConfig,
    seed_of: Callable[[TaskState], ImageAnnotation | None],
) -> _Unit:
    """The tiles of one image as one unit: submitted when every tile is; read = stitched."""
    plan, by_index = tiled.plan_of(tasks)
    picked = {i: _pick_submission(t, annotator) for i, t in by_index.items()}
    infos = {i: p[0] for i, p in picked.items() if p[0] is not None}
    others = sorted({p[1] for p in picked.values() if p[1]})
    complete = len(infos) == len(by_index)
    first = by_index[0]
    stamp = ";".join(f"{by_index[i].id}:{x.id}:{x.updated_at}" for i, x in sorted(infos.items()))
    state: dict[str, tiled.TiledSubmission] = {}

    def read() -> tuple[Submission, dict[str, Any]]:
        subs = {i: backend.read_submission(by_index[i], x, stage) for i, x in infos.items()}
        stitched = tiled.stitch_submissions(
            plan,
            subs,
            seed_of(first),
            image_id=first.image_id,
            stage=stage,
            annotator=annotator,
            config=TilingConfig.from_config(config),
        )
        state["stitched"] = stitched
        meta = {
            "tiles": {str(i): [by_index[i].id, x.id] for i, x in sorted(infos.items())},
            "seam_merges": [[m.tile, m.merged, m.into, m.pixels] for m in stitched.result.merges],
            "margin_edits": stitched.result.margin_edits,
        }
        return stitched.submission, meta

    def send_back(findings: Sequence[Finding]) -> bool:
        stitched = state.get("stitched")
        feedback = feedback_for(findings, stage=stage)
        if stitched is None:  # rejected by an earlier pull: every tile gets the note
            parts = {t.index: feedback for t in plan.tiles}
        else:
            unnamed = {f.region for f in findings if f.check == "unnamed" and f.region}
            parts = tiled.split_feedback(feedback, stitched, plan, unnamed=unnamed)
        sent = False
        for i, fb in parts.items():
            info = infos.get(i)
            if info is not None:
                sent = backend.send_back(by_index[i], info, fb) or sent
        return sent

    def clear() -> None:
        for t in by_index.values():
            if t.data.get("qa_status") == "rework" or t.data.get("qa_note"):
                backend.clear_feedback(t)

    return _Unit(
        image_id=first.image_id,
        task=first,
        info=infos.get(0) if complete else None,
        other=others[0] if others else None,
        stamp=stamp if complete else "",
        read=read,
        send_back=send_back,
        clear=clear,
    )


def _pull_unit(
    workspace: Workspace,
    cat: Catalog,
    unit: _Unit,
    *,
    stage: int,
    annotator: str,
    config: AnnotationConfig,
    images: Mapping[int, ImageRecord],
    rows: Mapping[int, AnnotationRecord],
    report: PullReport,
    approved1: Mapping[int, str],
    measure: SeedMeasure | None = None,
) -> None:
    root = Path(workspace.root)
    image_id = unit.image_id
    task, info, other = unit.task, unit.info, unit.other
    if image_id not in images:
        report.errors.append({"task": task.id, "error": f"unknown image id {image_id}"})
        return
    row = rows.get(image_id)
    if info is None:
        if row is not None and row.status == "rework":
            report.in_rework += 1
        else:
            report.unannotated += 1
        return
    prev = load_annotation(root, stage, annotator, image_id)
    if (
        row is not None
        and str(row.ls_annotation_id) == info.id
        and prev is not None
        and prev.meta.get("updated_at") == unit.stamp
        and row.status in DONE_STATUSES
    ):
        report.unchanged += 1
        if row.status == "rework":
            report.in_rework += 1
        elif row.status == "rejected" and config.rework and other is None:
            # rejected before but not sent back (rework was off, or Label Studio failed then)
            findings = [Finding.from_json(f) for f in (row.qa or {}).get("findings", [])]
            if _send_back(lambda: unit.send_back(findings), task, annotator, report):
                with cat.transaction():
                    cat.set_annotation(image_id, stage, annotator, status="rework")
        return
    img = images[image_id]
    if not img.height or not img.width:
        raise DataError(f"image {image_id}: the catalog has no size")
    h, w = int(img.height), int(img.width)
    sub, unit_meta = unit.read()
    version = _seed_version(task, stage, approved1)
    seed = load_seed(root, cat, stage, image_id, h, w, version)
    ann = sub.annotation
    merge = None
    if stage == 2:
        merge = merge_stage2(ann, sub.regions, seed)
        ann = merge.annotation
    seeds = {e.id: e.segmentation for e in seed.entities} if seed is not None and stage == 1 else {}
    qa: QAResult = check_annotation(
        ann,
        image_size=(h, w),
        parse_findings=sub.findings,
        policy=config.overlap_policy,
        seeds=seeds,
        min_mask_area=config.min_mask_area,
        max_uncovered_fraction=config.max_uncovered_fraction,
        stage2=merge,
    )
    if other is not None:
        qa = qa.with_findings(
            [finding("completed_by_other", f"annotated by {other}, not by {annotator}")]
        )
    meta = {
        **ann.meta,
        "qa_passed": qa.passed,
        "backend_task": task.id,
        "submission": info.id,
        "updated_at": unit.stamp,
        "lead_time": sub.info.lead_time,
        "seed": version,
        "kinds": {r.id: list(r.kinds) for r in sub.regions if r.kinds},
        **unit_meta,
    }
    final = replace(qa.annotation, meta=meta)
    path = save_annotation(root, final)
    status = "pulled" if qa.passed else "rejected"
    edit = _edit_record(
        cat, final, seed, sub.info, stage=stage, version=version, status=status, measure=measure
    )
    with cat.transaction():
        cat.set_edit(replace(edit, round_id=row.round_id if row is not None else None))
        cat.set_annotation(
            image_id,
            stage,
            annotator,
            status=status,
            ls_project_id=int(task.project),
            ls_task_id=int(task.id),
            ls_annotation_id=int(info.id),
            mask_path=workspace.relpath(path),
            n_entities=len(final.entities),
            qa=qa.to_json(),
        )
    report.pulled += 1
    if not qa.passed:
        report.rejected += 1
        send = config.rework and other is None
        rejected = qa.findings
        if send and _send_back(lambda: unit.send_back(rejected), task, annotator, report):
            status = "rework"
            with cat.transaction():
                cat.set_annotation(image_id, stage, annotator, status=status)
    else:
        try:
            unit.clear()
        except EntitySegError as exc:  # a stale note is cosmetic: the catalog is right
            log.warning("task %s: the rework note stays: %s", task.id, exc)
    counter = report.findings.setdefault(annotator, Counter())
    for f in qa.findings:
        counter[f.check] += 1
    for rule, px in qa.moved.items():
        report.moved[rule] = report.moved.get(rule, 0) + int(px)
    report.per_task.append(
        {
            "image_id": image_id,
            "annotator": annotator,
            "task": task.id,
            "status": status,
            "n_entities": len(final.entities),
            "coverage": round(qa.coverage, 4),
            "moved": dict(qa.moved),
            "findings": [f"{f.severity}:{f.check}" for f in qa.findings],
        }
    )


def _edit_record(
    cat: Catalog,
    final: ImageAnnotation,
    seed: ImageAnnotation | None,
    info: SubmissionInfo,
    *,
    stage: int,
    version: str,
    status: str,
    measure: SeedMeasure | None,
) -> EditRecord:
    """The catalog row of one pulled submission: lead time (labelled ``simulated`` when a
    simulated annotator made it), times, seed, edit breakdown and, for a stage-1 seed with
    ``measure``, the seed's AP against the submission."""
    same_size = seed is not None and (seed.height, seed.width) == (final.height, final.width)
    b = edit_breakdown(seed if same_size else None, final)
    scores: Mapping[str, float] = {}
    if measure is not None and stage == 1 and seed is not None and same_size:
        scores = measure(seed, final)
    source = None
    if info.lead_time is not None:
        simulated = cat.is_simulated(final.image_id, stage, final.annotator, info.id)
        source = "simulated" if simulated else "tool"
    return EditRecord(
        image_id=final.image_id,
        stage=stage,
        annotator=final.annotator,
        submission=info.id,
        seed_version=version,
        status=status,
        lead_time=None if info.lead_time is None else float(info.lead_time),
        lead_time_source=source,
        created_at=info.created_at or None,
        updated_at=info.updated_at or None,
        n_seed=b.n_seed,
        n_final=b.n_final,
        unchanged=b.unchanged,
        edited=b.edited,
        deleted=b.deleted,
        added=b.added,
        iou_bins=dict(b.iou_bins),
        pixels_changed=b.pixels_changed,
        pixels_total=b.pixels_total,
        seed_ap=scores.get("ap"),
        seed_ap50=scores.get("ap50"),
        seed_ar=scores.get("ar"),
        seed_boundary_ap=scores.get("boundary_ap"),
    )


def _task_seed(
    workspace: Workspace,
    cat: Catalog,
    stage: int,
    images: Mapping[int, ImageRecord],
    task: TaskState,
) -> ImageAnnotation | None:
    """The full-size seed of a tile task's image (what its tiles were cut from)."""
    img = images.get(task.image_id)
    if img is None or not img.height or not img.width:
        raise DataError(f"image {task.image_id}: the catalog has no size")
    version = _seed_version(task, stage, {})
    return load_seed(
        Path(workspace.root), cat, stage, task.image_id, int(img.height), int(img.width), version
    )


def _seed_version(task: TaskState, stage: int, approved1: Mapping[int, str]) -> str:
    version = str(task.data.get("seed") or "")
    if stage == 2 and not version and task.image_id in approved1:
        version = "stage1:" + approved1[task.image_id]
    return version


def approve(cat: Catalog, stage: int) -> int:
    """Apply the approval rule to every image of ``stage``; returns the number of images with an
    approved annotation."""
    assignment = {int(k): v for k, v in (cat.get_kv(assignment_key(stage), {}) or {}).items()}
    candidates = [
        Candidate(image_id=r.image_id, annotator=r.annotator, status=r.status, passed=r.qa_passed)
        for r in cat.annotations(stage=stage)
    ]
    # stage 1 of images already pushed to stage 2 keeps its approved masks (they seeded stage 2)
    keep = {r.image_id for r in cat.annotations(stage=2)} if stage == 1 else set()
    changes = approval(candidates, assignment, keep=keep)
    with cat.transaction():
        for (image_id, annotator), status in changes.items():
            cat.set_annotation(image_id, stage, annotator, status=status)
    return approved_count(candidates, changes)


def pull(
    workspace: Workspace,
    backend: AnnotationBackend,
    config: AnnotationConfig,
    *,
    stages: Iterable[int] = (1, 2),
    annotators: Iterable[str] | None = None,
    progress: Callable[[int, str, int], None] | None = None,
    measure: SeedMeasure | None = None,
) -> dict[int, PullReport]:
    """Pull, check, send back and approve the annotations of ``stages`` (module docstring).

    Each submission read is also stored as an :class:`~entityseg_data.catalog.EditRecord`
    (lead time, times, seed version, round, the edit breakdown of :mod:`.rounds`).

    Args:
        workspace: the workspace.
        backend: the annotation backend (it must see every annotator's project).
        config: the ``annotation`` section (overlap rule, QA thresholds, rework).
        stages: stages to pull, in order (stage 1 first so its approvals can seed stage 2).
        annotators: only these annotators' projects.
        progress: optional callable ``(stage, annotator, n_tasks_done)``.
        measure: scores a stage-1 seed against the submission (AP^e, AR, boundary AP) for the
            edit records; the API passes the evaluation stage's (None: not measured).

    Returns ``{stage: PullReport}``.
    """
    out = {}
    for stage in stages:
        report = PullReport(stage=stage)
        with workspace.catalog() as cat:
            projects = dict(cat.get_kv(projects_key(stage), {}) or {})
            images = {r.id: r for r in cat.images(status=None)}
            approved1 = {
                r.image_id: r.annotator for r in cat.annotations(stage=1, status="approved")
            }
            wanted = set(annotators) if annotators is not None else None
            for annotator, project in sorted(projects.items()):
                if wanted is not None and annotator not in wanted:
                    continue
                rows = {r.image_id: r for r in cat.annotations(stage=stage, annotator=annotator)}
                tile_tasks: dict[int, list[TaskState]] = {}
                units: list[tuple[TaskState, Callable[[], _Unit]]] = []
                for task in backend.tasks(str(project)):
                    report.tasks += 1
                    if tiled.TILE_KEY in task.data:  # an image's tiles are pulled together
                        tile_tasks.setdefault(task.image_id, []).append(task)
                        continue
                    units.append(
                        (task, functools.partial(_whole_unit, backend, task, annotator, stage))
                    )
                for group in tile_tasks.values():
                    units.append(
                        (
                            group[0],
                            functools.partial(
                                _tiled_unit,
                                backend,
                                group,
                                annotator,
                                stage,
                                config,
                                functools.partial(_task_seed, workspace, cat, stage, images),
                            ),
                        )
                    )
                for k, (task, make) in enumerate(units):
                    try:
                        _pull_unit(
                            workspace,
                            cat,
                            make(),
                            stage=stage,
                            annotator=annotator,
                            config=config,
                            images=images,
                            rows=rows,
                            report=report,
                            approved1=approved1,
                            measure=measure,
                        )
                    except DataError as exc:
                        log.warning("task %s (%s): %s", task.id, annotator, exc)
                        report.errors.append(
                            {"task": task.id, "annotator": annotator, "error": str(exc)}
                        )
                    if progress is not None:
                        progress(stage, annotator, k + 1)
            report.approved = approve(cat, stage)
            status = {(r.image_id, r.annotator): r.status for r in cat.annotations(stage=stage)}
        for t in report.per_task:  # what the catalog says after the approval
            t["status"] = status.get((t["image_id"], t["annotator"]), t["status"])
        log.info(
            "stage %s: %d tasks, %d pulled (%d rejected, %d sent back), %d unchanged, "
            "%d not annotated, %d in rework, %d approved images",
            stage,
            report.tasks,
            report.pulled,
            report.rejected,
            report.sent_back,
            report.unchanged,
            report.unannotated,
            report.in_rework,
            report.approved,
        )
        out[stage] = report
    return out


__all__ = ["PullReport", "approve", "pull"]
