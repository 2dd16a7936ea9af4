"""Converters from COCO panoptic / COCO instances / label-map PNG folders into a workspace.

COCO-Entity protocol: every panoptic segment, thing or stuff, becomes one entity (its category
name becomes the entity's stage-2 name). For each image the converter

1. copies the image bytes into the workspace (content-addressed ``images/ab/<sha256><ext>``,
   byte-exact) and adds a catalog row (source, source_id = the original file name, size,
   licence/url when the JSON has them); an image already in the catalog (same sha256) is reused;
2. writes the masks as a stage-1 annotation file and the names as a stage-2 file, both by the
   annotator ``import`` and marked ``approved`` in the catalog (so statistics and exports see
   them through :func:`~entityseg_data.masks.store.workspace_to_coco`).

Instances may overlap (entities must not): ``convert_coco_instances`` paints larger instances
first so smaller ones stay whole, and drops instances left with no pixel (counted). Bad records
are skipped and reported with the file/record and the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from entityseg_data.errors import DataError
from entityseg_data.io import atomic_write_bytes
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity, ImageAnnotation, annotation_path, save_annotation

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)

ANNOTATOR = "import"
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


@dataclass
class ConvertResult:
    """Counts of one conversion and the records that were skipped (with the reason)."""

    images: int = 0
    entities: int = 0
    dropped_entities: int = 0
    image_ids: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _read_json(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read JSON: {exc}") from None


def add_image_file(
    ws: Workspace,
    path: Path,
    *,
    source: str,
    source_id: str,
    height: int,
    width: int,
    url: str | None = None,
    license: str | None = None,
    attribution: str | None = None,
) -> int:
    """Copy one image into the workspace and add its catalog row (or reuse the existing row with
    the same sha256); returns the image id. Raises DataError when the file is missing,
    unreadable or not ``height`` x ``width``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    sha = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(path) as im:
            w, h = im.size
    except OSError as exc:
        raise DataError(f"{path}: not a readable image: {exc}") from None
    if (h, w) != (int(height), int(width)):
        raise DataError(f"{path}: image is {h}x{w}, the annotations say {height}x{width}")
    ext = Path(path).suffix.lower() or ".jpg"
    rel = f"images/{sha[:2]}/{sha}{ext}"
    with ws.catalog() as cat:
        row = cat.image_by_sha256(sha)
        if row is not None:
            return int(row["id"])
        dst = ws.root / rel
        if not dst.exists():
            atomic_write_bytes(dst, data)
        return cat.add_image(
            sha256=sha,
            source=source,
            source_id=source_id,
            url=url,
            license=license,
            attribution=attribution,
            width=w,
            height=h,
            orig_orientation=1,
            file_path=rel,
            mime=MIME.get(ext),
            bytes=len(data),
            status="accepted",
        )


def write_entities(
    ws: Workspace,
    image_id: int,
    height: int,
    width: int,
    entities: Sequence[tuple[dict[str, Any], str | None]],
    *,
    origin: str,
    annotator: str = ANNOTATOR,
) -> None:
    """Stage-1 masks and stage-2 names of one image, both approved in the catalog."""
    ents = tuple(
        Entity(id=f"e{i + 1}", segmentation=rle, name=None, origin=origin)
        for i, (rle, _) in enumerate(entities)
    )
    named = tuple(
        Entity(id=f"e{i + 1}", segmentation=rle, name=name, origin=origin)
        for i, (rle, name) in enumerate(entities)
    )
    for stage, items in ((1, ents), (2, named)):
        ann = ImageAnnotation(
            image_id=image_id,
            height=height,
            width=width,
            stage=stage,
            annotator=annotator,
            entities=items,
            meta={"origin": origin},
        )
        save_annotation(ws.root, ann)
    with ws.catalog() as cat:
        for stage in (1, 2):
            cat.set_annotation(
                image_id,
                stage,
                annotator,
                status="approved",
                mask_path=os.path.relpath(
                    annotation_path(ws.root, stage, annotator, image_id), ws.root
                ),
                n_entities=len(entities),
            )


def _run(
    items: Iterable[tuple[str, Callable[[], tuple[int, list[tuple[dict[str, Any], str | None]]]]]],
    res: ConvertResult,
    progress: Callable[[int], None] | None,
) -> ConvertResult:
    for where, job in items:
        try:
            image_id, ents = job()
        except DataError as exc:
            res.skipped.append({"record": where, "error": str(exc)})
            log.warning("skipped %s: %s", where, exc)
        else:
            res.images += 1
            res.entities += len(ents)
            res.image_ids.append(image_id)
        if progress is not None:
            progress(1)
    return res


def convert_coco_panoptic(
    workspace: Workspace,
    panoptic_json: str | Path,
    panoptic_dir: str | Path,
    images_dir: str | Path,
    *,
    source: str = "coco_panoptic",
    include_crowd: bool = True,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ConvertResult:
    """COCO panoptic (JSON + PNG folder with ``id = R + 256 G + 256^2 B``) -> workspace entities,
    one per segment (things and stuff; crowd segments too unless ``include_crowd`` is False)."""
    data = _read_json(panoptic_json)
    cats = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
    images = {int(im["id"]): im for im in data.get("images", [])}
    res = ConvertResult()

    def job(pan: dict[str, Any]):
        im = images.get(int(pan["image_id"]))
        if im is None:
            raise DataError(f"image {pan['image_id']} is not in 'images'")
        h, w = int(im["height"]), int(im["width"])
        png = Path(panoptic_dir) / str(pan["file_name"])
        try:
            rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.uint32)
        except OSError as exc:
            raise DataError(f"{png}: cannot read panoptic PNG: {exc}") from None
        if rgb.shape[:2] != (h, w):
            raise DataError(f"{png}: PNG is {rgb.shape[0]}x{rgb.shape[1]}, image is {h}x{w}")
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        segs = [s for s in pan.get("segments_info", []) if include_crowd or not s.get("iscrowd", 0)]
        rles = rle_utils.label_map_to_rles(ids, ids=[int(s["id"]) for s in segs])
        ents = []
        for s in segs:
            r = rles[int(s["id"])]
            if rle_utils.area(r) == 0:
                res.dropped_entities += 1
                continue
            ents.append((r, cats.get(int(s["category_id"]))))
        image_id = add_image_file(
            workspace,
            Path(images_dir) / str(im["file_name"]),
            source=source,
            source_id=str(im["file_name"]),
            height=h,
            width=w,
            url=im.get("coco_url") or im.get("url"),
            license=_license(im, data),
        )
        write_entities(workspace, image_id, h, w, ents, origin=source)
        return image_id, ents

    anns = data.get("annotations", [])[: limit if limit is not None else None]
    return _run(
        ((f"{panoptic_json}: image {a.get('image_id')}", lambda a=a: job(a)) for a in anns),
        res,
        progress,
    )


def _license(im: dict[str, Any], data: dict[str, Any]) -> str | None:
    lic = im.get("license")
    if lic is None:
        return None
    for entry in data.get("licenses", []):
        if entry.get("id") == lic:
            return str(entry.get("name") or entry.get("url") or lic)
    return str(lic)


def convert_coco_instances(
    workspace: Workspace,
    instances_json: str | Path,
    images_dir: str | Path,
    *,
    source: str = "coco",
    include_crowd: bool = False,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ConvertResult:
    """COCO instances (RLE or polygons) -> workspace entities. Overlaps are resolved by painting
    larger instances first (smaller ones win); instances left empty are dropped and counted."""
    data = _read_json(instances_json)
    cats = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in data.get("annotations", []):
        by_image.setdefault(int(a["image_id"]), []).append(a)
    res = ConvertResult()

    def job(im: dict[str, Any]):
        h, w = int(im["height"]), int(im["width"])
        anns = [
            a for a in by_image.get(int(im["id"]), []) if include_crowd or not a.get("iscrowd", 0)
        ]
        try:
            rles = [rle_utils.to_compressed(a["segmentation"], h, w) for a in anns]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad segmentation ({exc!r})") from None
        for a, r in zip(anns, rles):
            rle_utils.check_size(r, h, w, where=f"annotation {a.get('id')}")
        ents: list[tuple[dict[str, Any], str | None]] = []
        if rles:
            if rle_utils.overlap_pixels(rles) == 0:
                final = rles
            else:
                order = sorted(range(len(rles)), key=lambda i: -rle_utils.area(rles[i]))
                lm = rle_utils.rles_to_label_map(
                    [rles[i] for i in order], h, w, ids=[i + 1 for i in order]
                )
                found = rle_utils.label_map_to_rles(lm)
                final = [found.get(i + 1) for i in range(len(rles))]
            for a, r in zip(anns, final):
                if r is None or rle_utils.area(r) == 0:
                    res.dropped_entities += 1
                    continue
                ents.append((r, cats.get(int(a.get("category_id", -1)))))
        image_id = add_image_file(
            workspace,
            Path(images_dir) / str(im["file_name"]),
            source=source,
            source_id=str(im["file_name"]),
            height=h,
            width=w,
            url=im.get("coco_url") or im.get("url") or im.get("url_image"),
            license=_license(im, data),
        )
        write_entities(workspace, image_id, h, w, ents, origin=source)
        return image_id, ents

    imgs = data.get("images", [])[: limit if limit is not None else None]
    return _run(
        ((f"{instances_json}: image {im.get('id')}", lambda im=im: job(im)) for im in imgs),
        res,
        progress,
    )


def convert_label_maps(
    workspace: Workspace,
    images_dir: str | Path,
    label_dir: str | Path,
    *,
    names: dict[int, str] | None = None,
    void_values: Sequence[int] = (0,),
    source: str = "label_maps",
    label_suffix: str = ".png",
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ConvertResult:
    """A folder of images + a folder of integer label-map PNGs (same stem, 8/16-bit, one value
    per entity) -> workspace entities, one per value not in ``void_values``, named by ``names``
    (value -> name) when given."""
    img_root, lab_root = Path(images_dir), Path(label_dir)
    exts = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
    files = sorted(p for p in img_root.iterdir() if p.suffix.lower() in exts)
    if limit is not None:
        files = files[:limit]
    res = ConvertResult()

    def job(p: Path):
        lab = lab_root / f"{p.stem}{label_suffix}"
        if not lab.is_file():
            raise DataError(f"{lab}: label map not found")
        try:
            lm = np.asarray(Image.open(lab))
        except OSError as exc:
            raise DataError(f"{lab}: cannot read label map: {exc}") from None
        if lm.ndim != 2:
            raise DataError(f"{lab}: label map must be single-channel, got shape {lm.shape}")
        h, w = lm.shape
        values = [int(v) for v in np.unique(lm) if int(v) not in set(void_values)]
        rles = rle_utils.label_map_to_rles(lm, ids=values)
        ents = [(rles[v], (names or {}).get(v)) for v in values]
        image_id = add_image_file(workspace, p, source=source, source_id=p.name, height=h, width=w)
        write_entities(workspace, image_id, h, w, ents, origin=source)
        return image_id, ents

    return _run(((str(p), lambda p=p: job(p)) for p in files), res, progress)
