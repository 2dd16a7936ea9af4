"""EntitySeg-format COCO JSON export (hr + lr, train/val splits).

Output folder (mirrors the official ``datasets/entityseg`` layout)::

    out/images/<file_name>                 hr images (hard links when possible, else copies)
    out/images_lr/<file_name>              the lr copy (export/lr.py)
    out/annotations/entityseg_{split}.json      and entityseg_{split}_lr.json
    out/export.json                        what was written: counts, splits, settings

JSON fields (REFERENCE 1.2): ``images[]`` ``{id, file_name, height, width, img_source, url_flag,
url_dataset, url_image, license, attribution, split}``; ``annotations[]`` ``{id, image_id, bbox,
area, segmentation (compressed RLE), category_id, iscrowd, category_id_ori (the open-vocabulary
name, "unknown" when unnamed), attribute, name}``; ``categories[]``: class-agnostic
``[{"id": 1, "name": "entity"}]`` by default (the entity task ignores classes), or one category
per name (``class_agnostic=False``, ids by descending frequency); ``vocabulary[]``: every name
with its entity count and thing/stuff flag.

Between the modules of the export stage only typed records travel
(:class:`~entityseg_data.io.coco.CocoDataset` of ``CocoImage`` / ``CocoAnnotation`` /
``CocoCategory``): :func:`release_coco` reads the source once (strict), :func:`to_entityseg`
makes the release records (segmentations shared with the source records), ``splits.split_coco``
selects each split, ``lr.make_lr`` makes the lr records, and :func:`release_json` builds the
dict of a release file from them just before it is written.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from entityseg_data.config.export import ExportConfig
from entityseg_data.errors import DataError
from entityseg_data.export.lr import make_lr
from entityseg_data.export.splits import assign_splits, split_coco
from entityseg_data.io import atomic_copy, atomic_write_json, check_regular_file
from entityseg_data.io.coco import (
    CocoAnnotation,
    CocoCategory,
    CocoDataset,
    CocoImage,
    as_dataset,
    read_coco,
    workspace_coco,
)
from entityseg_data.io.images import image_size
from entityseg_data.masks import rle as rle_utils

log = logging.getLogger(__name__)


def entity_name(ann: CocoAnnotation, categories: Mapping[int, str] | None = None) -> str:
    """The open-vocabulary name of an annotation (its ``name``, else ``category_id_ori``, else
    the category name when it is not the class-agnostic ``entity``, else ``unknown``)."""
    name = ann.name or ann.extra.get("category_id_ori")
    if not name and categories is not None:
        cat = categories.get(ann.category_id if ann.category_id is not None else -1)
        if cat and cat not in ("entity", "thing"):
            name = cat
    return str(name) if name else "unknown"


def thing_flags(
    coco: CocoDataset | Mapping[str, Any], is_thing: Callable[[str], bool | None] | None = None
) -> dict[str, bool | None]:
    """Thing (True) / stuff (False) / unknown (None) per entity name (:func:`entity_name`):
    ``is_thing(name)`` (e.g. the vocabulary), else the entity's own ``kind`` (carried in from COCO
    panoptic or ADE20K, as in a workspace's COCO view), else its category's ``isthing``; the
    first annotation of a name that gives a flag decides (the order of the stats class table).
    ``coco``: the records (a COCO dict is read by :func:`~entityseg_data.io.coco.read_coco`)."""
    ds = as_dataset(coco, what="COCO annotations")
    cat_names = {c.id: c.name for c in ds.categories}
    cat_flag = {c.id: c.isthing for c in ds.categories if c.isthing is not None}
    flags: dict[str, bool | None] = {}
    for a in ds.annotations:
        name = entity_name(a, cat_names)
        if flags.get(name) is not None:
            continue
        flag = is_thing(name) if is_thing is not None else None
        if flag is None and a.kind in ("thing", "stuff"):
            flag = a.kind == "thing"
        if flag is None:
            flag = cat_flag.get(a.category_id if a.category_id is not None else -1)
        flags[name] = flag
    return flags


def to_entityseg(
    coco: CocoDataset | Mapping[str, Any],
    *,
    class_agnostic: bool = True,
    is_thing: Callable[[str], bool | None] | None = None,
    file_name_of: Callable[[CocoImage], str] | None = None,
    splits: Mapping[int, str] | None = None,
) -> CocoDataset:
    """The EntitySeg-format records of any COCO instance records (a COCO dict is read by
    :func:`~entityseg_data.io.coco.read_coco`; RLE or polygons; crowd kept with ``iscrowd``).
    Segmentations are the reader's compressed RLEs (shared, not copied); area and bbox are
    recomputed. Images carry the EntitySeg fields (``img_source``, ``url_flag``, ...) and
    annotations ``category_id_ori`` / ``attribute`` in ``extra``; the ``vocabulary`` is in the
    dataset's ``extra``. :func:`release_json` lays the records out as the release file."""
    ds = as_dataset(coco, what="COCO annotations")
    cat_names = {c.id: c.name for c in ds.categories}
    flags = thing_flags(ds, is_thing)
    names: Counter[str] = Counter()
    anns: list[CocoAnnotation] = []
    for a in ds.annotations:
        seg = a.segmentation
        name = entity_name(a, cat_names)
        names[name] += 1
        x, y, w, h = rle_utils.bbox(seg)
        anns.append(
            CocoAnnotation(
                image_id=a.image_id,
                segmentation=seg,
                id=len(anns) + 1,
                category_id=1,
                iscrowd=a.iscrowd,
                area=rle_utils.area(seg),
                bbox=(x, y, w, h),
                name=name,
                extra={"category_id_ori": name, "attribute": a.extra.get("attribute", [])},
            )
        )
    order = sorted(names, key=lambda n: (-names[n], n))
    if class_agnostic:
        categories = [CocoCategory(id=1, name="entity", supercategory="entity", isthing=True)]
    else:
        ids = {n: i + 1 for i, n in enumerate(order)}
        anns = [replace(a, category_id=ids[str(a.name)]) for a in anns]
        categories = [
            CocoCategory(
                id=ids[n],
                name=n,
                supercategory="entity",
                isthing=bool(flags[n]) if flags.get(n) is not None else True,
            )
            for n in order
        ]
    images = []
    for im in ds.images:
        url = im.extra.get("url_image") or im.extra.get("url") or ""
        images.append(
            CocoImage(
                id=im.id,
                file_name=file_name_of(im) if file_name_of else im.file_name,
                height=im.height,
                width=im.width,
                license=im.license,
                url=url or None,
                extra={
                    "img_source": im.source or "",
                    "url_flag": int(bool(url)),
                    "url_dataset": im.extra.get("url_dataset") or "",
                    "url_image": url,
                    "license": im.extra.get("license"),
                    "attribution": im.extra.get("attribution"),
                    "split": (splits or {}).get(im.id, im.extra.get("split")),
                },
            )
        )
    vocabulary = [{"name": n, "entities": names[n], "isthing": flags.get(n)} for n in order]
    return CocoDataset(
        source=ds.source,
        images=tuple(images),
        annotations=tuple(anns),
        categories=tuple(categories),
        info={"description": "EntitySeg-format export by entityseg_data", "version": "1.0"},
        extra={"vocabulary": vocabulary},
    )


def release_json(release: CocoDataset) -> dict[str, Any]:
    """The JSON of an EntitySeg release file (hr or lr) from its records: the one place the
    release dict is built. Field order as the official v1.0 files: ``info``, ``categories``,
    ``vocabulary``, ``images`` ``{id, file_name, height, width, img_source, url_flag,
    url_dataset, url_image, license, attribution, split}``, ``annotations`` ``{id, image_id,
    bbox, area, segmentation, category_id, iscrowd, category_id_ori, attribute, name}``."""
    return {
        "info": dict(release.info),
        "categories": [c.to_json() for c in release.categories],
        **release.extra,
        "images": [
            {"id": im.id, "file_name": im.file_name, "height": im.height, "width": im.width}
            | dict(im.extra)
            for im in release.images
        ],
        "annotations": [
            {
                "id": a.id,
                "image_id": a.image_id,
                "bbox": list(a.bbox) if a.bbox is not None else None,
                "area": a.area,
                "segmentation": a.segmentation,
                "category_id": a.category_id,
                "iscrowd": int(a.iscrowd),
            }
            | dict(a.extra)
            | {"name": a.name}
            for a in release.annotations
        ],
    }


def _place(src: Path, dst: Path, link: bool) -> bool:
    """Put ``src`` at ``dst`` (hard link, else an atomic copy with the umask's mode); False
    when ``dst`` was there already."""
    if dst.exists():
        return False
    check_regular_file(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # a hard link shares the source's mode: an image a pre-umask version wrote 0600 would stay
    # unreadable by others in the release (probe 8.5), so such files are copied instead
    if link and os.stat(src).st_mode & 0o044:
        try:
            os.link(src, dst)
            return True
        except OSError:
            pass
    atomic_copy(src, dst)
    return True


def is_workspace(source: Any) -> bool:
    """Whether an export source is a workspace (else a COCO dict, JSON path or records)."""
    return hasattr(source, "catalog") and hasattr(source, "root")


def release_records(source: Any, *, what: str = "release") -> tuple[CocoDataset, Any]:
    """``(records, workspace_or_None)`` of an export source, read strictly by
    :func:`~entityseg_data.io.coco.read_coco` (a :class:`CocoDataset` is taken as it is): a
    workspace (its approved stage-1 masks with stage-2 names), a COCO dict or a JSON path."""
    if is_workspace(source):
        return read_coco(workspace_coco(source), what=what, name=f"workspace {source.root}"), source
    return as_dataset(source, what=what, require_annotations=True), None


def release_coco(
    source: Any, images_dir: str | Path | None = None, *, what: str = "export"
) -> tuple[CocoDataset, Path, Any]:
    """``(records, image_root, workspace_or_None)`` of an export source, validated by the
    strict :func:`~entityseg_data.io.coco.read_coco` BEFORE anything is written: a corrupt or
    mis-sized RLE, a repeated image or annotation id, an annotation of an unknown image or a
    malformed size stops the export with one error naming the file and record (probes 5.15,
    5.16). ``source``: a workspace (its approved stage-1 masks with stage-2 names), COCO
    records, a COCO dict or a JSON path (``images_dir`` required)."""
    if is_workspace(source):
        ds, ws = release_records(source)
        return ds, Path(ws.root), ws
    if images_dir is None:
        raise DataError(f"{what}: images_dir is required for a COCO file")
    ds, _ = release_records(source)
    return ds, Path(images_dir), None


def check_image_files(coco: CocoDataset, root: Path) -> list[dict[str, Any]]:
    """Images whose file is missing, unreadable or not the records' (upright) size, as
    ``{image_id, error}`` (header reads only)."""
    bad = []
    for im in coco.images:
        path = root / im.file_name
        try:
            size = image_size(path)
            if (size.height, size.width) != (im.height, im.width):
                raise DataError(
                    f"{path}: image is {size.height}x{size.width} (upright), the annotations "
                    f"say {im.height}x{im.width}"
                )
        except DataError as exc:
            bad.append({"image_id": im.id, "error": str(exc)})
            log.warning("export: skipped image %s: %s", im.id, exc)
    return bad


@dataclass
class ExportResult:
    """What :func:`export_entityseg` wrote."""

    out_dir: Path
    annotation_files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    splits: dict[int, str] = field(default_factory=dict)


def export_entityseg(
    source: Any,
    out_dir: str | Path,
    *,
    images_dir: str | Path | None = None,
    config: ExportConfig | None = None,
    seed: int = 0,
    split: bool = True,
    lr: bool = True,
    class_agnostic: bool = True,
    link: bool = True,
    is_thing: Callable[[str], bool | None] | None = None,
    progress: Callable[[int], object] | None = None,
) -> ExportResult:
    """Export a workspace (its approved stage-1 masks with stage-2 names) or a COCO dict/JSON
    with its image folder to the EntitySeg layout.

    Args:
        source: a :class:`~entityseg_data.workspace.Workspace`, a COCO dict or a JSON path.
        out_dir: output folder (created; existing images are reused, so a re-run resumes).
        images_dir: folder of the COCO ``file_name`` entries (a workspace uses its root).
        config: ``val_fraction``, ``stratify_by_source``, ``lr_short_side``, ``lr_max_side``.
        seed: split seed.
        split: write train/val files (False: one ``entityseg_all`` file).
        lr: also write the lr copy.
        class_agnostic: one ``entity`` category (default) or one category per name.
        link: hard-link hr images instead of copying when the filesystem allows.
    Workspace splits are kept when the catalog has them and newly assigned ones are written back.
    """
    out = Path(out_dir)
    coco, root, ws = release_coco(source, images_dir, what="export_entityseg")
    # a workspace's own `export` section is the default for a workspace export
    cfg = config or (ws.config().export if ws is not None else ExportConfig())
    existing: dict[int, str] = {}
    file_name_of = None
    if ws is not None:
        with ws.catalog() as cat:
            existing = {r.id: r.split for r in cat.images(status=None) if r.split}

        def file_name_of(im: CocoImage) -> str:
            src = str(im.extra.get("img_source") or "images").replace("/", "_")
            return f"{src}/{Path(im.file_name).name}"

    # every check before the first write: the JSON above, the image files here
    skipped = check_image_files(coco, root)
    coco = coco.without_images({m["image_id"] for m in skipped})
    if split:
        splits = assign_splits(
            coco.images,
            val_fraction=cfg.val_fraction,
            seed=seed,
            stratify_by_source=cfg.stratify_by_source,
            existing=existing,
        )
    else:
        splits = {im.id: "all" for im in coco.images}
    es = to_entityseg(
        coco,
        class_agnostic=class_agnostic,
        is_thing=is_thing,
        file_name_of=file_name_of,
        splits=splits if split else None,
    )
    hr_root = out / "images"
    src_names = {im.id: im.file_name for im in coco.images}
    del coco  # the release records share its segmentations
    placed: dict[int, Path] = {}
    for im in es.images:
        dst = hr_root / im.file_name
        try:
            if _place(root / src_names[im.id], dst, link):
                placed[im.id] = dst
        except (DataError, OSError) as exc:
            skipped.append({"image_id": im.id, "error": str(exc)})
            log.warning("export: skipped image %s: %s", im.id, exc)
        if progress is not None:
            progress(1)
    parts = split_coco(es.without_images({m["image_id"] for m in skipped}), splits)
    del es
    lr_parts: dict[str, tuple[CocoDataset, dict[str, Any]]] = {}
    if lr:
        for name, sub in parts.items():
            lr_coco, counts = make_lr(
                sub,
                hr_root,
                out / "images_lr",
                short=cfg.lr_short_side,
                max_side=cfg.lr_max_side,
            )
            lr_parts[name] = (lr_coco, counts)
            lr_skipped: list[dict[str, Any]] = list(counts["skipped"])
            for m in lr_skipped:  # an image the lr copy cannot read leaves hr too
                skipped.append(m)
                if m["image_id"] in placed:
                    placed.pop(m["image_id"]).unlink(missing_ok=True)
            parts[name] = sub.without_images({m["image_id"] for m in lr_skipped})
    bad = {m["image_id"] for m in skipped}
    splits = {i: v for i, v in splits.items() if i not in bad}
    result = ExportResult(out_dir=out, splits=splits)
    result.counts["skipped_images"] = skipped
    for name, sub in parts.items():
        path = out / "annotations" / f"entityseg_{name}.json"
        atomic_write_json(path, release_json(sub))
        result.annotation_files[name] = path
        result.counts[name] = {"images": len(sub.images), "annotations": len(sub.annotations)}
        if lr:
            lr_coco, counts = lr_parts[name]
            lr_path = out / "annotations" / f"entityseg_{name}_lr.json"
            atomic_write_json(lr_path, release_json(lr_coco))
            result.annotation_files[f"{name}_lr"] = lr_path
            result.counts[f"{name}_lr"] = {k: v for k, v in counts.items() if k != "skipped"}
    if ws is not None and split:
        new = {i: v for i, v in splits.items() if existing.get(i) != v}
        if new:
            with ws.catalog() as cat:
                if cat.read_only:  # an archived/shared workspace: the release still gets made
                    log.warning(
                        "%s is read-only: the splits of %d images are in the release but not "
                        "recorded in the catalog",
                        ws.root,
                        len(new),
                    )
                else:
                    cat.set_splits(new)
    atomic_write_json(
        out / "export.json",
        {
            "counts": result.counts,
            "files": {k: str(v.relative_to(out)) for k, v in result.annotation_files.items()},
            "seed": seed,
            "val_fraction": cfg.val_fraction,
            "stratify_by_source": cfg.stratify_by_source,
            "lr": {"short_side": cfg.lr_short_side, "max_side": cfg.lr_max_side} if lr else None,
            "class_agnostic": class_agnostic,
        },
        indent=2,
    )
    log.info("EntitySeg export in %s: %s", out, result.counts)
    return result
