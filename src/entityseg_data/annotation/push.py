"""Push catalog images to an annotation backend as stage-1 or stage-2 tasks, with their seeds.

Assignment (:func:`~entityseg_data.annotation.workflow.assign_images`): one project per stage and
annotator, titled ``"<stage title> · <annotator> · <workspace tag>"`` (the project ids are kept in
the catalog's kv table, ``annotation.stage{N}.projects``; the short random workspace tag keeps two
workspaces on one server apart and is also written into every task's data). Every image gets a
primary annotator (balanced: each within one image of the mean) and, for the overlap sample,
``overlap_annotators - 1`` more; the assignment (primary first) is stored in the kv table
(``annotation.stage{N}.assignment``). Stage 2 reuses the stage-1 assignment of an image so the
overlap sample is the same in both stages. The catalog gets one ``annotations`` row per (image,
stage, annotator) with the project and task ids (status ``pushed``).

Seeds: a stage-1 task carries the image's row of the predictions table
(``annotation.model_version``, or the newest) as its pre-annotation, region ids
``<image_id>_<entity id>``; a stage-2 task is made for an image with an *approved* stage-1
annotation and carries its masks with their ids, so the names typed in stage 2 attach to them.
The seed's version (``data.seed``: the model version, or ``stage1:<annotator>``) goes into the
task data: the pull reads the same seed back to apply the overlap rule and the stage-2 geometry
lock.

The file served is the upright copy (``norm_path``) when it exists, else the original, at full
resolution; its size is read from the file and must equal the catalog's (and the seed's).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entityseg_data.annotation.backend import AnnotationBackend, ProjectSpec, TaskSpec
from entityseg_data.annotation.tiled import tile_task_specs
from entityseg_data.annotation.tiling import TilingConfig, plan_for
from entityseg_data.annotation.workflow import assign_images, flag_choices
from entityseg_data.catalog import Catalog, ImageRecord
from entityseg_data.catalog.predictions import latest_prediction
from entityseg_data.config.annotation import AnnotationConfig
from entityseg_data.errors import ConfigError, DataError
from entityseg_data.masks.store import Entity, ImageAnnotation, load_annotation
from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)

TITLE_MAX = 50  # Label Studio's limit on project titles
STAGE1_SEED_PREFIX = "stage1:"


def assignment_key(stage: int) -> str:
    return f"annotation.stage{stage}.assignment"


def projects_key(stage: int) -> str:
    return f"annotation.stage{stage}.projects"


def check_image_size(root: Path, image: ImageRecord) -> tuple[int, int]:
    """(height, width) of the served file (``image.path``), checked against the catalog."""
    from entityseg_data.io.images import image_size

    path = Path(root) / image.path
    try:
        size = image_size(path)  # the header, by the toolkit's one decoder
    except DataError as exc:
        raise DataError(f"image {image.id}: {exc}") from None
    h, w = size.raw_height, size.raw_width
    if image.width and image.height and (int(image.height), int(image.width)) != (h, w):
        raise DataError(
            f"image {image.id} ({path}): file is {h}x{w} but the catalog says "
            f"{image.height}x{image.width} (EXIF rotation not normalised?)"
        )
    return h, w


def load_prediction(
    root: Path, cat: Catalog, image_id: int, model_version: str = ""
) -> tuple[str, dict[str, Any]] | None:
    """(model_version, prediction JSON) of an image (the newest, or of ``model_version``)."""
    found = latest_prediction(root, cat, image_id, model_version or None)
    if found is None:
        return None
    rec, data = found
    return rec.model_version, data


def prediction_seed(
    data: Mapping[str, Any], image_id: int, height: int, width: int, where: str = ""
) -> ImageAnnotation:
    """A prediction file as the stage-1 seed: region ids ``<image_id>_<entity id>``."""
    if (int(data.get("height", -1)), int(data.get("width", -1))) != (height, width):
        raise DataError(
            f"{where}: prediction is {data.get('height')}x{data.get('width')}, image is "
            f"{height}x{width}"
        )
    entities = []
    for k, e in enumerate(data.get("entities", [])):
        entities.append(
            Entity(
                id=f"{image_id}_{e.get('id', k)}",
                rle=e["segmentation"],
                score=e.get("score"),
                name=e.get("name"),
                origin="prediction",
            )
        )
    return ImageAnnotation(
        image_id=image_id,
        height=height,
        width=width,
        stage=1,
        annotator="model",
        entities=tuple(entities),
    )


def load_seed(
    root: Path, cat: Catalog, stage: int, image_id: int, height: int, width: int, version: str
) -> ImageAnnotation | None:
    """The seed a task of ``stage`` was made from (``version`` as written into its data)."""
    if stage == 2:
        annotator = version.removeprefix(STAGE1_SEED_PREFIX)
        return load_annotation(root, 1, annotator, image_id) if annotator else None
    if not version:
        return None
    pred = load_prediction(root, cat, image_id, version)
    if pred is None:
        return None
    return prediction_seed(pred[1], image_id, height, width, where=f"image {image_id} {version}")


@dataclass
class PushReport:
    """What one push did."""

    stage: int
    projects: dict[str, str] = field(default_factory=dict)
    images: int = 0
    tasks: int = 0
    recovered: int = 0
    overlap_images: int = 0
    round_id: int | None = None
    selection: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    not_eligible: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def project_title(stage: int, annotator: str, cfg: AnnotationConfig, tag: str = "") -> str:
    """``"<stage title> · <annotator> · <workspace tag>"`` cut to Label Studio's 50 characters
    (the tag keeps projects of two workspaces on one server apart)."""
    base = cfg.stage1_project if stage == 1 else cfg.stage2_project
    suffix = f" · {annotator}" + (f" · {tag}" if tag else "")
    return (base[: max(0, TITLE_MAX - len(suffix))].rstrip() + suffix)[:TITLE_MAX]


def workspace_tag(cat: Catalog) -> str:
    """A short random id of the workspace, made on first use (kv ``annotation.workspace_tag``);
    it goes into project titles and task data."""
    tag = cat.get_kv("annotation.workspace_tag")
    if not tag:
        tag = secrets.token_hex(3)
        cat.set_kv("annotation.workspace_tag", tag)
    return str(tag)


def task_specs(
    *,
    image_id: int,
    image: str,
    height: int,
    width: int,
    stage: int,
    annotator: str,
    seed: ImageAnnotation | None,
    seed_version: str,
    data: Mapping[str, Any],
    config: AnnotationConfig,
    root: Path | None = None,
) -> list[TaskSpec]:
    """The task(s) of one image for one annotator: the whole image as one task, or, for an
    image above ``config.tile_min_pixels`` (and a workspace ``root`` to write tile pictures
    in), one task per tile with the seed regions it shows (:mod:`.tiled`)."""
    plan = plan_for(height, width, TilingConfig.from_config(config))
    if plan is not None and root is not None:
        return tile_task_specs(
            root=root,
            image_id=image_id,
            image=image,
            height=height,
            width=width,
            stage=stage,
            annotator=annotator,
            seed=seed,
            seed_version=seed_version,
            data=data,
            plan=plan,
        )
    return [
        TaskSpec(
            image_id=image_id,
            stage=stage,
            annotator=annotator,
            image=image,
            height=height,
            width=width,
            seed=seed,
            seed_version=seed_version,
            data=dict(data),
        )
    ]


def push(
    workspace: Workspace,
    backend: AnnotationBackend,
    config: AnnotationConfig,
    *,
    stage: int,
    seed: int = 0,
    image_ids: Iterable[int] | None = None,
    limit: int | None = None,
    selection: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PushReport:
    """Create/update the stage's projects and create tasks for images not pushed yet.

    Every push that records tasks records one annotation round in the catalog
    (:class:`~entityseg_data.catalog.RoundRecord`: stage, seeds' model version, images,
    annotators, ``selection``, time); each image's annotation rows carry its id, so the pull can
    file what the annotators did under the round (``entityseg-data rounds report``).

    Args:
        workspace: the :class:`~entityseg_data.workspace.Workspace`.
        backend: where the tasks go (:class:`~entityseg_data.annotation.backend.AnnotationBackend`).
        config: the ``annotation`` section (annotators, overlap sample, titles, tools).
        stage: 1 (masks) or 2 (names).
        seed: the workspace seed (assignment tie breaks and the overlap draw).
        image_ids: restrict to these images (default: every eligible one).
        limit: push at most this many images.
        selection: a named selection (``entityseg-data select``): push exactly its images
            (restricted to ``image_ids`` when given); its images not eligible (pushed
            already, no longer accepted, stage 2 without approved masks) are listed in
            ``PushReport.not_eligible``. The name is recorded with the round (None: a push
            not driven by a selection). With ``image_ids``, a name not stored in the catalog
            only labels the round; without, it is a CatalogError.
        progress: optional callable ``(n_done, n_total)``.

    Returns a :class:`PushReport`; per-image problems (size mismatch, unreadable seed) are
    reported there and the image is left for the next push.
    """
    if stage not in (1, 2):
        raise ConfigError(f"stage must be 1 or 2, got {stage}")
    root = Path(workspace.root)
    report = PushReport(stage=stage, selection=selection)
    with workspace.catalog() as cat:
        rank: dict[int, int] = {}  # a stored selection's order: --limit keeps its first ones
        if selection is not None and (image_ids is None or cat.selection_info(selection)):
            chosen = [it.image_id for it in cat.selection(selection)]  # CatalogError if none
            rank = {i: k for k, i in enumerate(chosen)}
            if image_ids is not None:
                given = {int(i) for i in image_ids}
                chosen = [i for i in chosen if i in given]
            image_ids = chosen
        rows = {r.id: r for r in cat.images(status="accepted")}
        done = {r.image_id for r in cat.annotations(stage=stage) if r.status != "pending"}
        approved: dict[int, str] = {}
        if stage == 2:
            approved = {
                r.image_id: r.annotator for r in cat.annotations(stage=1, status="approved")
            }
            eligible = [i for i in rows if i in approved and i not in done]
        else:
            eligible = [i for i in rows if i not in done]
        if image_ids is not None:
            wanted = {int(i) for i in image_ids}
            eligible = [i for i in eligible if i in wanted]
            if selection is not None:
                ok = set(eligible)
                report.not_eligible = sorted(i for i in wanted if i not in ok)
        eligible.sort()
        if limit is not None:
            if rank:
                eligible = sorted(sorted(eligible, key=rank.__getitem__)[:limit])
            else:
                eligible = eligible[:limit]
        assignment = {int(k): v for k, v in (cat.get_kv(assignment_key(stage), {}) or {}).items()}
        new_ids = [i for i in eligible if i not in assignment]
        if stage == 2:
            stage1 = {int(k): v for k, v in (cat.get_kv(assignment_key(1), {}) or {}).items()}
            for i in new_ids:
                prev = [a for a in stage1.get(i, []) if a in config.annotators]
                if prev:
                    assignment[i] = prev
            new_ids = [i for i in new_ids if i not in assignment]
        assignment.update(
            assign_images(
                new_ids,
                list(config.annotators),
                overlap_fraction=config.overlap_fraction,
                overlap_images=config.overlap_images,
                overlap_annotators=config.overlap_annotators,
                seed=seed,
                existing=assignment,
            )
        )
        cat.set_kv(assignment_key(stage), {str(k): v for k, v in sorted(assignment.items())})
        projects = {a: str(p) for a, p in (cat.get_kv(projects_key(stage), {}) or {}).items()}
        tag = workspace_tag(cat)

    flags = tuple(flag_choices(config.supercategories))
    needed = sorted({a for i in eligible for a in assignment[i]})
    for annotator in needed:
        spec = ProjectSpec(
            stage=stage,
            annotator=annotator,
            title=project_title(stage, annotator, config, tag),
            workspace_tag=tag,
            polygon_tool=config.polygon_tool,
            flags=flags,
        )
        projects[annotator] = backend.ensure_project(spec, projects.get(annotator))
    with workspace.catalog() as cat:
        cat.set_kv(projects_key(stage), projects)
    report.projects = {a: projects[a] for a in needed}
    existing = {a: backend.existing_tasks(projects[a], tag) for a in needed}
    rounds = _RoundLog(stage=stage, selection=selection, annotators=tuple(needed))

    batch = max(1, config.push_batch)
    for start in range(0, len(eligible), batch):
        chunk = eligible[start : start + batch]
        per_project: dict[str, list[TaskSpec]] = defaultdict(list)
        recovered: list[tuple[int, str, str]] = []
        versions: dict[int, str] = {}
        with workspace.catalog() as cat:
            for iid in chunk:
                row = rows[iid]
                try:
                    h, w = check_image_size(root, row)
                    if stage == 1:
                        pred = load_prediction(root, cat, iid, config.model_version)
                        version = pred[0] if pred else ""
                        seed_ann = (
                            prediction_seed(pred[1], iid, h, w, where=f"image {iid} {version}")
                            if pred
                            else None
                        )
                    else:
                        version = STAGE1_SEED_PREFIX + approved[iid]
                        seed_ann = load_annotation(root, 1, approved[iid], iid)
                        if seed_ann is None:
                            raise DataError(
                                f"image {iid}: approved stage-1 file of {approved[iid]} is missing"
                            )
                    if seed_ann is not None and (seed_ann.height, seed_ann.width) != (h, w):
                        raise DataError(
                            f"image {iid}: seed masks are {seed_ann.height}x{seed_ann.width}, "
                            f"image is {h}x{w}"
                        )
                except DataError as exc:
                    log.warning("skipping image %s: %s", iid, exc)
                    report.errors.append({"image_id": iid, "error": str(exc)})
                    continue
                group = assignment[iid]
                made: list[tuple[str, list[TaskSpec]]] = []
                try:
                    for annotator in group:
                        if iid in existing[annotator]:
                            continue
                        made.append(
                            (
                                annotator,
                                task_specs(
                                    image_id=iid,
                                    image=row.path,
                                    height=h,
                                    width=w,
                                    stage=stage,
                                    annotator=annotator,
                                    seed=seed_ann,
                                    seed_version=version,
                                    data={"workspace": tag, "overlap": len(group) > 1},
                                    config=config,
                                    root=root,
                                ),
                            )
                        )
                except DataError as exc:  # e.g. the tile pictures cannot be cut
                    log.warning("skipping image %s: %s", iid, exc)
                    report.errors.append({"image_id": iid, "error": str(exc)})
                    continue
                if len(group) > 1:
                    report.overlap_images += 1
                report.images += 1
                versions[iid] = version
                for annotator in group:
                    if iid in existing[annotator]:
                        recovered.append((iid, annotator, existing[annotator][iid][0]))
                for annotator, specs in made:
                    per_project[annotator].extend(specs)
        for annotator, task_list in per_project.items():
            ids = backend.create_tasks(projects[annotator], task_list)
            first: dict[int, str] = {}
            for task, tid in zip(task_list, ids):
                first.setdefault(task.image_id, tid)
            _record(
                workspace,
                stage,
                annotator,
                projects[annotator],
                first.items(),
                rounds,
                versions,
                n_tasks=len(ids),
            )
            report.tasks += len(ids)
        by_annotator: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for iid, annotator, tid in recovered:
            by_annotator[annotator].append((iid, tid))
        for annotator, items in by_annotator.items():
            _record(workspace, stage, annotator, projects[annotator], items, rounds, versions)
            report.recovered += len(items)
        if progress is not None:
            progress(min(start + batch, len(eligible)), len(eligible))
    report.round_id = rounds.round_id
    log.info(
        "stage %s (round %s): %d images, %d tasks, %d overlap images, %d errors",
        stage,
        report.round_id,
        report.images,
        report.tasks,
        report.overlap_images,
        len(report.errors),
    )
    return report


@dataclass
class _RoundLog:
    """The round of one push, recorded with the first task rows it files (no round for a push
    that files nothing)."""

    stage: int
    selection: str | None
    annotators: tuple[str, ...]
    round_id: int | None = None

    def file(
        self, cat: Catalog, images: Iterable[int], versions: Mapping[int, str], n_tasks: int
    ) -> int:
        """Add ``images`` to the round (created on first use); join the caller's transaction."""
        ids = list(images)
        if self.round_id is None:
            self.round_id = cat.add_round(
                self.stage, selection=self.selection, annotators=self.annotators
            )
        cat.extend_round(
            self.round_id,
            images=ids,
            seed_versions={i: versions.get(i, "") for i in ids},
            n_tasks=n_tasks,
        )
        return self.round_id


def _record(
    workspace: Workspace,
    stage: int,
    annotator: str,
    project: str,
    items: Iterable[tuple[int, str]],
    rounds: _RoundLog,
    versions: Mapping[int, str],
    *,
    n_tasks: int = 0,
) -> None:
    """The catalog rows of tasks made (or recovered) for ``annotator``, and their round, in one
    transaction."""
    items = list(items)
    with workspace.catalog() as cat, cat.transaction():
        round_id = rounds.file(cat, [iid for iid, _ in items], versions, n_tasks)
        for iid, tid in items:
            cat.set_annotation(
                iid,
                stage,
                annotator,
                status="pushed",
                ls_project_id=int(project),
                ls_task_id=int(tid),
                round_id=round_id,
            )


__all__ = [
    "PushReport",
    "assignment_key",
    "check_image_size",
    "load_prediction",
    "load_seed",
    "prediction_seed",
    "project_title",
    "projects_key",
    "push",
    "task_specs",
    "workspace_tag",
]
