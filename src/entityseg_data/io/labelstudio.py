"""Label Studio JSON exports read as the toolkit's annotations (core data I/O).

The results of one annotation are grouped by region ``id``; a region's geometry is a brush
result (``value.rle``, decoded exactly with :mod:`entityseg_data.masks.brush`) or a polygon
(``value.points`` in percent, rasterised: a pixel is inside when its centre is inside the
polygon); its stage-2 name comes from the per-region TextArea (``value.text``) and flag from the
per-region Choices / Taxonomy (``value.choices``, ``value.taxonomy``) with the same ``id``.
Several geometry results with one id are merged (union). Masks become compressed COCO RLEs in
:class:`~entityseg_data.masks.store.ImageAnnotation` records.

Used by the annotation stage's Label Studio adapter (pull) and by evaluation's consistency
(Label Studio exports as annotator sets); writing Label Studio results stays in
``annotation.labelstudio.format``. Core: imports no stage.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.masks import runs as R
from entityseg_data.masks.brush import brush_pixel_runs, rles_of_brush_runs
from entityseg_data.masks.store import Entity, ImageAnnotation

log = logging.getLogger(__name__)

GEOMETRY_TYPES = ("brushlabels", "brush", "polygonlabels", "polygon")


def polygon_mask(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """(H, W) uint8 mask of a polygon given in percent coordinates (0-100) of the image.

    A pixel (row i, column j) is inside when its centre (j + 0.5, i + 0.5) in pixel units is
    inside the polygon (scikit-image's even-odd scan conversion of the centres)."""
    from skimage.draw import polygon as draw_polygon

    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise DataError(f"a polygon needs at least 3 (x, y) points, got shape {pts.shape}")
    cols = pts[:, 0] / 100.0 * width - 0.5
    rows = pts[:, 1] / 100.0 * height - 0.5
    rr, cc = draw_polygon(rows, cols, shape=(height, width))
    mask = np.zeros((height, width), np.uint8)
    mask[rr, cc] = 1
    return mask


@dataclass
class Region:
    """Everything one annotation says about one region id; geometry as row-major pixel runs."""

    id: str
    runs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    name: str | None = None
    flag: str | None = None
    score: float | None = None
    kinds: list[str] = field(default_factory=list)
    label: str | None = None

    def union_runs(self) -> tuple[np.ndarray, np.ndarray]:
        """All geometry results of the region merged (sorted, disjoint runs)."""
        if len(self.runs) == 1:
            return self.runs[0]
        r = R.union([R.Runs(s, s + n) for s, n in self.runs])
        return r.starts, r.lengths

    def mask(self, height: int, width: int) -> np.ndarray:
        """(H, W) uint8 mask of the region."""
        starts, lengths = self.union_runs()
        return R.mask_of_runs(R.Runs(starts, starts + lengths), height * width).reshape(
            height, width
        )


def _mask_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = R.runs_of_mask(mask)
    return r.starts, r.lengths


def parse_results(
    results: Iterable[Mapping[str, Any]], height: int, width: int, where: str = ""
) -> tuple[list[Region], list[dict[str, Any]]]:
    """Group one annotation's results by region id.

    Returns (regions in first-appearance order, findings). Findings are dicts with ``check``
    ("size_mismatch", "rotation", "bad_result") and a ``detail``; a region whose geometry is
    unusable is kept without masks (QA reports it)."""
    regions: dict[str, Region] = {}
    findings: list[dict[str, Any]] = []
    for k, res in enumerate(results):
        rid = str(res.get("id") or f"_{k}")
        rtype = str(res.get("type", "")).lower()
        value = res.get("value") or {}
        reg = regions.setdefault(rid, Region(id=rid))
        if res.get("score") is not None and reg.score is None:
            reg.score = float(res["score"])
        if rtype in GEOMETRY_TYPES:
            ow, oh = res.get("original_width"), res.get("original_height")
            if ow is not None and oh is not None and (int(oh), int(ow)) != (height, width):
                findings.append(
                    {
                        "check": "size_mismatch",
                        "region": rid,
                        "detail": f"result is {oh}x{ow}, image is {height}x{width}",
                    }
                )
                continue
            if float(res.get("image_rotation") or 0) != 0:
                findings.append(
                    {
                        "check": "rotation",
                        "region": rid,
                        "detail": f"image_rotation {res.get('image_rotation')} is not supported",
                    }
                )
                continue
            shown = value.get("brushlabels") or value.get("polygonlabels") or value.get("labels")
            if shown and reg.label is None:
                reg.label = str(shown[0])
            try:
                if "rle" in value:
                    reg.runs.append(brush_pixel_runs(value["rle"], height, width))
                    reg.kinds.append("brush")
                elif "points" in value:
                    if value.get("closed") is False:
                        raise DataError("open polygon")
                    reg.runs.append(_mask_runs(polygon_mask(value["points"], height, width)))
                    reg.kinds.append("polygon")
                else:
                    raise DataError(f"no rle/points in a {rtype} result")
            except DataError as exc:
                findings.append({"check": "bad_result", "region": rid, "detail": str(exc)})
        elif rtype == "textarea":
            texts = [str(t).strip() for t in value.get("text", []) if str(t).strip()]
            if texts:
                reg.name = texts[-1]
        elif rtype == "taxonomy":
            paths = value.get("taxonomy") or []
            if paths and paths[0]:
                reg.flag = str(paths[0][-1])
        elif rtype == "choices":
            choices = value.get("choices") or []
            if choices:
                reg.flag = str(choices[0])
        else:
            log.debug("%s: ignoring result of type %r", where, rtype)
    return list(regions.values()), findings


def regions_to_entities(
    regions: Sequence[Region], height: int, width: int, origin: str = "annotation"
) -> list[Entity]:
    """Entities (COCO RLE) of the regions that have geometry; name = text, else the flag.

    Disjoint regions go through one label map (fast); overlapping ones are converted one by one
    so that QA sees the masks exactly as drawn."""
    with_geo = [r for r in regions if r.runs]
    runs = [R.Runs(s, s + n) for s, n in (r.union_runs() for r in with_geo)]
    rles = rles_of_brush_runs(runs, height, width)
    return [
        Entity(id=r.id, rle=seg, name=r.name or r.flag, score=r.score, origin=origin)
        for r, seg in zip(with_geo, rles)
    ]


def task_image(task: Mapping[str, Any]) -> tuple[int, int | None, int | None]:
    """(image_id, height, width) from a task's data (our push writes all three)."""
    data = task.get("data") or {}
    image_id = data.get("image_id", task.get("id"))
    if image_id is None:
        raise DataError("a Label Studio task without id or data.image_id")
    h, w = data.get("height"), data.get("width")
    return int(image_id), (int(h) if h else None), (int(w) if w else None)


def _size_from_results(results: Sequence[Mapping[str, Any]]) -> tuple[int | None, int | None]:
    for r in results:
        if r.get("original_height") and r.get("original_width"):
            return int(r["original_height"]), int(r["original_width"])
    return None, None


def annotator_name(completed_by: Any, users: Mapping[int, str] | None = None) -> str:
    """A file-safe annotator name: the local part of the user's e-mail (or ``user<id>``)."""
    email = None
    if isinstance(completed_by, Mapping):
        email = completed_by.get("email")
        uid = completed_by.get("id")
    else:
        uid = completed_by
    if email is None and users is not None and uid is not None:
        email = users.get(int(uid))
    if email:
        name = str(email).split("@", 1)[0]
    else:
        name = f"user{uid}"
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).lstrip(".")
    return name or "unknown"


def annotation_from_ls(
    ann: Mapping[str, Any],
    task: Mapping[str, Any],
    *,
    stage: int,
    annotator: str,
    height: int | None = None,
    width: int | None = None,
) -> tuple[ImageAnnotation, list[Region], list[dict[str, Any]]]:
    """One Label Studio annotation as an :class:`ImageAnnotation` (+ its regions and findings)."""
    image_id, th, tw = task_image(task)
    results = ann.get("result") or []
    rh, rw = _size_from_results(results)
    h = height or th or rh
    w = width or tw or rw
    if not h or not w:
        raise DataError(f"task {task.get('id')}: image size unknown (no data.height/width)")
    where = f"task {task.get('id')} annotation {ann.get('id')}"
    regions, findings = parse_results(results, int(h), int(w), where=where)
    entities = regions_to_entities(regions, int(h), int(w))
    meta = {
        "ls_task_id": task.get("id"),
        "ls_annotation_id": ann.get("id"),
        "ls_project_id": task.get("project") or ann.get("project"),
        "completed_by": ann.get("completed_by")
        if not isinstance(ann.get("completed_by"), Mapping)
        else ann["completed_by"].get("id"),
        "updated_at": ann.get("updated_at"),
        "lead_time": ann.get("lead_time"),
        "flags": {r.id: r.flag for r in regions if r.flag},
    }
    out = ImageAnnotation(
        image_id=image_id,
        height=int(h),
        width=int(w),
        stage=stage,
        annotator=annotator,
        entities=tuple(entities),
        meta=meta,
    )
    return out, regions, findings


def latest_annotations(
    task: Mapping[str, Any], users: Mapping[int, str] | None = None
) -> dict[str, Mapping[str, Any]]:
    """annotator -> their newest non-cancelled annotation of the task."""
    best: dict[str, Mapping[str, Any]] = {}
    for ann in task.get("annotations") or []:
        if ann.get("was_cancelled"):
            continue
        name = annotator_name(ann.get("completed_by"), users)
        key = (str(ann.get("updated_at") or ""), int(ann.get("id") or 0))
        cur = best.get(name)
        if cur is None or key > (str(cur.get("updated_at") or ""), int(cur.get("id") or 0)):
            best[name] = ann
    return best


def _load_tasks(data_or_path: Any) -> list[dict[str, Any]]:
    if isinstance(data_or_path, (str, Path)):
        path = Path(data_or_path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read the Label Studio export: {exc}") from None
    else:
        data = data_or_path
    if isinstance(data, Mapping):
        data = data.get("tasks", [data])
    if not isinstance(data, list):
        raise DataError("a Label Studio JSON export is a list of tasks")
    return data


def ls_export_to_annotations(
    data_or_path: Any, stage: int = 1, users: Mapping[int, str] | None = None
) -> dict[str, list[ImageAnnotation]]:
    """Annotations of a Label Studio JSON export (or tasks API list), per annotator.

    Args:
        data_or_path: the export (list of tasks) or the path of its JSON file.
        stage: 1 (masks) or 2 (masks + names) for the returned annotations.
        users: user id -> e-mail (annotator names are the e-mail local parts); without it an
            annotator is named by ``completed_by.email`` when the export embeds it, else
            ``user<id>``.

    Returns:
        ``{annotator: [ImageAnnotation, ...]}``, one per (task, annotator) (the newest annotation
        of that annotator), image ids from the task data (``image_id``; the task id otherwise).
    """
    out: dict[str, list[ImageAnnotation]] = defaultdict(list)
    for task in _load_tasks(data_or_path):
        for name, ann in latest_annotations(task, users).items():
            image_ann, _, findings = annotation_from_ls(ann, task, stage=stage, annotator=name)
            for f in findings:
                log.warning("task %s (%s): %s: %s", task.get("id"), name, f["check"], f["detail"])
            out[name].append(image_ann)
    return dict(out)


__all__ = [
    "GEOMETRY_TYPES",
    "Region",
    "annotation_from_ls",
    "annotator_name",
    "latest_annotations",
    "ls_export_to_annotations",
    "parse_results",
    "polygon_mask",
    "regions_to_entities",
    "task_image",
]
