"""The COCO importer: images of a COCO instances / panoptic (or EntitySeg) JSON, with their
masks carried in as pre-annotations or, with ``approved=True``, as approved annotations.

Spec: ``coco:ANNOTATIONS.json[:IMAGE_ROOT]``. Without IMAGE_ROOT the images are looked for in
``<json dir>/../<split>`` (the official layout: ``annotations/instances_val2017.json`` beside
``val2017/``), ``<json dir>/<split>`` or ``<json dir>/images``, else fetched from each image's
``coco_url``. Panoptic JSONs (annotations with ``segments_info``) read their PNGs from
``<json without .json>/`` (``annotations/panoptic_val2017/``) unless ``panoptic_root`` is given.

The JSON is read by the toolkit's one COCO reader (:func:`entityseg_data.io.coco.read_coco`).
Every policy is explicit (:class:`ImportPolicy`):

* **crowd** (``iscrowd=1``): ``drop`` (default: a crowd region is not one entity) or ``keep``
  (an entity marked ``iscrowd``);
* **overlaps** (instances may overlap, entities must not): ``smaller_wins`` (default: the smaller
  mask is painted last, so objects lying on larger ones stay whole) or ``later_wins`` (file
  order); instances left without a pixel are dropped and counted. Panoptic segments never
  overlap;
* **EXIF**: the image is stored upright; masks annotated on the raw pixels are turned with it
  (:func:`entityseg_data.ingest.preannotations.build`), masks already upright are kept;
* **de-duplication, filters, provenance**: the ingest pipeline's, as for any source (exact
  and near duplicates are recorded, not imported twice);
* **bad records**: in pre-annotation mode a bad annotation (corrupt RLE, wrong size) is left
  out and the image kept; in approved mode an image with any bad annotation is not imported
  (an approved annotation must be complete). Either way the problem is logged and listed in
  :attr:`CocoSource.problems`.

Each entity carries its category name, ``category_id`` and thing/stuff ``kind`` (COCO panoptic
``isthing``), so the workspace knows which classes are things and which are stuff.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source, clean
from entityseg_data.io.coco import (
    CocoAnnotation,
    CocoCategory,
    CocoDataset,
    PanopticImage,
    Problem,
    read_coco,
    read_panoptic_png,
)

if TYPE_CHECKING:
    from entityseg_data.ingest.preannotations import PreAnnotation

log = logging.getLogger(__name__)

MODEL_VERSION = "source:coco"


#: what becomes of COCO crowd annotations / which mask keeps an overlapping pixel
CrowdPolicy = Literal["drop", "keep"]
ImportOverlaps = Literal["smaller_wins", "later_wins"]


@dataclass(frozen=True)
class ImportPolicy:
    """How source masks become workspace entities (see the module docstring).

    ``approved``: the masks become approved stage-1 and stage-2 annotations (annotator
    ``import``) instead of pre-annotations."""

    crowd: CrowdPolicy = "drop"
    overlaps: ImportOverlaps = "smaller_wins"
    approved: bool = False

    def __post_init__(self) -> None:
        if self.crowd not in ("drop", "keep"):
            raise DataError(f"crowd policy must be 'drop' or 'keep', got {self.crowd!r}")
        if self.overlaps not in ("smaller_wins", "later_wins"):
            raise DataError(
                f"overlap policy must be 'smaller_wins' or 'later_wins', got {self.overlaps!r}"
            )


def entity_info(
    category: CocoCategory | None, *, name: str | None = None, crowd: bool = False
) -> dict[str, Any]:
    """The entity fields a source gives one mask: ``name`` (the annotation's own name, else the
    category name), ``category_id``, ``kind`` (``thing``/``stuff`` from ``isthing``) and
    ``iscrowd`` (only when set)."""
    info: dict[str, Any] = {"name": name or (category.name if category is not None else None)}
    if category is not None:
        info["category_id"] = category.id
        info["kind"] = category.kind
    if crowd:
        info["iscrowd"] = 1
    return info


class CocoSource(Source):
    """Images of a COCO-format dataset, with their masks.

    Args:
        annotations: the instances or panoptic JSON file.
        image_root: folder holding the ``file_name`` of every image (see module docstring).
        panoptic_root: folder of the panoptic PNGs.
        pre_annotations: carry the masks in (False: images only).
        policy: crowd / overlap / approved policies (:class:`ImportPolicy`).
        name: dataset name used in source ids (default: the JSON stem).
    """

    kind = "coco"

    def __init__(
        self,
        *,
        annotations: str | os.PathLike[str],
        image_root: str | os.PathLike[str] | None = None,
        panoptic_root: str | os.PathLike[str] | None = None,
        pre_annotations: bool = True,
        policy: ImportPolicy | None = None,
        name: str | None = None,
        domain_tags: tuple[str, ...] = ("coco",),
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"coco:{annotations}")
        self.annotations = Path(annotations)
        if not self.annotations.is_file():
            raise DataError(f"coco source: {self.annotations} does not exist")
        self.image_root = Path(image_root) if image_root else None
        if self.image_root is not None and not self.image_root.is_dir():
            raise DataError(f"coco source: image root {self.image_root} is not a folder")
        self.panoptic_root = Path(panoptic_root) if panoptic_root else None
        self.pre_annotations = pre_annotations
        self.policy = policy or ImportPolicy()
        self.name = name or self.annotations.stem
        self.domain_tags = tuple(domain_tags)
        self.problems: list[Problem] = []

    def _default_root(self) -> Path | None:
        split = re.sub(r"^(instances|panoptic|person_keypoints|captions)_", "", self.name)
        for cand in (
            self.annotations.parent.parent / split,
            self.annotations.parent / split,
            self.annotations.parent / "images",
        ):
            if cand.is_dir():
                return cand
        return None

    def read(self) -> CocoDataset:
        """The JSON, read leniently: problems are logged and kept in :attr:`problems`."""
        ds = read_coco(self.annotations, strict=False, what="COCO annotations")
        for p in ds.problems:
            log.warning("coco source: %s (left out)", p)
        self.problems = list(ds.problems)
        return ds

    def items(self) -> Iterator[Item]:
        ds = self.read()
        cats = ds.category_by_id()
        by_image = ds.annotations_by_image()
        panoptic = ds.panoptic_by_image()
        bad_images = {p.image_id for p in ds.problems if p.image_id is not None}
        root = self.image_root or self._default_root()
        pan_root = self.panoptic_root or self.annotations.with_suffix("")
        for img in ds.images:
            if self.policy.approved and img.id in bad_images:
                log.warning(
                    "coco source: image %s (%s) not imported as approved: one of its "
                    "annotations is bad (see above)",
                    img.id,
                    img.file_name,
                )
                continue
            path = root / img.file_name if root is not None and img.file_name else None
            if path is not None and not path.exists():
                path = None
            url = img.url if img.url and img.url.startswith(("http://", "https://")) else None
            if path is None and url is None:
                raise DataError(
                    f"{self.annotations}: image {img.id} ({img.file_name}) not found under "
                    f"{root} and has no coco_url; pass coco:JSON:IMAGE_ROOT"
                )
            pre = None
            if self.pre_annotations:
                if ds.is_panoptic:
                    pan = panoptic.get(img.id)
                    if pan is not None and pan.segments:
                        pre = partial(
                            _panoptic_pre,
                            pan_root / pan.file_name,
                            pan,
                            cats,
                            self.policy,
                            img.height,
                            img.width,
                        )
                elif by_image.get(img.id):
                    pre = partial(
                        _instances_pre, by_image[img.id], cats, self.policy, img.height, img.width
                    )
            attribution = f"COCO {self.name} image {img.id}"
            flickr = clean(img.extra.get("flickr_url"))
            if flickr:
                attribution += f" (Flickr: {flickr})"
            yield Item(
                source=self.kind,
                source_id=f"{self.name}:{img.id}",
                path=str(path) if path is not None else None,
                url=url,
                license=img.license,
                attribution=attribution,
                domain_tags=self.domain_tags,
                extra={"coco_image_id": img.id, "file_name": img.file_name},
                pre_annotation=pre,
                pre_annotation_version=MODEL_VERSION if pre else None,
                annotations_approved=self.policy.approved and pre is not None,
            )


def _instances_pre(
    anns: Sequence[CocoAnnotation],
    categories: Mapping[int, CocoCategory],
    policy: ImportPolicy,
    ann_h: int,
    ann_w: int,
    raw_h: int,
    raw_w: int,
    orientation: int,
) -> PreAnnotation:
    from entityseg_data.ingest import preannotations

    keep = [a for a in anns if policy.crowd == "keep" or not a.iscrowd]
    rles = [a.segmentation for a in keep]
    infos = [
        entity_info(
            categories.get(a.category_id) if a.category_id is not None else None,
            name=a.name,
            crowd=a.iscrowd,
        )
        for a in keep
    ]
    lm = preannotations.label_map_from_rles(rles, ann_h, ann_w, overlaps=policy.overlaps)
    pre = preannotations.build(
        lm,
        infos,
        ann_height=ann_h,
        ann_width=ann_w,
        raw_height=raw_h,
        raw_width=raw_w,
        orientation=orientation,
        model_version=MODEL_VERSION,
    )
    dropped = len(keep) - len(pre.entities)
    if dropped:
        log.info("coco: %d instance(s) covered by others left no pixel (dropped)", dropped)
    return pre


def _panoptic_pre(
    png: Path,
    pan: PanopticImage,
    categories: Mapping[int, CocoCategory],
    policy: ImportPolicy,
    ann_h: int,
    ann_w: int,
    raw_h: int,
    raw_w: int,
    orientation: int,
) -> PreAnnotation:
    import numpy as np

    from entityseg_data.ingest import preannotations

    ids = read_panoptic_png(png, ann_h, ann_w)
    segs = [s for s in pan.segments if policy.crowd == "keep" or not s.iscrowd]
    # a sorted lookup table maps every segment id to its label (0 = void or dropped crowd)
    seg_ids = np.asarray([s.id for s in segs], np.int64)
    order = np.argsort(seg_ids)
    pos = np.searchsorted(seg_ids[order], ids) if seg_ids.size else np.zeros_like(ids)
    pos = np.clip(pos, 0, max(seg_ids.size - 1, 0))
    hit = seg_ids.size > 0
    lm = np.zeros(ids.shape, np.int32)
    if hit:
        found = seg_ids[order][pos] == ids
        lm[found] = order[pos[found]] + 1
    infos = [entity_info(categories.get(s.category_id), crowd=s.iscrowd) for s in segs]
    return preannotations.build(
        lm,
        infos,
        ann_height=ann_h,
        ann_width=ann_w,
        raw_height=raw_h,
        raw_width=raw_w,
        orientation=orientation,
        model_version=MODEL_VERSION,
    )
