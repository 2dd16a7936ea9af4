"""``data validate``: structural checks of a COCO/EntitySeg annotation file (or a workspace).

Issues (key: meaning):

- ``duplicate_image_id``, ``duplicate_annotation_id``: ids used more than once.
- ``unknown_image``: an annotation's ``image_id`` is not in ``images``.
- ``unknown_category``: ``category_id`` not in ``categories`` (only when categories are given).
- ``malformed_annotation``: no/undecodable ``segmentation``.
- ``polygon``: a polygon segmentation where RLE is expected (EntitySeg needs RLE).
- ``uncompressed_rle``: an RLE with a counts list (readable, but not the EntitySeg format).
- ``rle_size_mismatch``: RLE ``size`` differs from the image's height/width.
- ``empty_mask``: a mask with zero pixels.
- ``area_mismatch``: the ``area`` field differs from the mask's pixel count.
- ``overlap``: masks of one image share pixels (entities must not overlap); counts images.
- ``missing_image`` / ``unreadable_image``: the file is absent / cannot be decoded.
- ``image_size_mismatch``: the file's (EXIF-upright) size differs from the JSON's.

The report keeps counts and the first ``max_offenders`` offenders per issue.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.stats.measures import checked_counts

log = logging.getLogger(__name__)

ISSUES: tuple[str, ...] = (
    "duplicate_image_id",
    "duplicate_annotation_id",
    "unknown_image",
    "unknown_category",
    "malformed_annotation",
    "polygon",
    "uncompressed_rle",
    "rle_size_mismatch",
    "empty_mask",
    "area_mismatch",
    "overlap",
    "missing_image",
    "unreadable_image",
    "image_size_mismatch",
)


@dataclass
class ValidationReport:
    """Counts per issue and the first offenders (dicts naming the image/annotation)."""

    n_images: int = 0
    n_annotations: int = 0
    counts: Counter = field(default_factory=Counter)
    offenders: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    max_offenders: int = 10

    def add(self, issue: str, **detail: Any) -> None:
        self.counts[issue] += 1
        if len(self.offenders[issue]) < self.max_offenders:
            self.offenders[issue].append(detail)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "images": self.n_images,
            "annotations": self.n_annotations,
            "counts": {k: int(self.counts.get(k, 0)) for k in ISSUES},
            "offenders": {k: v for k, v in self.offenders.items() if v},
        }

    def summary_lines(self) -> list[str]:
        lines = [
            f"{self.n_images} images, {self.n_annotations} annotations: "
            + ("no problems found" if self.ok else f"{sum(self.counts.values())} problems")
        ]
        for k in ISSUES:
            if self.counts.get(k):
                first = self.offenders[k][0] if self.offenders[k] else {}
                lines.append(f"  {k}: {self.counts[k]} (first: {first})")
        return lines


def _upright_size(path: Path, deep: bool) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
        if deep:
            im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
            im.load()
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return int(h), int(w)


def validate_coco(
    coco: dict[str, Any] | str | Path,
    *,
    images_dir: str | Path | None = None,
    expect_rle: bool = True,
    check_overlap: bool = True,
    deep_image_check: bool = True,
    max_offenders: int = 10,
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Validate a COCO dict/JSON. Images are checked only when ``images_dir`` is given
    (``deep_image_check`` decodes a 1/8-scale draft to catch truncated files)."""
    from entityseg_data.stats.engine import load_coco

    data = load_coco(coco)
    rep = ValidationReport(max_offenders=max_offenders)
    images = data.get("images", [])
    anns = data.get("annotations", [])
    rep.n_images, rep.n_annotations = len(images), len(anns)
    cats = {c.get("id") for c in data.get("categories", [])}
    by_id: dict[int, dict[str, Any]] = {}
    for img in images:
        iid = img.get("id")
        if iid in by_id:
            rep.add("duplicate_image_id", image_id=iid, file_name=img.get("file_name"))
        else:
            by_id[iid] = img
    seen: set[Any] = set()
    by_image: dict[Any, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for a in anns:
        aid = a.get("id")
        where = {"annotation_id": aid, "image_id": a.get("image_id")}
        if aid in seen:
            rep.add("duplicate_annotation_id", **where)
        seen.add(aid)
        img = by_id.get(a.get("image_id"))
        if img is None:
            rep.add("unknown_image", **where)
            continue
        if cats and a.get("category_id") not in cats:
            rep.add("unknown_category", category_id=a.get("category_id"), **where)
        segm = a.get("segmentation")
        h, w = int(img.get("height") or 0), int(img.get("width") or 0)
        if isinstance(segm, list):
            if expect_rle:
                rep.add("polygon", **where)
        elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
            rep.add("uncompressed_rle", **where)
        try:
            if isinstance(segm, list) and (h <= 0 or w <= 0):
                raise DataError("polygon without image size")
            rle = rle_utils.to_compressed(segm, h, w)
            checked_counts(rle)
            n_pix = rle_utils.area(rle)
        except Exception as exc:  # pycocotools raises plain errors on bad strings
            rep.add("malformed_annotation", error=str(exc)[:200], **where)
            continue
        rh, rw = rle_utils.size(rle)
        if (h, w) != (rh, rw):
            rep.add("rle_size_mismatch", rle_size=[rh, rw], image_size=[h, w], **where)
            continue
        if n_pix == 0:
            rep.add("empty_mask", **where)
        # polygon areas are analytic, not pixel counts: only RLE areas are compared
        area = a.get("area")
        if area is not None and not isinstance(segm, list) and abs(float(area) - n_pix) > 0.5:
            rep.add("area_mismatch", area=area, pixels=n_pix, **where)
        if not a.get("iscrowd", 0):
            by_image[a.get("image_id")].append((a, rle))
    root = Path(images_dir) if images_dir is not None else None
    for img in by_id.values():
        iid = img.get("id")
        if check_overlap:
            pairs = by_image.get(iid, [])
            if len(pairs) > 1:
                rles = [r for _, r in pairs]
                extra = rle_utils.overlap_pixels(rles)
                if extra > 0:
                    ious = rle_utils.iou_matrix(rles, rles)
                    np.fill_diagonal(ious, 0)
                    i, j = np.unravel_index(int(np.argmax(ious)), ious.shape)
                    rep.add(
                        "overlap",
                        image_id=iid,
                        pixels=int(extra),
                        annotation_ids=[pairs[i][0].get("id"), pairs[j][0].get("id")],
                    )
        if root is not None:
            path = root / str(img.get("file_name", ""))
            if not path.is_file():
                rep.add("missing_image", image_id=iid, path=str(path))
            else:
                try:
                    h, w = _upright_size(path, deep_image_check)
                except Exception as exc:  # PIL raises many kinds
                    rep.add("unreadable_image", image_id=iid, path=str(path), error=str(exc)[:200])
                else:
                    if (h, w) != (int(img.get("height") or 0), int(img.get("width") or 0)):
                        rep.add(
                            "image_size_mismatch",
                            image_id=iid,
                            path=str(path),
                            file_size=[h, w],
                            json_size=[img.get("height"), img.get("width")],
                        )
        if progress is not None:
            progress(1)
    log.info(
        "validated %d images, %d annotations: %s", rep.n_images, rep.n_annotations, dict(rep.counts)
    )
    return rep
