"""An in-memory annotation backend for the unit tier (no server, no network).

It keeps projects, tasks, submissions and drafts in dicts and behaves like the Label Studio
backend where the workflow can tell: project lookup by title, task ids, one current submission
per annotator and task, ``updated_at`` changing on every submission, rework turning a submission
into the annotator's draft with the QA note in the task data. Tests play the annotators with
:meth:`InMemoryBackend.submit` (masks as an :class:`~entityseg_data.masks.store.ImageAnnotation`,
names on its entities, flags separately) and read what the workflow did with :attr:`tasks_by_id`.

The real behaviour is tested against Label Studio in ``tests/annotation/test_workflow_ls.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from entityseg_data.annotation.backend import (
    Feedback,
    ProjectSpec,
    RegionInfo,
    Submission,
    SubmissionInfo,
    TaskSpec,
    TaskState,
)
from entityseg_data.errors import DataError
from entityseg_data.masks.store import ImageAnnotation
from entityseg_data.masks.types import EntityId


@dataclass
class FakeTask:
    """A task held by the fake: its spec, data, current submissions and drafts by annotator."""

    id: str
    project: str
    spec: TaskSpec
    data: dict[str, Any]
    submissions: dict[str, Submission] = field(default_factory=dict)
    drafts: dict[str, Submission] = field(default_factory=dict)
    feedback: list[Feedback] = field(default_factory=list)


class InMemoryBackend:
    """:class:`~entityseg_data.annotation.backend.AnnotationBackend` held in memory."""

    def __init__(self) -> None:
        self.projects: dict[str, ProjectSpec] = {}
        self.tasks_by_id: dict[str, FakeTask] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self.calls: list[str] = []

    # ------------------------------------------------------------------ protocol
    def ensure_project(self, spec: ProjectSpec, known_id: str | None = None) -> str:
        self.calls.append("ensure_project")
        if known_id is not None and known_id in self.projects:
            self.projects[known_id] = spec
            return known_id
        for pid, p in self.projects.items():
            if p.title == spec.title:
                self.projects[pid] = spec
                return pid
        pid = str(next(self._ids))
        self.projects[pid] = spec
        return pid

    def existing_tasks(self, project: str, workspace_tag: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for t in self.tasks_by_id.values():
            if t.project == project and t.data.get("workspace") == workspace_tag:
                out.setdefault(t.spec.image_id, []).append(t.id)
        return out

    def create_tasks(self, project: str, specs: Sequence[TaskSpec]) -> list[str]:
        self.calls.append("create_tasks")
        if project not in self.projects:
            raise DataError(f"no project {project}")
        ids = []
        for spec in specs:
            tid = str(next(self._ids))
            data = {
                "image": spec.image,
                "image_id": spec.image_id,
                "height": spec.height,
                "width": spec.width,
                "stage": spec.stage,
                "annotator": spec.annotator,
                "seed": spec.seed_version,
                "qa_status": "",
                "qa_note": "",
                **dict(spec.data),
            }
            self.tasks_by_id[tid] = FakeTask(id=tid, project=project, spec=spec, data=data)
            ids.append(tid)
        return ids

    def tasks(self, project: str) -> Iterator[TaskState]:
        for t in list(self.tasks_by_id.values()):
            if t.project != project:
                continue
            yield TaskState(
                id=t.id,
                project=t.project,
                image_id=t.spec.image_id,
                data=dict(t.data),
                submissions=tuple(s.info for _, s in sorted(t.submissions.items())),
                drafts=len(t.drafts),
            )

    def read_submission(self, task: TaskState, info: SubmissionInfo, stage: int) -> Submission:
        sub = self.tasks_by_id[task.id].submissions.get(info.annotator)
        if sub is None or sub.info.id != info.id:
            raise DataError(f"task {task.id}: submission {info.id} is gone")
        return replace(sub, annotation=replace(sub.annotation, stage=stage))

    def send_back(self, task: TaskState, info: SubmissionInfo, feedback: Feedback) -> bool:
        t = self.tasks_by_id[task.id]
        t.data.update({"qa_status": "rework", "qa_note": feedback.note})
        t.feedback.append(feedback)
        sub = t.submissions.pop(info.annotator)
        if feedback.restore and t.spec.seed is not None:  # the seeded masks go back
            seeds = {e.id: e for e in t.spec.seed.entities if e.id in feedback.restore}
            ents = tuple(seeds.get(e.id, e) for e in sub.annotation.entities)
            sub = replace(sub, annotation=replace(sub.annotation, entities=ents))
        t.drafts[info.annotator] = sub
        return True

    def clear_feedback(self, task: TaskState) -> None:
        self.tasks_by_id[task.id].data.update({"qa_status": "passed", "qa_note": ""})

    def task_url(self, project: str, task: str) -> str:
        return f"memory://{project}/{task}"

    # ------------------------------------------------------------------ playing the annotator
    def task_of(self, annotator: str, image_id: int, stage: int) -> FakeTask:
        for t in self.tasks_by_id.values():
            spec = t.spec
            if (spec.annotator, spec.image_id, spec.stage) == (annotator, image_id, stage):
                return t
        raise KeyError(f"no stage-{stage} task of {annotator} for image {image_id}")

    def submit(
        self,
        task_id: str,
        annotator: str,
        annotation: ImageAnnotation,
        *,
        flags: Mapping[EntityId, str] | None = None,
        names_only: Sequence[EntityId] = (),
        kinds: Mapping[EntityId, str] | None = None,
        lead_time: float | None = None,
    ) -> SubmissionInfo:
        """Submit ``annotation`` (masks as drawn, stage-2 names on the entities) as
        ``annotator``; ``flags`` gives region id -> flag, ``names_only`` region ids that carry a
        name (entity of ``annotation`` without geometry, taken from the seed); ``kinds`` region
        id -> 'brush' | 'polygon'. Replaces the annotator's draft, like Submit in the editor."""
        t = self.tasks_by_id[task_id]
        flags = dict(flags or {})
        kinds = dict(kinds or {})
        regions = []
        entities = []
        context = set(t.spec.context)
        for e in annotation.entities:
            flag = flags.get(e.id)
            regions.append(
                RegionInfo(
                    id=e.id,
                    name=e.name,
                    flag=flag,
                    kinds=(kinds.get(e.id, "brush"),) if e.id not in names_only else (),
                    label="context" if e.id in context else None,
                    has_geometry=e.id not in names_only,
                )
            )
            if e.id not in names_only:
                entities.append(replace(e, name=e.name or flag))
        for rid, flag in flags.items():
            if rid not in {e.id for e in annotation.entities}:
                regions.append(RegionInfo(id=rid, flag=flag, has_geometry=False))
        stamp = f"2025-01-01T00:00:{next(self._clock):06d}Z"
        info = SubmissionInfo(
            id=str(next(self._ids)),
            annotator=annotator,
            updated_at=stamp,
            lead_time=lead_time,
            created_at=stamp,
        )
        t.submissions[annotator] = Submission(
            info=info,
            annotation=replace(annotation, entities=tuple(entities), annotator=annotator),
            regions=tuple(regions),
        )
        t.drafts.pop(annotator, None)
        return info


__all__ = ["FakeTask", "InMemoryBackend"]
