"""Pull annotations from Label Studio into the workspace, check them, and approve.

For each stage and each annotator project (see :mod:`entityseg_data.annotation.push`), the task
list is read page by page and then each task's annotations (``/api/tasks/{id}/annotations/``:
full results with region ids, without the predictions, so memory stays flat at 12 MP). For every
task the newest submitted annotation of the project's annotator is converted (brush RLE -> COCO
RLE exactly, polygons rasterised, per-region names joined on the region id), checked
(:mod:`.qa`), written with :func:`~entityseg_data.masks.store.save_annotation` to
``masks/stage{s}/{annotator}/{id}.json`` and recorded in the catalog (status ``pulled`` or
``rejected``, QA findings, Label Studio ids) in one transaction per task. An annotation already
pulled (same Label Studio id and ``updated_at``) is skipped, so an interrupted pull loses nothing
and a re-run only does the rest.

Approval rule: after the pull, for each image of the stage, the annotation of the first annotator
in the image's assignment order (the primary annotator first) whose annotation passed QA becomes
``approved``; other passing ones stay ``pulled``; failing ones are ``rejected``. Approved stage-1
masks seed stage 2.

Stage 2: geometry is taken from the stage-2 annotation when present, else from the approved
stage-1 mask with the same id (a name result alone is enough); the file holds the masks with
their names (free text, or the flag 'unknown' / 'blurred' / '<supercategory>_other').
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from entityseg_data.annotation.client import LabelStudioClient
from entityseg_data.annotation.convert import annotation_from_ls, latest_annotations
from entityseg_data.annotation.push import assignment_key, projects_key
from entityseg_data.annotation.qa import check_annotation
from entityseg_data.errors import DataError
from entityseg_data.masks.store import load_annotation, save_annotation

log = logging.getLogger(__name__)


@dataclass
class PullReport:
    """What one pull did, and the QA findings per (image, annotator)."""

    stage: int
    tasks: int = 0
    pulled: int = 0
    unchanged: int = 0
    unannotated: int = 0
    rejected: int = 0
    approved: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    findings: dict[str, Counter] = field(default_factory=dict)  # annotator -> check -> count
    per_task: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["findings"] = {a: dict(c) for a, c in self.findings.items()}
        return out


def _stage2_merge(ann: Any, regions: list, seed: Any) -> tuple[Any, list[str], list[str]]:
    """Stage-2 annotation over the seeded stage-1 regions: every seed is kept (its geometry from
    the stage-2 annotation when present, else from the seed) with the name or flag the annotator
    gave it; regions that were not seeded follow. Returns (annotation, seed ids, unnamed ids)."""
    by_id = {e.id: e for e in ann.entities}
    named = {r.id: (r.name or r.flag) for r in regions}
    seed_entities = {e.id: e for e in seed.entities} if seed is not None else {}
    entities = []
    for rid, e in seed_entities.items():
        src = by_id.get(rid, e)
        entities.append(replace(src, name=named.get(rid), origin="stage2"))
    for rid, e in by_id.items():
        if rid not in seed_entities:
            entities.append(replace(e, name=named.get(rid), origin="stage2"))
    unnamed = [e.id for e in entities if not e.name]
    return replace(ann, entities=tuple(entities)), list(seed_entities), unnamed


def _pull_task(
    workspace: Any,
    cat: Any,
    task: Mapping[str, Any],
    *,
    stage: int,
    annotator: str,
    emails: Mapping[int, str],
    acfg: Any,
    images: Mapping[int, Mapping[str, Any]],
    report: PullReport,
    approved1: Mapping[int, str],
) -> None:
    root = Path(workspace.root)
    image_id = int((task.get("data") or {}).get("image_id", -1))
    if image_id not in images:
        report.errors.append({"task": task.get("id"), "error": f"unknown image id {image_id}"})
        return
    anns = latest_annotations(task, emails)
    ann_ls = anns.get(annotator)
    other = None
    if ann_ls is None and anns:
        other, ann_ls = max(anns.items(), key=lambda kv: str(kv[1].get("updated_at") or ""))
    if ann_ls is None:
        report.unannotated += 1
        return
    row = cat.query(
        "SELECT ls_annotation_id, qa, status FROM annotations WHERE image_id=? AND stage=? "
        "AND annotator=?",
        (image_id, stage, annotator),
    )
    prev = load_annotation(root, stage, annotator, image_id)
    if (
        row
        and row[0]["ls_annotation_id"] == ann_ls.get("id")
        and prev is not None
        and prev.meta.get("updated_at") == ann_ls.get("updated_at")
        and row[0]["status"] in ("pulled", "approved", "rejected")
    ):
        report.unchanged += 1
        return
    img = images[image_id]
    h, w = int(img["height"]), int(img["width"])
    image_ann, regions, parse_findings = annotation_from_ls(
        ann_ls, task, stage=stage, annotator=annotator, height=h, width=w
    )
    seed_ids = None
    unnamed: list[str] = []
    if stage == 2:
        seed_by = approved1.get(image_id)
        seed = load_annotation(root, 1, seed_by, image_id) if seed_by else None
        image_ann, seed_ids, unnamed = _stage2_merge(image_ann, regions, seed)
    qa = check_annotation(
        image_ann,
        image_size=(h, w),
        parse_findings=parse_findings,
        policy=acfg.overlap_policy,
        min_mask_area=acfg.min_mask_area,
        max_uncovered_fraction=acfg.max_uncovered_fraction,
        seed_ids=seed_ids,
        unnamed_ids=unnamed,
    )
    findings = list(qa.findings)
    if other is not None:
        findings.append(
            {
                "check": "completed_by_other",
                "severity": "warning",
                "detail": f"annotated by {other}, not by {annotator}",
            }
        )
    final = qa.annotation
    meta = {**final.meta, "qa_passed": qa.passed}
    final = replace(final, meta=meta)
    path = save_annotation(root, final)
    status = "pulled" if qa.passed else "rejected"
    qa_json = {**qa.to_json(), "findings": findings}
    with cat.transaction():
        cat.set_annotation(
            image_id,
            stage,
            annotator,
            status=status,
            ls_project_id=task.get("project"),
            ls_task_id=task.get("id"),
            ls_annotation_id=ann_ls.get("id"),
            mask_path=workspace.relpath(path),
            n_entities=len(final.entities),
            qa=qa_json,
        )
    report.pulled += 1
    if not qa.passed:
        report.rejected += 1
    counter = report.findings.setdefault(annotator, Counter())
    for f in findings:
        counter[f["check"]] += 1
    report.per_task.append(
        {
            "image_id": image_id,
            "annotator": annotator,
            "task": task.get("id"),
            "status": status,
            "n_entities": len(final.entities),
            "coverage": round(qa.coverage, 4),
            "findings": [f"{f['severity']}:{f['check']}" for f in findings],
        }
    )


def _tasks_with_annotations(
    client: LabelStudioClient, project_id: int, page_size: int
) -> Iterator[dict[str, Any]]:
    """Tasks of a project (id, data, project) each with its ``annotations`` list."""
    for t in client.iter_tasks(project_id, page_size=page_size, fields="task_only"):
        task = {"id": t["id"], "data": t.get("data") or {}, "project": project_id}
        n = t.get("total_annotations")
        task["annotations"] = (
            client.task_annotations(int(t["id"]))
            if n is None or n > 0 or t.get("is_labeled")
            else []
        )
        yield task


def approve(cat: Any, stage: int) -> int:
    """Apply the approval rule to every image of ``stage``; returns the number approved."""
    assignment = {int(k): v for k, v in (cat.get_kv(assignment_key(stage), {}) or {}).items()}
    rows_by_image: dict[int, list[dict[str, Any]]] = {}
    for r in cat.annotations(stage=stage):
        rows_by_image.setdefault(r["image_id"], []).append(r)
    n = 0
    with cat.transaction():
        for image_id, rows in rows_by_image.items():
            order = assignment.get(image_id) or sorted(r["annotator"] for r in rows)
            rank = {a: i for i, a in enumerate(order)}
            passing = [
                r
                for r in rows
                if r["status"] in ("pulled", "approved") and (r["qa"] or {}).get("passed", False)
            ]
            passing.sort(key=lambda r: (rank.get(r["annotator"], len(rank)), r["annotator"]))
            chosen = passing[0]["annotator"] if passing else None
            for r in rows:
                if r["annotator"] == chosen:
                    if r["status"] != "approved":
                        cat.set_annotation(image_id, stage, r["annotator"], status="approved")
                    n += 1
                elif r["status"] == "approved":
                    cat.set_annotation(image_id, stage, r["annotator"], status="pulled")
    return n


def pull(
    workspace: Any,
    client: LabelStudioClient,
    *,
    stages: Iterable[int] = (1, 2),
    annotators: Iterable[str] | None = None,
    overrides: Iterable[str] = (),
    progress: Any = None,
    page_size: int = 100,
) -> dict[int, PullReport]:
    """Pull, check and approve the annotations of ``stages`` (see the module docstring).

    Args:
        workspace: the workspace.
        client: an admin client (it must see every annotator project).
        stages: stages to pull, in order (stage 1 first so its approvals can seed stage 2).
        annotators: only these annotators' projects.
        overrides: ``--set`` style config overrides.
        progress: optional callable ``(stage, annotator, n_tasks_done)``.
        page_size: tasks per task-list request.

    Returns ``{stage: PullReport}``.
    """
    acfg = workspace.config(overrides).annotation
    emails = {int(u["id"]): str(u.get("email") or "") for u in client.users()}
    out = {}
    for stage in stages:
        report = PullReport(stage=stage)
        with workspace.catalog() as cat:
            projects = dict(cat.get_kv(projects_key(stage), {}) or {})
            images = {r["id"]: r for r in cat.images(status=None)}
            approved1 = {
                r["image_id"]: r["annotator"] for r in cat.annotations(stage=1, status="approved")
            }
            wanted = set(annotators) if annotators is not None else None
            for annotator, project_id in sorted(projects.items()):
                if wanted is not None and annotator not in wanted:
                    continue
                # the task list without results, then each task's annotations alone: a 12 MP
                # task with its predictions (and the API's duplicated *_results strings) is
                # megabytes of JSON, so whole pages of full tasks cost gigabytes of memory
                for k, task in enumerate(
                    _tasks_with_annotations(client, int(project_id), page_size)
                ):
                    report.tasks += 1
                    try:
                        _pull_task(
                            workspace,
                            cat,
                            task,
                            stage=stage,
                            annotator=annotator,
                            emails=emails,
                            acfg=acfg,
                            images=images,
                            report=report,
                            approved1=approved1,
                        )
                    except DataError as exc:
                        log.warning("task %s (%s): %s", task.get("id"), annotator, exc)
                        report.errors.append(
                            {"task": task.get("id"), "annotator": annotator, "error": str(exc)}
                        )
                    if progress is not None:
                        progress(stage, annotator, k + 1)
            report.approved = approve(cat, stage)
        log.info(
            "stage %s: %d tasks, %d pulled (%d rejected), %d unchanged, %d not annotated, "
            "%d approved images",
            stage,
            report.tasks,
            report.pulled,
            report.rejected,
            report.unchanged,
            report.unannotated,
            report.approved,
        )
        out[stage] = report
    return out


__all__ = ["PullReport", "approve", "pull"]
