"""Push catalog images to Label Studio as stage-1 or stage-2 tasks, with pre-annotations.

Assignment convention (the Community edition has no task assignment): **one project per stage and
annotator**, titled ``"<stage title> · <annotator> · <workspace tag>"`` (the project ids are kept
in the catalog's kv table, ``annotation.stage{N}.projects``; the short random workspace tag keeps
two workspaces on one server apart and is also written into every task's data). Every image gets
a *primary* annotator (a stable hash of the seed and the image id picks one of
``annotation.annotators``); a sample of images (the overlap sample: each image independently
with probability ``overlap_fraction``, at most ``overlap_images`` in total, like the paper's 500
images / 1.5%) is also given to the next ``overlap_annotators - 1`` annotators in the list. An
image's task is imported into the project of every annotator it is assigned to; the catalog gets
one ``annotations`` row per (image, stage, annotator) with the project and task ids (status
``pushed``). The assignment (annotators in order, primary first) is stored in the catalog's kv
table (``annotation.stage{N}.assignment``); stage 2 reuses the stage-1 assignment of an image so
the overlap sample is the same in both stages.

Stage 1 tasks carry the image's row of the predictions table (``annotation.model_version``, or the
newest) as a Label Studio prediction of brush regions. Stage 2 tasks are made for images with an
*approved* stage-1 annotation and carry its masks as a prediction whose region ids are the stage-1
entity ids, so the per-region names typed in stage 2 attach to them.

Images are served from the workspace: through Local Files storage (``/data/local-files/?d=<path
relative to the workspace>``; the server's document root must be the workspace, which
``annotate server`` sets up) or, with ``labelstudio.image_base_url``, from that URL prefix. The
upright copy (``norm_path``) is served when it exists, else the original, at full resolution; its
size is read from the file and must equal the catalog's width/height (and every prediction's).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from entityseg_data.annotation import configs
from entityseg_data.annotation.client import LabelStudioClient
from entityseg_data.annotation.convert import annotation_to_results
from entityseg_data.errors import ConfigError, DataError
from entityseg_data.masks.store import Entity, ImageAnnotation, load_annotation

log = logging.getLogger(__name__)


def assignment_key(stage: int) -> str:
    return f"annotation.stage{stage}.assignment"


def projects_key(stage: int) -> str:
    return f"annotation.stage{stage}.projects"


def _unit(seed: int, image_id: int, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


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

    Deterministic: the same seed, ids and annotators give the same assignment, and images
    assigned before (``existing``) keep theirs and count towards ``overlap_images``."""
    if not annotators:
        raise ConfigError("annotation.annotators is empty: name at least one annotator")
    if len(set(annotators)) != len(annotators):
        raise ConfigError(f"annotation.annotators has duplicates: {list(annotators)}")
    existing = existing or {}
    n_overlap = sum(1 for v in existing.values() if len(v) > 1)
    k = len(annotators)
    m = max(1, min(overlap_annotators, k))
    out: dict[int, list[str]] = {}
    for iid in image_ids:
        if iid in existing:
            continue
        start = int(_unit(seed, iid, "primary") * k) % k
        if m > 1 and n_overlap < overlap_images and _unit(seed, iid, "overlap") < overlap_fraction:
            out[iid] = [annotators[(start + j) % k] for j in range(m)]
            n_overlap += 1
        else:
            out[iid] = [annotators[start]]
    return out


def image_relpath(row: Mapping[str, Any]) -> str:
    rel = row.get("norm_path") or row.get("file_path")
    if not rel:
        raise DataError(f"image {row.get('id')}: no file in the workspace (file_path is empty)")
    return str(rel)


def image_url(rel: str, image_base_url: str = "") -> str:
    """The URL Label Studio loads the image from (Local Files storage unless a base URL is set)."""
    if image_base_url:
        return image_base_url.rstrip("/") + "/" + quote(rel)
    return "/data/local-files/?d=" + quote(rel)


def check_image_size(root: Path, row: Mapping[str, Any]) -> tuple[int, int]:
    """(height, width) of the served file, checked against the catalog row."""
    from PIL import Image

    path = Path(root) / image_relpath(row)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError) as exc:
        raise DataError(f"image {row['id']} ({path}): cannot read: {exc}") from None
    if row.get("width") and row.get("height") and (int(row["height"]), int(row["width"])) != (h, w):
        raise DataError(
            f"image {row['id']} ({path}): file is {h}x{w} but the catalog says "
            f"{row['height']}x{row['width']} (EXIF rotation not normalised?)"
        )
    return h, w


def load_prediction(
    root: Path, cat: Any, image_id: int, model_version: str = ""
) -> tuple[str, dict[str, Any]] | None:
    """(model_version, prediction JSON) of an image from the predictions table, or None."""
    sql = "SELECT model_version, path FROM predictions WHERE image_id = ?"
    params: list[Any] = [image_id]
    if model_version:
        sql += " AND model_version = ?"
        params.append(model_version)
    row = cat.query(sql + " ORDER BY created_at DESC, model_version LIMIT 1", params)
    if not row:
        return None
    path = Path(root) / row[0]["path"]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"prediction file {path}: unreadable: {exc}") from None
    return str(row[0]["model_version"]), data


def prediction_results(
    data: Mapping[str, Any], image_id: int, height: int, width: int, where: str = ""
) -> tuple[list[dict[str, Any]], float]:
    """Brush results (ids ``<image_id>_<entity id>``) and the mean score of a prediction file."""
    if (int(data.get("height", -1)), int(data.get("width", -1))) != (height, width):
        raise DataError(
            f"{where}: prediction is {data.get('height')}x{data.get('width')}, image is "
            f"{height}x{width}"
        )
    entities = []
    for k, e in enumerate(data.get("entities", [])):
        eid = f"{image_id}_{e.get('id', k)}"
        entities.append(
            Entity(id=eid, segmentation=e["segmentation"], score=e.get("score"), name=e.get("name"))
        )
    ann = ImageAnnotation(
        image_id=image_id,
        height=height,
        width=width,
        stage=1,
        annotator="model",
        entities=tuple(entities),
    )
    results = annotation_to_results(ann)
    scores = [float(e.score) for e in entities if e.score is not None]
    return results, (sum(scores) / len(scores) if scores else 1.0)


@dataclass
class PushReport:
    """What one push did."""

    stage: int
    projects: dict[str, int] = field(default_factory=dict)
    images: int = 0
    tasks: int = 0
    recovered: int = 0
    overlap_images: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


TITLE_MAX = 50  # Label Studio's limit on project titles


def project_title(stage: int, annotator: str, cfg: Any, tag: str = "") -> str:
    """``"<stage title> · <annotator> · <workspace tag>"`` cut to Label Studio's 50 characters
    (the tag keeps projects of two workspaces on one server apart)."""
    base = cfg.stage1_project if stage == 1 else cfg.stage2_project
    suffix = f" · {annotator}" + (f" · {tag}" if tag else "")
    return (base[: max(0, TITLE_MAX - len(suffix))].rstrip() + suffix)[:TITLE_MAX]


def workspace_tag(cat: Any) -> str:
    """A short random id of the workspace, made on first use (kv ``annotation.workspace_tag``);
    it goes into project titles and task data."""
    tag = cat.get_kv("annotation.workspace_tag")
    if not tag:
        import secrets

        tag = secrets.token_hex(3)
        cat.set_kv("annotation.workspace_tag", tag)
    return str(tag)


def ensure_project(
    client: LabelStudioClient,
    *,
    title: str,
    label_config: str,
    storage_paths: Sequence[Path] = (),
    project_id: int | None = None,
) -> dict[str, Any]:
    """The project ``project_id`` (when it still exists), else the one titled ``title``, else a
    new one; its labeling config is updated when it changed, and Local Files storages (not
    synced) are registered for ``storage_paths``."""
    project = None
    if project_id is not None:
        try:
            project = client.project(int(project_id))
        except Exception:  # deleted on the server: find or create it again
            project = None
    if project is None:
        project = client.project_by_title(title)
    settings = {
        "show_collab_predictions": True,
        "show_skip_button": True,
        "enable_empty_annotation": False,
        "maximum_annotations": 1,
    }
    if project is None:
        project = client.create_project(title=title, label_config=label_config, **settings)
        log.info("created project %r (id %s)", title, project["id"])
    elif project.get("label_config", "").strip() != label_config.strip():
        project = client.update_project(project["id"], label_config=label_config)
        log.info("updated the labeling config of project %r", title)
    if storage_paths:
        have = {s.get("path") for s in client.local_storages(project["id"])}
        for p in storage_paths:
            if str(p) not in have:
                client.add_local_storage(project["id"], str(p), title=f"workspace {p.name}")
    return project


def _existing_tasks(client: LabelStudioClient, project_id: int, tag: str) -> dict[int, int]:
    """image_id -> task id of this workspace's tasks in a project (recovers a push interrupted
    before the catalog write)."""
    out = {}
    for t in client.iter_tasks(project_id, fields="task_only"):
        data = t.get("data") or {}
        if data.get("image_id") is not None and data.get("workspace") == tag:
            out.setdefault(int(data["image_id"]), int(t["id"]))
    return out


def push(
    workspace: Any,
    client: LabelStudioClient,
    *,
    stage: int,
    image_ids: Iterable[int] | None = None,
    limit: int | None = None,
    overrides: Iterable[str] = (),
    progress: Any = None,
) -> PushReport:
    """Create/update the stage's projects and import tasks for images not pushed yet.

    Args:
        workspace: the :class:`~entityseg_data.workspace.Workspace`.
        client: an admin :class:`LabelStudioClient`.
        stage: 1 (masks) or 2 (names).
        image_ids: restrict to these images (default: every eligible one).
        limit: push at most this many images.
        overrides: ``--set`` style config overrides.
        progress: optional callable ``(n_done, n_total)``.

    Returns a :class:`PushReport`; per-image problems (size mismatch, unreadable prediction) are
    reported there and the image is left for the next push.
    """
    if stage not in (1, 2):
        raise ConfigError(f"stage must be 1 or 2, got {stage}")
    wcfg = workspace.config(overrides)
    acfg, lcfg = wcfg.annotation, wcfg.labelstudio
    root = Path(workspace.root)
    report = PushReport(stage=stage)
    label_config = configs.label_config(
        stage, polygon=acfg.polygon_tool, supercategories=acfg.supercategories
    )
    storage = [] if lcfg.image_base_url else [root / "images", root / "images_norm"]
    doc_root = Path(lcfg.document_root).resolve() if lcfg.document_root else root
    try:
        url_prefix = root.relative_to(doc_root).as_posix()
    except ValueError:
        raise ConfigError(
            f"labelstudio.document_root {doc_root} does not contain the workspace {root}"
        ) from None
    url_prefix = "" if url_prefix == "." else url_prefix + "/"
    with workspace.catalog() as cat:
        rows = {r["id"]: r for r in cat.images(status="accepted")}
        done = {r["image_id"] for r in cat.annotations(stage=stage) if r["status"] != "pending"}
        if stage == 2:
            approved = {
                r["image_id"]: r["annotator"]
                for r in cat.annotations(stage=1)
                if r["status"] == "approved"
            }
            eligible = [i for i in rows if i in approved and i not in done]
        else:
            approved = {}
            eligible = [i for i in rows if i not in done]
        if image_ids is not None:
            wanted = set(int(i) for i in image_ids)
            eligible = [i for i in eligible if i in wanted]
        eligible.sort()
        if limit is not None:
            eligible = eligible[:limit]
        assignment = {int(k): v for k, v in (cat.get_kv(assignment_key(stage), {}) or {}).items()}
        stage1_assignment = (
            {int(k): v for k, v in (cat.get_kv(assignment_key(1), {}) or {}).items()}
            if stage == 2
            else {}
        )
        new_ids = [i for i in eligible if i not in assignment]
        if stage == 2:
            for i in new_ids:
                prev = [a for a in stage1_assignment.get(i, []) if a in acfg.annotators]
                if prev:
                    assignment[i] = prev
            new_ids = [i for i in new_ids if i not in assignment]
        assignment.update(
            assign_images(
                new_ids,
                list(acfg.annotators),
                overlap_fraction=acfg.overlap_fraction,
                overlap_images=acfg.overlap_images,
                overlap_annotators=acfg.overlap_annotators,
                seed=wcfg.seed,
                existing=assignment,
            )
        )
        cat.set_kv(assignment_key(stage), {str(k): v for k, v in sorted(assignment.items())})
        projects = dict(cat.get_kv(projects_key(stage), {}) or {})
        tag = workspace_tag(cat)

    needed = sorted({a for i in eligible for a in assignment[i]})
    for annotator in needed:
        proj = ensure_project(
            client,
            title=project_title(stage, annotator, acfg, tag),
            project_id=projects.get(annotator),
            label_config=label_config,
            storage_paths=storage,
        )
        projects[annotator] = int(proj["id"])
    with workspace.catalog() as cat:
        cat.set_kv(projects_key(stage), projects)
    report.projects = {a: projects[a] for a in needed}
    existing = {a: _existing_tasks(client, projects[a], tag) for a in needed}
    model_versions: dict[str, set[str]] = defaultdict(set)

    batch = max(1, acfg.push_batch)
    for start in range(0, len(eligible), batch):
        chunk = eligible[start : start + batch]
        per_project: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        recovered: list[tuple[int, str, int]] = []
        with workspace.catalog() as cat:
            for iid in chunk:
                row = rows[iid]
                try:
                    h, w = check_image_size(root, row)
                    data = {
                        "image": image_url(
                            (url_prefix if not lcfg.image_base_url else "") + image_relpath(row),
                            lcfg.image_base_url,
                        ),
                        "image_id": iid,
                        "height": h,
                        "width": w,
                        "stage": stage,
                        "workspace": tag,
                    }
                    predictions = []
                    if stage == 1:
                        pred = load_prediction(root, cat, iid, acfg.model_version)
                        if pred is not None:
                            mv, pdata = pred
                            results, score = prediction_results(
                                pdata, iid, h, w, where=f"image {iid} prediction {mv}"
                            )
                            predictions.append(
                                {"model_version": mv, "score": score, "result": results}
                            )
                    else:
                        ann = load_annotation(root, 1, approved[iid], iid)
                        if ann is None:
                            raise DataError(
                                f"image {iid}: approved stage-1 file of {approved[iid]} is missing"
                            )
                        if (ann.height, ann.width) != (h, w):
                            raise DataError(
                                f"image {iid}: stage-1 masks are {ann.height}x"
                                f"{ann.width}, image is {h}x{w}"
                            )
                        predictions.append(
                            {
                                "model_version": "stage1",
                                "score": 1.0,
                                "result": annotation_to_results(ann),
                            }
                        )
                except DataError as exc:
                    log.warning("skipping image %s: %s", iid, exc)
                    report.errors.append({"image_id": iid, "error": str(exc)})
                    continue
                group = assignment[iid]
                if len(group) > 1:
                    report.overlap_images += 1
                report.images += 1
                for annotator in group:
                    if iid in existing[annotator]:
                        recovered.append((iid, annotator, existing[annotator][iid]))
                        continue
                    task_data = {**data, "annotator": annotator, "overlap": len(group) > 1}
                    per_project[annotator].append(
                        (iid, {"data": task_data, "predictions": predictions})
                    )
                    for p in predictions:
                        model_versions[annotator].add(p["model_version"])
        for annotator, items in per_project.items():
            ids = client.import_tasks(projects[annotator], [t for _, t in items])
            with workspace.catalog() as cat, cat.transaction():
                for (iid, _), tid in zip(items, ids):
                    cat.set_annotation(
                        iid,
                        stage,
                        annotator,
                        status="pushed",
                        ls_project_id=projects[annotator],
                        ls_task_id=tid,
                    )
            report.tasks += len(ids)
        if recovered:
            with workspace.catalog() as cat, cat.transaction():
                for iid, annotator, tid in recovered:
                    cat.set_annotation(
                        iid,
                        stage,
                        annotator,
                        status="pushed",
                        ls_project_id=projects[annotator],
                        ls_task_id=tid,
                    )
            report.recovered += len(recovered)
        if progress is not None:
            progress(min(start + batch, len(eligible)), len(eligible))
    # annotators see predictions of the project's selected model version
    for annotator, versions in model_versions.items():
        if versions:
            try:
                client.update_project(projects[annotator], model_version=sorted(versions)[-1])
            except Exception as exc:  # a display setting: never fail the push for it
                log.warning("could not select model version for %s: %s", annotator, exc)
    log.info(
        "stage %s: %d images, %d tasks, %d overlap images, %d errors",
        stage,
        report.images,
        report.tasks,
        report.overlap_images,
        len(report.errors),
    )
    return report


__all__ = [
    "PushReport",
    "assign_images",
    "assignment_key",
    "check_image_size",
    "ensure_project",
    "image_url",
    "load_prediction",
    "prediction_results",
    "project_title",
    "workspace_tag",
    "projects_key",
    "push",
]
