"""Streaming statistics over COCO/EntitySeg annotations (a file, a dict, or a workspace).

The annotations are read once, by the one strict reader
(:func:`entityseg_data.io.coco.read_coco`, lenient: images with a bad annotation are skipped
and listed), into typed records: :func:`compute_stats` walks the :class:`CocoImage` records one
at a time with their :class:`CocoAnnotation` s (each segmentation the reader's checked
compressed RLE, shared, never copied); for each it builds one label map from the RLE run
lengths, measures every entity (:mod:`entityseg_data.stats.measures`) and keeps only small
per-image and per-entity numbers in :class:`DatasetStats`. Memory is bounded by the records
(the file's RLE strings) plus one label map (24 MB at 12 MP) per worker; images are never
decoded (sizes come from the JSON, or from the image header when the JSON lacks them).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.config.stats import StatsConfig
from entityseg_data.errors import DataError
from entityseg_data.io.coco import (
    MALFORMED_ANNOTATION,
    MALFORMED_SEGMENTATION,
    RLE_SIZE_MISMATCH,
    CocoAnnotation,
    CocoCategory,
    CocoDataset,
    CocoImage,
    as_dataset,
    group_by_image,
    read_coco,
    workspace_coco,
)
from entityseg_data.io.files import json_source
from entityseg_data.stats.measures import DEFAULT_SHAPE_DEFINITION, check_definition, rle_measures

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)

ENTITY_FIELDS = ("area", "convexity", "simplicity", "perimeter", "convex_area")


@dataclass
class DatasetStats:
    """Everything measured on one dataset.

    ``images``: one dict per image ``{image_id, file_name, height, width, megapixels, source,
    n_entities, valid_area, mean_convexity, mean_simplicity}`` (valid_area = covered fraction).
    ``entities``: per-entity arrays (``image_id``, ``area`` (px), ``convexity``, ``simplicity``,
    ``perimeter`` (px), ``convex_area`` (px)), all of the same length.
    ``names``: per-entity open-vocabulary name (or None) in the same order.
    ``kinds``: per-entity ``thing``/``stuff`` the annotations state (their ``kind``, else their
    category's ``isthing``; None when unknown), in the same order.
    ``categories``: the file's category records by id.
    ``errors``: images skipped with the reason.
    ``shape_measures``: the definition set of convexity / simplicity
    (:data:`~entityseg_data.stats.measures.SHAPE_DEFINITIONS`).
    """

    name: str
    images: list[dict[str, Any]] = field(default_factory=list)
    entities: dict[str, np.ndarray] = field(default_factory=dict)
    names: list[str | None] = field(default_factory=list)
    kinds: list[str | None] = field(default_factory=list)
    categories: dict[int, CocoCategory] = field(default_factory=dict)
    category_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    errors: list[dict[str, Any]] = field(default_factory=list)
    shape_measures: str = DEFAULT_SHAPE_DEFINITION

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_entities(self) -> int:
        return int(self.entities.get("area", np.zeros(0)).size)

    def to_json(self) -> dict[str, Any]:
        from entityseg_data.stats.table import table_row

        return {"name": self.name, "table2": table_row(self), "errors": self.errors}


_IMAGE_LEVEL = (MALFORMED_ANNOTATION, MALFORMED_SEGMENTATION, RLE_SIZE_MISMATCH)


def read_annotations(
    source: str | Path | Mapping[str, Any] | CocoDataset,
    *,
    images_dir: str | Path | None = None,
) -> tuple[CocoDataset, list[dict[str, Any]]]:
    """``(dataset, skipped)``: the validated records of a JSON path or dict (read by
    :func:`entityseg_data.io.coco.read_coco`, lenient) without the images that have a bad
    annotation (corrupt or mis-sized RLE, malformed fields), and those images as ``{image_id,
    file_name, error}``. Problems of the file's structure (duplicate or malformed image
    records, annotations of unknown images, unknown categories) raise DataError: the numbers
    would be wrong. A :class:`CocoDataset` read already is taken as it is (its ``problems``
    judged the same way)."""
    ds = as_dataset(
        source,
        strict=False,
        what="COCO annotations",
        image_root=images_dir,
        require_annotations=True,
    )
    bad: dict[int, str] = {}
    for p in ds.problems:
        if p.issue in _IMAGE_LEVEL and p.image_id is not None:
            bad.setdefault(int(p.image_id), str(p))
        else:
            raise DataError(str(p))
    names = {im.id: im.file_name for im in ds.images}
    skipped = [
        {"image_id": iid, "file_name": names.get(iid), "error": err} for iid, err in bad.items()
    ]
    return ds.without_images(bad), skipped


def load_coco(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The parsed COCO dict of a JSON path or dict, after the strict :func:`read_coco` found
    no problem (one DataError naming the file and record otherwise). Kept for callers that
    index the dict (the command line until it reads through the API); :func:`compute_stats`
    takes the records of :func:`read_coco` directly."""
    data, name = json_source(source, "COCO annotations")
    read_coco(data, what="COCO annotations", require_annotations=True, name=name)
    return dict(data)


def measure_image(
    img: CocoImage,
    anns: Sequence[CocoAnnotation],
    *,
    max_side: int = 0,
    shape_measures: str = DEFAULT_SHAPE_DEFINITION,
) -> dict[str, Any]:
    """Measures of one image: ``{"image": row, "entities": {field: array}, "names": [...],
    "kinds": [...], "category_ids": array}``. Crowd annotations are ignored.
    ``shape_measures``: the definition set of convexity / simplicity."""
    h, w = img.height, img.width
    anns = [a for a in anns if not a.iscrowd]
    rles = [a.segmentation for a in anns]  # compressed and checked by the reader
    res = rle_measures(rles, h, w, max_side=max_side, definition=shape_measures)
    n = len(rles)
    with np.errstate(invalid="ignore"):
        mean_cvx = float(np.nanmean(res["convexity"])) if n else float("nan")
        mean_smp = float(np.nanmean(res["simplicity"])) if n else float("nan")
    row = {
        "image_id": img.id,
        "file_name": img.file_name,
        "height": h,
        "width": w,
        "megapixels": h * w / 1e6,
        "source": img.source,
        "n_entities": n,
        "valid_area": res["covered"] / float(h * w),
        "mean_convexity": mean_cvx,
        "mean_simplicity": mean_smp,
    }
    ents = {k: np.asarray(res[k]) for k in ENTITY_FIELDS}
    ents["image_id"] = np.full(n, img.id, np.int64)
    return {
        "image": row,
        "entities": ents,
        "names": [a.name for a in anns],
        "kinds": [a.kind for a in anns],
        "category_ids": np.asarray(
            [a.category_id if a.category_id is not None else 0 for a in anns], np.int64
        ),
    }


def _job(args: tuple[CocoImage, list[CocoAnnotation], int, str]) -> dict[str, Any]:
    img, anns, max_side, shape_measures = args
    try:
        return measure_image(img, anns, max_side=max_side, shape_measures=shape_measures)
    except (DataError, KeyError, TypeError, ValueError) as exc:
        return {"error": {"image_id": img.id, "file_name": img.file_name, "error": str(exc)}}


def compute_stats(
    coco: str | Path | Mapping[str, Any] | CocoDataset,
    *,
    name: str = "dataset",
    images_dir: str | Path | None = None,
    config: StatsConfig | None = None,
    progress: Callable[[int], object] | None = None,
    limit: int | None = None,
) -> DatasetStats:
    """Statistics of a COCO/EntitySeg annotation file or dict.

    Args:
        coco: the records of :func:`~entityseg_data.io.coco.read_coco` (lenient or strict),
            or a COCO dict or the path of a COCO JSON (RLE or polygon segmentations), read here.
        name: dataset name used in tables and plots.
        images_dir: folder the ``file_name`` entries are relative to; only read when the JSON
            lacks an image's height/width.
        config: ``max_side`` (measure shapes on a downscaled label map, 0 = full resolution),
            ``workers`` (processes; 0/1 = in this process) and ``shape_measures`` (the definition
            set of convexity / simplicity, named in the result).
        progress: called with 1 after each image (e.g. ``tqdm.update``).
        limit: only the first ``limit`` images (quick looks).

    Images that fail (bad RLE, size mismatch) are skipped and listed in ``errors``.
    """
    cfg = config or StatsConfig()
    shape_measures = check_definition(cfg.shape_measures)
    data, skipped = read_annotations(coco, images_dir=images_dir)
    by_image = group_by_image(data.annotations)
    imgs = list(data.images)
    if limit is not None:
        imgs = imgs[: int(limit)]
    out = DatasetStats(name=name, shape_measures=shape_measures)
    for err in skipped:
        out.errors.append(err)
        log.warning("skipped image %s: %s", err["image_id"], err["error"])
    out.categories = data.category_by_id()
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    cat_parts: list[np.ndarray] = []

    jobs: Iterator[tuple[CocoImage, list[CocoAnnotation], int, str]] = (
        (img, by_image.get(img.id, []), int(cfg.max_side), shape_measures) for img in imgs
    )
    if cfg.workers and cfg.workers > 1:
        import multiprocessing as mp
        import os

        from entityseg_data.procs import die_with_parent

        pool = mp.get_context("spawn").Pool(
            int(cfg.workers), initializer=die_with_parent, initargs=(os.getpid(),)
        )
        results: Iterator[dict[str, Any]] = pool.imap(_job, jobs, chunksize=1)
    else:
        pool = None
        results = map(_job, jobs)
    try:
        for res in results:
            if "error" in res:
                out.errors.append(res["error"])
                log.warning("skipped image %s: %s", res["error"]["image_id"], res["error"]["error"])
            else:
                out.images.append(res["image"])
                for k, v in res["entities"].items():
                    parts[k].append(v)
                out.names.extend(res["names"])
                out.kinds.extend(res["kinds"])
                cat_parts.append(res["category_ids"])
            if progress is not None:
                progress(1)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    for k in (*ENTITY_FIELDS, "image_id"):
        dtype = np.int64 if k in ("area", "image_id") else np.float64
        out.entities[k] = np.concatenate(parts[k]).astype(dtype) if parts[k] else np.zeros(0, dtype)
    out.category_ids = np.concatenate(cat_parts) if cat_parts else np.zeros(0, np.int64)
    log.info(
        "%s: %d images, %d entities, %d skipped",
        name,
        out.n_images,
        out.n_entities,
        len(out.errors),
    )
    return out


def named_workspace_coco(
    workspace: Workspace, *, stage: int = 1, statuses: tuple[str, ...] | None = ("approved",)
) -> dict[str, Any]:
    """:func:`entityseg_data.io.coco.workspace_coco` (kept for callers of this name)."""
    return workspace_coco(workspace, stage=stage, statuses=statuses)


def workspace_stats(
    workspace: Workspace,
    *,
    name: str | None = None,
    stage: int = 1,
    statuses: tuple[str, ...] | None = ("approved",),
    config: StatsConfig | None = None,
    progress: Callable[[int], object] | None = None,
) -> DatasetStats:
    """:func:`compute_stats` of a workspace's approved annotations, with stage-2 names
    (:func:`named_workspace_coco`); image files are relative to the workspace root."""
    return compute_stats(
        named_workspace_coco(workspace, stage=stage, statuses=statuses),
        name=name or Path(workspace.root).name,
        images_dir=workspace.root,
        config=config,
        progress=progress,
    )
