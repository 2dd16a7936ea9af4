"""The annotation backend protocol: what push and pull need from an annotation tool.

The workflow (:mod:`.workflow`, :mod:`.qa`, :mod:`.overlap`) is pure and works on the typed
records below; push and pull (:mod:`.push`, :mod:`.pull`) move them between the workspace and an
:class:`AnnotationBackend`. Two implementations:

* :class:`entityseg_data.annotation.labelstudio.LabelStudioBackend`: a real Label Studio (one
  project per stage and annotator, tasks with pre-annotations, rework through drafts);
* :class:`entityseg_data.annotation.fake.InMemoryBackend`: an in-memory tool for the unit tier
  (tests submit annotations to it directly).

Ids of projects and tasks are strings (Label Studio's integer ids as text). Masks in records are
compressed COCO RLEs in *task* coordinates (the whole image, or a tile of it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from entityseg_data.masks.store import ImageAnnotation
from entityseg_data.masks.types import EntityId


@dataclass(frozen=True)
class ProjectSpec:
    """One project: the tasks of one stage for one annotator (the assignment convention)."""

    stage: int
    annotator: str
    title: str
    workspace_tag: str = ""
    polygon_tool: bool = True
    flags: tuple[str, ...] = ()  # stage 2: 'unknown', 'blurred', '<supercategory>_other'


@dataclass(frozen=True)
class TaskSpec:
    """A task to create: an image (or a tile of it) with its seed.

    ``image`` is the path, relative to the workspace, of the file the annotator sees (height x
    width pixels); ``seed`` holds the regions shown at the start (stage 1: the pre-annotation,
    stage 2: the approved stage-1 masks), with their ids, in task coordinates. ``data`` carries
    extra task fields (workspace tag, overlap flag, tile geometry...). ``context`` lists seed
    regions shown for context only (stage 2: named in another tile), which need no name.
    """

    image_id: int
    stage: int
    annotator: str
    image: str
    height: int
    width: int
    seed: ImageAnnotation | None = None
    seed_version: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    context: tuple[EntityId, ...] = ()


@dataclass(frozen=True)
class SubmissionInfo:
    """A submitted annotation, before it is read: enough to tell whether it changed.

    ``lead_time`` is the seconds the annotator spent as the tool recorded them (None: none);
    ``created_at`` / ``updated_at`` the tool's times (ISO 8601 text)."""

    id: str
    annotator: str
    updated_at: str = ""
    lead_time: float | None = None
    created_at: str = ""


@dataclass(frozen=True)
class TaskState:
    """A task as the backend holds it now, with the newest submission of each annotator.

    ``drafts`` counts unsubmitted drafts (a task sent back for rework holds the annotator's
    draft until they submit it again)."""

    id: str
    project: str
    image_id: int
    data: Mapping[str, Any] = field(default_factory=dict)
    submissions: tuple[SubmissionInfo, ...] = ()
    drafts: int = 0

    def submission_of(self, annotator: str) -> SubmissionInfo | None:
        for s in self.submissions:
            if s.annotator == annotator:
                return s
        return None


@dataclass(frozen=True)
class RegionInfo:
    """What a submission says about one region besides its mask: the stage-2 name and flag, how
    it was drawn (``brush`` / ``polygon``) and the display label it carries."""

    id: EntityId
    name: str | None = None
    flag: str | None = None
    kinds: tuple[str, ...] = ()
    label: str | None = None
    has_geometry: bool = True


@dataclass(frozen=True)
class Submission:
    """A submission read and converted: the masks as drawn (overlaps included, names = name or
    flag) in task coordinates, the regions, and the problems met while reading it (each a dict
    ``{"check", "detail", "region"}``: size_mismatch, rotation, bad_result)."""

    info: SubmissionInfo
    annotation: ImageAnnotation
    regions: tuple[RegionInfo, ...] = ()
    findings: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Feedback:
    """What the annotator must fix: a note for the task and a message per offending region.
    ``restore`` lists regions whose seeded mask goes back into the annotator's draft (a mask
    changed where masks are locked, stage 2: no editor tool can put the old pixels back)."""

    note: str
    regions: Mapping[EntityId, str] = field(default_factory=dict)
    restore: tuple[EntityId, ...] = ()


@runtime_checkable
class AnnotationBackend(Protocol):
    """An annotation tool seen by push and pull (see the module docstring)."""

    def ensure_project(self, spec: ProjectSpec, known_id: str | None = None) -> str:
        """The project for ``spec`` (``known_id`` when it still exists, else found by title, else
        created); its settings are brought up to date. Returns its id."""
        ...

    def existing_tasks(self, project: str, workspace_tag: str) -> dict[int, list[str]]:
        """image_id -> ids of the tasks of this workspace already in ``project`` (a push that was
        interrupted before the catalog write is recovered from these)."""
        ...

    def create_tasks(self, project: str, specs: Sequence[TaskSpec]) -> list[str]:
        """Create the tasks (with their seeds), in order; returns their ids."""
        ...

    def tasks(self, project: str) -> Iterator[TaskState]:
        """Every task of ``project`` with submission headers (cheap: no masks)."""
        ...

    def read_submission(self, task: TaskState, info: SubmissionInfo, stage: int) -> Submission:
        """Read and convert one submission (raises DataError for an unreadable one)."""
        ...

    def send_back(self, task: TaskState, info: SubmissionInfo, feedback: Feedback) -> bool:
        """Return a rejected submission to its annotator with ``feedback`` readable in the task.
        True when the annotator will see it as work to do again."""
        ...

    def clear_feedback(self, task: TaskState) -> None:
        """Remove a previous rework note from the task (the fixed version passed QA)."""
        ...

    def task_url(self, project: str, task: str) -> str:
        """Where a person opens the task."""
        ...


__all__ = [
    "AnnotationBackend",
    "Feedback",
    "ProjectSpec",
    "RegionInfo",
    "Submission",
    "SubmissionInfo",
    "TaskSpec",
    "TaskState",
]
