"""The Label Studio implementation of :class:`~entityseg_data.annotation.backend.AnnotationBackend`.

Projects: one per stage and annotator (the Community edition has no assignment), with the
labeling configs of :mod:`.configs`, Local Files storages for the workspace folders the tasks
serve (never the workspace root: the credentials live under it), and a first Data Manager tab
that hides the image column, so the project table never loads full-size images as thumbnails
(a second tab lists the tasks in rework).

Tasks: the image URL (Local Files, or ``labelstudio.image_base_url`` + path), the task data the
workflow needs (image id, size, stage, workspace tag, annotator, seed version, ``qa_status`` and
``qa_note``) and the seed as a prediction whose region ids are the seed's ids (palette display
labels, so touching regions differ in colour).

Rework (:meth:`LabelStudioBackend.send_back`): the task data gets ``qa_status = "rework"`` and the
note (shown at the top of the labeling view); then, acting as the annotator (their token from
the workspace credentials), the annotation is converted back into the annotator's draft
(``POST /api/annotations/<id>/convert-to-draft``: one server-side transaction), so the task is
unlabeled again and back in their queue, and the draft is updated so the offending regions
carry the display label ``QA fix`` (red) and the reason as region meta text (shown in the
region's details). Submitting the draft creates a new annotation, which the next pull reads.
Without the annotator's token only the note is written (the annotator finds the task through
the "Rework" tab and updates it).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from entityseg_data.annotation.backend import (
    Feedback,
    ProjectSpec,
    RegionInfo,
    Submission,
    SubmissionInfo,
    TaskSpec,
    TaskState,
)
from entityseg_data.annotation.labelstudio import configs
from entityseg_data.annotation.labelstudio.format import (
    annotation_from_ls,
    annotation_to_results,
    annotator_name,
    display_labels,
)
from entityseg_data.config.annotation import LabelStudioConfig
from entityseg_data.errors import ConfigError, DataError, LabelStudioError
from entityseg_data.masks.types import EntityId

log = logging.getLogger(__name__)

PROJECT_SETTINGS = {
    "show_collab_predictions": True,
    "show_skip_button": True,
    "enable_empty_annotation": False,
    "maximum_annotations": 1,
}
TASKS_TAB = "Tasks"
REWORK_TAB = "Rework"
IMAGE_COLUMN = "tasks:data.image"


def image_url(rel: str, image_base_url: str = "") -> str:
    """The URL Label Studio loads an image from (Local Files storage unless a base URL is set)."""
    if image_base_url:
        return image_base_url.rstrip("/") + "/" + quote(rel)
    return "/data/local-files/?d=" + quote(rel)


def tasks_tab(project_id: int) -> dict[str, Any]:
    """The first Data Manager tab: every task, the image column hidden (no thumbnails)."""
    hidden = {"explore": [IMAGE_COLUMN], "labeling": [IMAGE_COLUMN]}
    return {"project": project_id, "data": {"title": TASKS_TAB, "hiddenColumns": hidden}}


def rework_tab(project_id: int) -> dict[str, Any]:
    """A tab with the tasks QA sent back (``data.qa_status == "rework"``)."""
    tab = tasks_tab(project_id)
    tab["data"]["title"] = REWORK_TAB
    tab["data"]["filters"] = {
        "conjunction": "and",
        "items": [
            {
                "filter": f"filter:tasks:data.{configs.QA_STATUS}",
                "operator": "equal",
                "type": "String",
                "value": "rework",
            }
        ],
    }
    return tab


def relabel_for_rework(
    results: Sequence[Mapping[str, Any]], feedback: Feedback
) -> list[dict[str, Any]]:
    """The annotation's results with every offending region's geometry relabelled ``QA fix`` and
    its reason as region meta text (other results unchanged)."""
    out = []
    for res in results:
        r = copy.deepcopy(dict(res))
        reason = feedback.regions.get(str(r.get("id")))
        value = r.get("value") or {}
        if reason is not None:
            for key in ("brushlabels", "polygonlabels"):
                if key in value:
                    value[key] = [configs.FIX_LABEL]
                    r["meta"] = {**(r.get("meta") or {}), "text": [f"QA: {reason}"]}
        out.append(r)
    return out


class LabelStudioBackend:
    """Push and pull through a Label Studio server.

    Args:
        client: an admin :class:`~.client.LabelStudioClient` (it must see every annotator's
            project).
        root: the workspace root (task images are paths relative to it).
        config: the ``labelstudio`` section (image base URL, document root).
        annotator_clients: annotator name -> a client acting as that annotator (rework drafts
            are theirs); missing annotators get the note only.
    """

    def __init__(
        self,
        client: Any,
        *,
        root: Path,
        config: LabelStudioConfig | None = None,
        annotator_clients: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.root = Path(root)
        self.config = config or LabelStudioConfig()
        self.annotator_clients = dict(annotator_clients or {})
        doc_root = (
            Path(self.config.document_root).resolve() if self.config.document_root else self.root
        )
        try:
            prefix = self.root.resolve().relative_to(doc_root.resolve()).as_posix()
        except ValueError:
            raise ConfigError(
                f"labelstudio.document_root {doc_root} does not contain the workspace {self.root}"
            ) from None
        self._url_prefix = "" if prefix == "." else prefix + "/"
        self._emails: dict[int, str] | None = None
        self._cache: dict[str, dict[str, Any]] = {}  # annotation id -> JSON (current task only)

    # ------------------------------------------------------------------ projects
    def ensure_project(self, spec: ProjectSpec, known_id: str | None = None) -> str:
        label_config = configs.label_config(
            spec.stage, polygon=spec.polygon_tool, supercategories=(), flags=spec.flags
        )
        project = None
        if known_id is not None:
            try:
                project = self.client.project(int(known_id))
            except LabelStudioError as exc:
                if "HTTP 404" not in str(exc):
                    raise
                project = None  # deleted on the server: find or create it again
        if project is None:
            project = self.client.project_by_title(spec.title)
        if project is None:
            project = self.client.create_project(
                title=spec.title, label_config=label_config, **PROJECT_SETTINGS
            )
            log.info("created project %r (id %s)", spec.title, project["id"])
        elif project.get("label_config", "").strip() != label_config.strip():
            try:
                project = self.client.update_project(project["id"], label_config=label_config)
                log.info("updated the labeling config of project %r", spec.title)
            except LabelStudioError as exc:  # annotations made with an older config
                log.warning("project %r keeps its labeling config: %s", spec.title, exc)
        pid = int(project["id"])
        self._ensure_tabs(pid)
        return str(pid)

    def _ensure_tabs(self, project_id: int) -> None:
        views = self.client.get("/api/dm/views/", project=project_id) or []
        titles = [(v.get("data") or {}).get("title") for v in views]
        if TASKS_TAB not in titles:
            if views:  # older tabs show the images: ours goes first
                for v in views:
                    data = dict(v.get("data") or {})
                    hidden = dict(data.get("hiddenColumns") or {})
                    for key in ("explore", "labeling"):
                        hidden[key] = sorted({*(hidden.get(key) or []), IMAGE_COLUMN})
                    data["hiddenColumns"] = hidden
                    self.client.patch(
                        f"/api/dm/views/{v['id']}/", {"project": project_id, "data": data}
                    )
            self.client.post("/api/dm/views/", tasks_tab(project_id))
        if REWORK_TAB not in titles:
            self.client.post("/api/dm/views/", rework_tab(project_id))

    def _ensure_storage(self, project_id: int, folders: set[str]) -> None:
        if self.config.image_base_url:
            return
        have = {s.get("path") for s in self.client.local_storages(project_id)}
        for folder in sorted(folders):
            path = (self.root / folder).resolve()
            if str(path) not in have:
                self.client.add_local_storage(project_id, str(path), title=f"workspace {folder}")

    def existing_tasks(self, project: str, workspace_tag: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for t in self.client.iter_tasks(int(project), fields="task_only"):
            data = t.get("data") or {}
            if data.get("image_id") is not None and data.get("workspace") == workspace_tag:
                out.setdefault(int(data["image_id"]), []).append(str(t["id"]))
        return out

    # ------------------------------------------------------------------ tasks
    def _task_json(self, spec: TaskSpec) -> dict[str, Any]:
        rel = PurePosixPath(spec.image)
        if rel.is_absolute() or ".." in rel.parts or rel.parts[:1] == (self.config.data_dir,):
            raise DataError(f"image {spec.image_id}: {spec.image} is not a workspace image path")
        url = image_url(
            ("" if self.config.image_base_url else self._url_prefix) + rel.as_posix(),
            self.config.image_base_url,
        )
        data = {
            "image": url,
            "image_id": spec.image_id,
            "height": spec.height,
            "width": spec.width,
            "stage": spec.stage,
            "annotator": spec.annotator,
            "seed": spec.seed_version,
            configs.QA_STATUS: "",
            configs.QA_NOTE: "",
            **dict(spec.data),
        }
        task: dict[str, Any] = {"data": data}
        if spec.seed is not None and spec.seed.entities:
            # palette labels of the task's stage ('brush k' / 'mask k'): touching regions differ
            seed = replace(spec.seed, stage=spec.stage)
            labels = None
            if spec.context:  # regions shown for context only: grey, no name needed
                segs = [e.segmentation for e in seed.entities]
                labels = display_labels(segs, seed.height, seed.width, stage=spec.stage)
                context = set(spec.context)
                labels = [
                    configs.CONTEXT_LABEL if e.id in context else lab
                    for e, lab in zip(seed.entities, labels)
                ]
            results = annotation_to_results(seed, labels=labels)
            scores = [float(e.score) for e in spec.seed.entities if e.score is not None]
            task["predictions"] = [
                {
                    "model_version": spec.seed_version or "seed",
                    "score": sum(scores) / len(scores) if scores else 1.0,
                    "result": results,
                }
            ]
        return task

    def create_tasks(self, project: str, specs: Sequence[TaskSpec]) -> list[str]:
        if not specs:
            return []
        pid = int(project)
        self._ensure_storage(pid, {PurePosixPath(s.image).parts[0] for s in specs})
        ids = self.client.import_tasks(pid, [self._task_json(s) for s in specs])
        versions = sorted({s.seed_version or "seed" for s in specs if s.seed is not None})
        if versions:  # annotators see the predictions of the project's selected version
            try:
                self.client.update_project(pid, model_version=versions[-1])
            except LabelStudioError as exc:  # a display setting: never fail the push for it
                log.warning("could not select model version of project %s: %s", pid, exc)
        return [str(i) for i in ids]

    def _users(self) -> dict[int, str]:
        if self._emails is None:
            self._emails = {int(u["id"]): str(u.get("email") or "") for u in self.client.users()}
        return self._emails

    def tasks(self, project: str) -> Iterator[TaskState]:
        # the task list without results, then each task's annotations alone: a 12 MP task with
        # its predictions is megabytes of JSON, so whole pages of full tasks cost gigabytes
        pid = int(project)
        for t in self.client.iter_tasks(pid, fields="task_only"):
            n = t.get("total_annotations")
            anns = (
                self.client.task_annotations(int(t["id"]))
                if n is None or n > 0 or t.get("is_labeled")
                else []
            )
            latest: dict[str, dict[str, Any]] = {}
            for ann in anns:
                if ann.get("was_cancelled"):
                    continue
                name = annotator_name(ann.get("completed_by"), self._users())
                key = (str(ann.get("updated_at") or ""), int(ann.get("id") or 0))
                cur = latest.get(name)
                if cur is None or key > (str(cur.get("updated_at") or ""), int(cur.get("id") or 0)):
                    latest[name] = ann
            self._cache = {str(a["id"]): a for a in latest.values()}
            data = t.get("data") or {}
            yield TaskState(
                id=str(t["id"]),
                project=str(pid),
                image_id=int(data.get("image_id", -1)),
                data=data,
                submissions=tuple(
                    SubmissionInfo(
                        id=str(a["id"]),
                        annotator=name,
                        updated_at=str(a.get("updated_at") or ""),
                        lead_time=a.get("lead_time"),
                        created_at=str(a.get("created_at") or ""),
                    )
                    for name, a in sorted(latest.items())
                ),
                drafts=int(t.get("drafts_count") or len(t.get("drafts") or [])),
            )

    def _annotation(self, info: SubmissionInfo) -> dict[str, Any]:
        ann = self._cache.get(info.id)
        if ann is None:
            ann = self.client.get(f"/api/annotations/{int(info.id)}/")
        return ann

    def read_submission(self, task: TaskState, info: SubmissionInfo, stage: int) -> Submission:
        ann = self._annotation(info)
        h, w = task.data.get("height"), task.data.get("width")
        image_ann, regions, findings = annotation_from_ls(
            ann,
            {"id": task.id, "project": task.project, "data": dict(task.data)},
            stage=stage,
            annotator=info.annotator,
            height=int(h) if h else None,
            width=int(w) if w else None,
        )
        return Submission(
            info=info,
            annotation=image_ann,
            regions=tuple(
                RegionInfo(
                    id=r.id,
                    name=r.name,
                    flag=r.flag,
                    kinds=tuple(r.kinds),
                    label=r.label,
                    has_geometry=bool(r.runs),
                )
                for r in regions
            ),
            findings=tuple(findings),
        )

    # ------------------------------------------------------------------ rework
    def _set_qa(self, task: TaskState, status: str, note: str) -> None:
        current = self.client.task(int(task.id)).get("data") or dict(task.data)
        data = {**current, configs.QA_STATUS: status, configs.QA_NOTE: note}
        self.client.patch(f"/api/tasks/{int(task.id)}/", {"data": data})

    def send_back(self, task: TaskState, info: SubmissionInfo, feedback: Feedback) -> bool:
        self._set_qa(task, "rework", feedback.note)
        who = self.annotator_clients.get(info.annotator)
        if who is None:
            log.warning(
                "task %s: no account token for %s; the rework note is in the task, the "
                "annotation stays submitted",
                task.id,
                info.annotator,
            )
            return False
        ann = self._annotation(info)
        results = relabel_for_rework(ann.get("result") or [], feedback)
        if feedback.restore:
            results = self._restore_seeds(task, results, feedback.restore)
        draft = who.post(f"/api/annotations/{int(info.id)}/convert-to-draft")
        if draft and draft.get("id") is not None:
            try:  # the task is back with the annotator already: the marks are a help
                who.patch(f"/api/drafts/{int(draft['id'])}/", {"result": results})
            except LabelStudioError as exc:
                log.warning("task %s: the draft keeps no QA marks: %s", task.id, exc)
        return True

    def _restore_seeds(
        self, task: TaskState, results: list[dict[str, Any]], ids: Sequence[EntityId]
    ) -> list[dict[str, Any]]:
        """``results`` with the seeded brush mask (the task's prediction) back for ``ids``,
        labelled ``QA fix`` (a region the annotator deleted comes back too)."""
        seeds = {}
        for pred in self.client.task(int(task.id)).get("predictions") or []:
            for r in pred.get("result") or []:
                if r.get("type") == "brushlabels" and r.get("id") in ids:
                    seeds[str(r["id"])] = r
        out, seen = [], set()
        for r in results:
            rid = str(r.get("id"))
            if r.get("type") == "brushlabels" and rid in seeds:
                r = {**r, "value": {**seeds[rid]["value"], "brushlabels": [configs.FIX_LABEL]}}
                seen.add(rid)
            out.append(r)
        for rid in sorted(set(seeds) - seen):
            r = copy.deepcopy(seeds[rid])
            r.pop("score", None)
            r["value"]["brushlabels"] = [configs.FIX_LABEL]
            out.append(r)
        return out

    def clear_feedback(self, task: TaskState) -> None:
        if task.data.get(configs.QA_STATUS) or task.data.get(configs.QA_NOTE):
            self._set_qa(task, "passed", "")

    def task_url(self, project: str, task: str) -> str:
        return f"{self.client.url}/projects/{int(project)}/data?task={int(task)}"


__all__ = [
    "LabelStudioBackend",
    "PROJECT_SETTINGS",
    "image_url",
    "relabel_for_rework",
    "rework_tab",
    "tasks_tab",
]
