"""COCO source: images listed in a COCO instances or panoptic JSON, with their masks kept as
optional stage-1 pre-annotations (model version ``source:coco``).

Spec: ``coco:ANNOTATIONS.json[:IMAGE_ROOT]``. Without IMAGE_ROOT the images are looked for in
``<json dir>/../<split>`` (the official layout: ``annotations/instances_val2017.json`` beside
``val2017/``) and else fetched from each image's ``coco_url``.
Panoptic JSONs (annotations with ``segments_info``) read their PNGs from ``<json without
.json>/`` (``annotations/panoptic_val2017/``) unless ``panoptic_root`` is given.
Crowd regions (``iscrowd=1``) are not entities and are skipped.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source, clean

MODEL_VERSION = "source:coco"


class CocoSource(Source):
    """Images of a COCO-format dataset.

    Args:
        annotations: the instances or panoptic JSON file.
        image_root: folder holding the ``file_name`` of every image (see module docstring).
        panoptic_root: folder of the panoptic PNGs.
        pre_annotations: keep the masks as pre-annotations.
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
        self.name = name or self.annotations.stem
        self.domain_tags = tuple(domain_tags)

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.annotations, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.annotations}: not a readable COCO JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise DataError(f"{self.annotations}: not a COCO JSON (no 'images' list)")
        return data

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

    def items(self) -> Iterator[Item]:
        data = self._load()
        categories = {c["id"]: c.get("name") for c in data.get("categories", [])}
        licenses = {
            lic.get("id"): " ".join(x for x in (lic.get("name"), lic.get("url")) if x)
            for lic in data.get("licenses", [])
        }
        anns = data.get("annotations", [])
        panoptic = bool(anns) and "segments_info" in anns[0]
        by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for ann in anns:
            by_image[ann["image_id"]].append(ann)
        root = self.image_root or self._default_root()
        pan_root = self.panoptic_root or self.annotations.with_suffix("")
        for img in data["images"]:
            try:
                image_id, file_name = img["id"], img["file_name"]
            except KeyError as exc:
                raise DataError(f"{self.annotations}: image record lacks {exc}: {img}") from None
            path = root / file_name if root is not None else None
            url = clean(img.get("coco_url")) or clean(img.get("flickr_url"))
            if path is not None and not path.exists():
                path = None
            if path is None and url is None:
                raise DataError(
                    f"{self.annotations}: image {image_id} ({file_name}) not found under "
                    f"{root} and has no coco_url; pass coco:JSON:IMAGE_ROOT"
                )
            pre = None
            image_anns = by_image.get(image_id, [])
            if self.pre_annotations and image_anns:
                h, w = int(img["height"]), int(img["width"])
                if panoptic:
                    ann = image_anns[0]
                    pre = partial(
                        _panoptic_pre,
                        pan_root / ann["file_name"],
                        ann["segments_info"],
                        categories,
                        h,
                        w,
                    )
                else:
                    pre = partial(_instances_pre, image_anns, categories, h, w)
            attribution = f"COCO {self.name} image {image_id}"
            if img.get("flickr_url"):
                attribution += f" (Flickr: {img['flickr_url']})"
            yield Item(
                source=self.kind,
                source_id=f"{self.name}:{image_id}",
                path=str(path) if path is not None else None,
                url=url,
                license=licenses.get(img.get("license")) or clean(img.get("license")),
                attribution=attribution,
                domain_tags=self.domain_tags,
                extra={"coco_image_id": image_id, "file_name": file_name},
                pre_annotation=pre,
                pre_annotation_version=MODEL_VERSION if pre else None,
            )


def _instances_pre(
    anns: list[dict[str, Any]],
    categories: dict[Any, str | None],
    ann_h: int,
    ann_w: int,
    raw_h: int,
    raw_w: int,
    orientation: int,
):
    from entityseg_data.ingest import preannotations
    from entityseg_data.masks import rle as rle_ops

    rles, names = [], []
    for ann in anns:
        if ann.get("iscrowd") or not ann.get("segmentation"):
            continue
        rles.append(rle_ops.to_compressed(ann["segmentation"], ann_h, ann_w))
        names.append(categories.get(ann.get("category_id")))
    lm = preannotations.label_map_from_rles(rles, ann_h, ann_w)
    return preannotations.build(
        lm,
        names,
        ann_height=ann_h,
        ann_width=ann_w,
        raw_height=raw_h,
        raw_width=raw_w,
        orientation=orientation,
        model_version=MODEL_VERSION,
    )


def _panoptic_pre(
    png: Path,
    segments: list[dict[str, Any]],
    categories: dict[Any, str | None],
    ann_h: int,
    ann_w: int,
    raw_h: int,
    raw_w: int,
    orientation: int,
):
    from PIL import Image

    from entityseg_data.ingest import preannotations

    try:
        with Image.open(png) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint32)
    except OSError as exc:
        raise DataError(f"{png}: cannot read the panoptic PNG: {exc}") from None
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    if ids.shape != (ann_h, ann_w):
        raise DataError(f"{png}: size {ids.shape} differs from the JSON's {ann_h}x{ann_w}")
    lm = np.zeros(ids.shape, np.uint16)
    names = []
    for k, seg in enumerate(s for s in segments if not s.get("iscrowd")):
        lm[ids == seg["id"]] = k + 1
        names.append(categories.get(seg.get("category_id")))
    return preannotations.build(
        lm,
        names,
        ann_height=ann_h,
        ann_width=ann_w,
        raw_height=raw_h,
        raw_width=raw_w,
        orientation=orientation,
        model_version=MODEL_VERSION,
    )
