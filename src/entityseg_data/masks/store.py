"""Per-image annotation files in a workspace: the toolkit's on-disk mask format.

One JSON file per (stage, annotator, image)::

    masks/stage{stage}/{annotator}/{image_id}.json
    {"image_id": 12, "height": H, "width": W, "stage": 1, "annotator": "alice",
     "entities": [{"id": "a1b2", "segmentation": {"size": [H, W], "counts": "..."},
                   "name": "dog" | null, "score": 1.0 | null, "origin": "prediction" | ...}],
     "meta": {...}}

Masks are compressed COCO RLEs (the canonical store); ``id`` is the region id (Label Studio result
id when it came from Label Studio), ``name`` the stage-2 free-form name. Writes are atomic.

:func:`workspace_to_coco` turns a set of these files into an EntitySeg/COCO instance dict that the
evaluation, statistics, export and training code read like any other COCO file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.errors import DataError
from entityseg_data.io import atomic_write_json
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.types import Entity

if TYPE_CHECKING:
    from entityseg_data.catalog import ImageRecord
    from entityseg_data.workspace import Workspace


@dataclass(frozen=True)
class ImageAnnotation:
    """All entities one annotator drew (stage 1) or named (stage 2) on one image."""

    image_id: int
    height: int
    width: int
    stage: int
    annotator: str
    entities: tuple[Entity, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "height": self.height,
            "width": self.width,
            "stage": self.stage,
            "annotator": self.annotator,
            "entities": [e.to_json() for e in self.entities],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "") -> ImageAnnotation:
        try:
            h, w = int(data["height"]), int(data["width"])
            entities = []
            for i, e in enumerate(data.get("entities", [])):
                entities.append(Entity.from_json(e, h, w, index=i, where=f"{where} entity {i}"))
            return cls(
                image_id=int(data["image_id"]),
                height=h,
                width=w,
                stage=int(data.get("stage", 1)),
                annotator=str(data.get("annotator", "")),
                entities=tuple(entities),
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{where or 'annotation'}: malformed annotation file ({exc!r})"
            ) from None


def annotation_path(root: Path, stage: int, annotator: str, image_id: int) -> Path:
    """``root/masks/stage{stage}/{annotator}/{image_id}.json``."""
    if not annotator or "/" in annotator or annotator.startswith("."):
        raise DataError(f"invalid annotator name {annotator!r}")
    return Path(root) / "masks" / f"stage{stage}" / annotator / f"{int(image_id)}.json"


def save_annotation(root: Path, ann: ImageAnnotation) -> Path:
    """Write one annotation file atomically (sizes checked); returns its path."""
    for e in ann.entities:
        rle_utils.check_size(e.segmentation, ann.height, ann.width, where=f"entity {e.id}")
    path = annotation_path(root, ann.stage, ann.annotator, ann.image_id)
    atomic_write_json(path, ann.to_json())
    return path


def load_annotation(
    root: Path, stage: int, annotator: str, image_id: int
) -> ImageAnnotation | None:
    """The annotation file, or None when it does not exist."""
    path = annotation_path(root, stage, annotator, image_id)
    if not path.exists():
        return None
    return read_annotation_file(path)


def read_annotation_file(path: Path) -> ImageAnnotation:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read annotation file: {exc}") from None
    return ImageAnnotation.from_json(data, where=str(path))


def annotators(root: Path, stage: int) -> list[str]:
    """Annotators that have files for ``stage``."""
    base = Path(root) / "masks" / f"stage{stage}"
    if not base.exists():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir())


def iter_annotations(
    root: Path, stage: int, annotator: str, image_ids: Iterable[int] | None = None
) -> Iterator[ImageAnnotation]:
    """Annotation files of one annotator, by ascending image id (or for ``image_ids``)."""
    base = Path(root) / "masks" / f"stage{stage}" / annotator
    if image_ids is None:
        if not base.exists():
            return
        ids = sorted(int(p.stem) for p in base.glob("*.json") if p.stem.isdigit())
    else:
        ids = list(image_ids)
    for image_id in ids:
        ann = load_annotation(root, stage, annotator, image_id)
        if ann is not None:
            yield ann


def annotations_to_coco(
    anns: Sequence[ImageAnnotation],
    images: Mapping[int, ImageRecord] | None = None,
    category_of: Any = None,
) -> dict[str, Any]:
    """An EntitySeg/COCO instance dict from annotation files.

    Args:
        anns: the per-image annotations (one per image).
        images: catalog records by image id (file path, provenance); optional.
        category_of: ``name -> (category_id, category_name)`` mapping (e.g. the vocabulary); when
            None every entity gets category 1 ``entity`` (class-agnostic) and keeps its raw name in
            ``name``.

    Returns:
        ``{"images", "annotations", "categories"}`` with compressed RLE segmentations, ``area``,
        ``bbox`` [x, y, w, h], ``iscrowd`` 0, ``name`` (raw name or None), ``entity_id`` and
        ``kind`` (``thing``/``stuff``, when known).
    """
    images = images or {}
    out_images, out_anns = [], []
    categories: dict[int, str] = {}
    next_id = 1
    for ann in anns:
        row = images.get(ann.image_id)
        file_name = (row.norm_path or row.file_path) if row is not None else None
        out_images.append(
            {
                "id": ann.image_id,
                "file_name": file_name or f"{ann.image_id}",
                "height": ann.height,
                "width": ann.width,
                "img_source": row.source if row else None,
                "url_image": row.url if row else None,
                "license": row.license if row else None,
                "attribution": row.attribution if row else None,
            }
        )
        for e in ann.entities:
            if category_of is None:
                cat_id, cat_name = 1, "entity"
            else:
                cat_id, cat_name = category_of(e.name)
            categories[cat_id] = cat_name
            record = e.to_coco(ann.image_id, ann_id=next_id)  # area, bbox, score, kind...
            record.update(category_id=cat_id, name=e.name, entity_id=e.id)
            out_anns.append(record)
            next_id += 1
    if not categories:
        categories[1] = "entity"
    cats = [{"id": k, "name": v, "supercategory": "entity"} for k, v in sorted(categories.items())]
    return {"images": out_images, "annotations": out_anns, "categories": cats}


def workspace_to_coco(
    workspace: Workspace,
    *,
    stage: int = 1,
    annotator: str | None = None,
    statuses: Sequence[str] | None = ("approved",),
    category_of: Any = None,
) -> dict[str, Any]:
    """COCO dict of a workspace's annotations.

    Args:
        workspace: a :class:`~entityseg_data.workspace.Workspace`.
        stage: 1 (masks) or 2 (names).
        annotator: one annotator's files; None = for each image, the annotation row whose status
            is in ``statuses`` (the approved one).
        statuses: catalog annotation statuses to include (None = every file present).
        category_of: see :func:`annotations_to_coco`.
    """
    with workspace.catalog() as cat:
        rows = cat.annotations(stage=stage, annotator=annotator)
        images = {r.id: r for r in cat.images(status=None)}
    chosen: dict[int, str] = {}
    for r in rows:
        if statuses is not None and r.status not in statuses:
            continue
        chosen.setdefault(r.image_id, r.annotator)
    if annotator is not None and statuses is None:
        for a in iter_annotations(workspace.root, stage, annotator):
            chosen.setdefault(a.image_id, annotator)
    anns = []
    for image_id in sorted(chosen):
        loaded = load_annotation(workspace.root, stage, chosen[image_id], image_id)
        if loaded is not None:
            anns.append(loaded)
    return annotations_to_coco(anns, images, category_of)
