"""``data validate``: structural checks of a COCO/EntitySeg annotation file (or a workspace).

The records are read by :func:`entityseg_data.io.coco.read_coco` (lenient policy). Issues
(key: meaning):

- ``malformed_image``: an image record without integer ``id``/``height``/``width`` (``"20"`` is
  text, not a size), a non-positive size, or a ``file_name`` that is not text.
- ``malformed_category``: a category without integer ``id`` or text ``name``, ``isthing`` not
  0/1, or a repeated category id.
- ``duplicate_image_id``, ``duplicate_annotation_id``: ids used more than once.
- ``unknown_image``: an annotation's ``image_id`` is not in ``images``.
- ``unknown_category``: ``category_id`` not in ``categories`` (only when categories are given).
- ``malformed_annotation``: no/undecodable ``segmentation`` (a truncated or garbage RLE, runs
  not covering the image), or a malformed ``id``/``iscrowd``/``area``/``bbox``.
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
from entityseg_data.io import coco as coco_io
from entityseg_data.io.files import read_json
from entityseg_data.io.images import check_image, image_size
from entityseg_data.masks import rle as rle_utils

log = logging.getLogger(__name__)

ISSUES: tuple[str, ...] = (
    "malformed_image",
    "malformed_category",
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


_ISSUE_OF = {
    coco_io.MALFORMED_FILE: "malformed_image",
    coco_io.MALFORMED_IMAGE: "malformed_image",
    coco_io.MALFORMED_CATEGORY: "malformed_category",
    coco_io.DUPLICATE_CATEGORY_ID: "malformed_category",
    coco_io.MALFORMED_SEGMENTATION: "malformed_annotation",
}


def validate_coco(
    coco: dict[str, Any] | str | Path,
    *,
    images_dir: str | Path | None = None,
    expect_rle: bool = True,
    check_overlap: bool = True,
    deep_image_check: bool = True,
    max_offenders: int = 10,
    progress: Callable[[int], object] | None = None,
    name: str | None = None,
) -> ValidationReport:
    """Validate a COCO dict/JSON. The records are checked by the toolkit's one COCO reader
    (:func:`entityseg_data.io.coco.read_coco`, lenient: every problem reported, bad records
    left out of the later checks). Images are checked only when ``images_dir`` is given
    (``deep_image_check`` decodes them, a JPEG through a 1/8-scale draft, to catch truncated
    files). ``name`` names a dict source in messages."""
    if isinstance(coco, str | Path):
        data, where = read_json(coco, "COCO annotations"), str(coco)
    else:
        data, where = coco, name or "<COCO annotations>"
    ds = coco_io.read_coco(data, strict=False, name=where)
    rep = ValidationReport(max_offenders=max_offenders)
    rep.n_images = len(data.get("images") or []) if isinstance(data, dict) else 0
    anns_raw = data.get("annotations") or [] if isinstance(data, dict) else []
    rep.n_annotations = len(anns_raw) if isinstance(anns_raw, list) else 0
    for p in ds.problems:
        rep.add(
            _ISSUE_OF.get(p.issue, p.issue),
            image_id=p.image_id,
            annotation_id=p.annotation_id,
            error=str(p)[:300],
        )
    by_image: dict[int, list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    segs = [a.segmentation for a in ds.annotations]
    pixel_counts = np.concatenate(  # vectorised passes of 2048 RLEs (bounded memory)
        [np.zeros(0, np.int64)]
        + [rle_utils.areas(segs[i : i + 2048]) for i in range(0, len(segs), 2048)]
    )
    for a, n_pix in zip(ds.annotations, pixel_counts.tolist(), strict=True):
        where_ = {"annotation_id": a.id, "image_id": a.image_id}
        if a.format == "polygon" and expect_rle:
            rep.add("polygon", **where_)
        elif a.format == "uncompressed_rle":
            rep.add("uncompressed_rle", **where_)
        if n_pix == 0:
            rep.add("empty_mask", **where_)
        # polygon areas are analytic, not pixel counts: only RLE areas are compared
        if a.area is not None and a.format != "polygon" and abs(a.area - n_pix) > 0.5:
            rep.add("area_mismatch", area=a.area, pixels=n_pix, **where_)
        if not a.iscrowd:
            by_image[a.image_id].append((a.id, a.segmentation))
    root = Path(images_dir) if images_dir is not None else None
    for img in ds.images:
        if check_overlap:
            pairs = by_image.get(img.id, [])
            if len(pairs) > 1:
                rles = [r for _, r in pairs]
                extra = rle_utils.overlap_pixels(rles)
                if extra > 0:
                    i, j = _worst_pair(rles, img.height, img.width)
                    rep.add(
                        "overlap",
                        image_id=img.id,
                        pixels=int(extra),
                        annotation_ids=[pairs[i][0], pairs[j][0]],
                    )
        if root is not None:
            _check_image_file(rep, root / img.file_name, img, deep_image_check)
        if progress is not None:
            progress(1)
    log.info(
        "validated %d images, %d annotations: %s", rep.n_images, rep.n_annotations, dict(rep.counts)
    )
    return rep


_MAX_PAIR_SEARCH = 64  # masks among which the named overlapping pair is looked for


def _worst_pair(rles: list[dict[str, Any]], height: int, width: int) -> tuple[int, int]:
    """Indices of the two masks sharing the most pixels, among the first conflicting ones (the
    run algebra of :mod:`entityseg_data.masks.runs`: no all-pairs IoU matrix, so an image with
    thousands of overlapping masks stays cheap)."""
    from entityseg_data.masks import runs as runs_ops

    regions = rle_utils.runs_many(rles, height, width)
    hit = np.flatnonzero(runs_ops.conflicts(regions))[:_MAX_PAIR_SEARCH]
    pairs = runs_ops.overlap_pairs([regions[int(k)] for k in hit])
    (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
    return int(hit[a]), int(hit[b])


def _check_image_file(rep: ValidationReport, path: Path, img: Any, deep: bool) -> None:
    """missing_image / unreadable_image / image_size_mismatch of one image file."""
    if not path.is_file():
        rep.add("missing_image", image_id=img.id, path=str(path))
        return
    try:
        size = check_image(path, draft=True) if deep else image_size(path)
    except DataError as exc:
        rep.add("unreadable_image", image_id=img.id, path=str(path), error=str(exc)[:200])
        return
    if (size.height, size.width) != (img.height, img.width):
        rep.add(
            "image_size_mismatch",
            image_id=img.id,
            path=str(path),
            file_size=[size.height, size.width],
            json_size=[img.height, img.width],
        )
