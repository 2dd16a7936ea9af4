"""The one strict COCO reader and validator: COCO instances, EntitySeg and COCO panoptic JSON,
and the COCO results (predictions) files evaluated against them.

:func:`read_coco` turns a JSON file (or an already-parsed dict) into typed, validated records:
:class:`CocoImage`, :class:`CocoAnnotation` (segmentation as a checked compressed RLE of the
image size), :class:`CocoCategory` (``supercategory``, ``isthing``) and, for panoptic files,
:class:`PanopticImage` / :class:`PanopticSegment`. Evaluation, statistics, ``data validate``,
export, training, the ``coco:`` source, the importer and consistency all read COCO through it.
Predictions: :func:`read_results` reads a COCO results file (instance masks with scores, for
the class-agnostic and class-aware evaluations) into :class:`CocoResult` records checked against
the ground truth's images; :func:`read_panoptic` a COCO panoptic ground truth or predictions file
(``images`` and ``categories`` may be absent, as panopticapi reads only the annotations).

What is checked (each problem names the file, the record and what is wrong):

* the file: readable, UTF-8, valid JSON, not nested too deeply, a JSON object with an
  ``images`` list (``annotations`` / ``categories`` lists when present);
* images: ``id``, ``height``, ``width`` integers (``"20"`` is not one), sizes positive, ids
  unique, ``file_name`` text when present; a missing size is read from the image header when an
  ``image_root`` is given;
* annotations: ``image_id`` of a listed image; ``id`` unique when given; ``category_id`` listed
  in ``categories`` (when there are categories); ``iscrowd`` 0/1; ``area`` finite; ``bbox`` four
  finite numbers; the segmentation (compressed RLE, uncompressed RLE or polygons) converts to a
  compressed RLE whose size is the image's and whose runs cover exactly ``height x width``
  pixels (truncated and garbage counts strings are refused, not decoded into wrong masks);
* categories: ``id`` integer and unique, ``name`` text, ``isthing`` 0/1 when present;
* panoptic annotations: ``image_id`` listed, ``file_name`` text, segments with unique integer
  ids (> 0) and listed categories.

Policy: ``strict=True`` (default) raises :class:`~entityseg_data.errors.DataError` on the first
problem; ``strict=False`` drops the bad records and returns every :class:`Problem` (``data
validate`` reports them; ``stats`` skips the images with bad annotations and lists them).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.io.files import json_source
from entityseg_data.masks.rle import RLE

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

# issue keys (also used by ``data validate``)
MALFORMED_FILE = "malformed_file"
MALFORMED_IMAGE = "malformed_image"
DUPLICATE_IMAGE_ID = "duplicate_image_id"
MALFORMED_CATEGORY = "malformed_category"
DUPLICATE_CATEGORY_ID = "duplicate_category_id"
MALFORMED_ANNOTATION = "malformed_annotation"
DUPLICATE_ANNOTATION_ID = "duplicate_annotation_id"
UNKNOWN_IMAGE = "unknown_image"
UNKNOWN_CATEGORY = "unknown_category"
RLE_SIZE_MISMATCH = "rle_size_mismatch"
MALFORMED_SEGMENTATION = "malformed_segmentation"
STRUCTURAL_ISSUES = (
    MALFORMED_FILE,
    MALFORMED_IMAGE,
    DUPLICATE_IMAGE_ID,
    MALFORMED_CATEGORY,
    DUPLICATE_CATEGORY_ID,
)

_IMAGE_KEYS = ("id", "file_name", "height", "width")
_ANN_KEYS = (
    "id",
    "image_id",
    "segmentation",
    "category_id",
    "iscrowd",
    "area",
    "bbox",
    "name",
    "kind",
)


@dataclass(frozen=True)
class Problem:
    """One problem found in a COCO file: ``issue`` key, ``where`` (file and record), the
    ``message``, and the ids it concerns."""

    issue: str
    where: str
    message: str
    image_id: int | None = None
    annotation_id: Any = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class CocoImage:
    """One ``images[]`` record. Sizes in pixels as the JSON states them (COCO: the upright
    image). ``license`` is the text of the licence (``licenses[]`` name and url) or the raw
    value; ``url`` the first of ``coco_url``, ``url_image``, ``url``, ``flickr_url``;
    ``extra`` every other field of the record."""

    id: int
    file_name: str
    height: int
    width: int
    license: str | None = None
    url: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Any:
        """The image's source as the file gives it: EntitySeg's ``img_source``, else
        ``source`` (None when neither is set)."""
        return self.extra.get("img_source") or self.extra.get("source")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(id=self.id, file_name=self.file_name, height=self.height, width=self.width)
        return out


@dataclass(frozen=True)
class CocoCategory:
    """One ``categories[]`` record; ``isthing`` None when the file does not say."""

    id: int
    name: str
    supercategory: str | None = None
    isthing: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        """``"thing"``, ``"stuff"`` or None (unknown)."""
        return None if self.isthing is None else ("thing" if self.isthing else "stuff")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(id=self.id, name=self.name)
        if self.supercategory is not None:
            out["supercategory"] = self.supercategory
        if self.isthing is not None:
            out["isthing"] = int(self.isthing)
        return out


@dataclass(frozen=True)
class CocoAnnotation:
    """One instance annotation. ``segmentation``: compressed RLE ``{"size": [H, W], "counts":
    str}`` of the image's size, checked; ``format``: how the file gave it (``rle``,
    ``uncompressed_rle``, ``polygon``); ``area``/``bbox`` as the file gives them (None when
    absent); ``name``: the open-vocabulary name (``name``, else EntitySeg's ``category_id_ori``
    when it is text); ``kind``: ``thing``/``stuff`` of this entity (its ``kind`` field, else
    its category's ``isthing``; None when unknown); ``extra``: every other field."""

    image_id: int
    segmentation: RLE
    id: int | None = None
    category_id: int | None = None
    iscrowd: bool = False
    area: float | None = None
    bbox: tuple[float, float, float, float] | None = None
    name: str | None = None
    format: str = "rle"
    kind: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(image_id=self.image_id, segmentation=self.segmentation)
        if self.kind is not None:
            out["kind"] = self.kind
        if self.id is not None:
            out["id"] = self.id
        if self.category_id is not None:
            out["category_id"] = self.category_id
        out["iscrowd"] = int(self.iscrowd)
        if self.area is not None:
            out["area"] = self.area
        if self.bbox is not None:
            out["bbox"] = list(self.bbox)
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class PanopticSegment:
    """One ``segments_info[]`` record of a panoptic annotation (``id`` = R + 256 G + 256^2 B
    of the PNG)."""

    id: int
    category_id: int
    iscrowd: bool = False
    area: float | None = None
    bbox: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class PanopticImage:
    """The panoptic annotation of one image: its PNG ``file_name`` and segments."""

    image_id: int
    file_name: str
    segments: tuple[PanopticSegment, ...] = ()


@dataclass(frozen=True)
class CocoResult:
    """One record of a COCO results (predictions) file: ``segmentation`` a checked compressed
    RLE of its image's size, ``score`` a finite number, ``category_id`` (None when the file
    gives none, or when it was not asked for)."""

    image_id: int
    segmentation: RLE
    score: float
    category_id: int | None = None


@dataclass(frozen=True)
class CocoDataset:
    """A validated COCO file. ``source`` names it in messages; ``problems`` lists what was
    dropped (always empty after a strict read); ``extra``: the file's other top-level fields
    (e.g. EntitySeg's ``vocabulary``).

    The records are what stages pass between their modules; :meth:`subset` and
    :meth:`without_images` select images with their annotations sharing the records (no copy of
    a segmentation); :meth:`to_dict` is the plain COCO dict at a file boundary."""

    source: str
    images: tuple[CocoImage, ...] = ()
    annotations: tuple[CocoAnnotation, ...] = ()
    categories: tuple[CocoCategory, ...] = ()
    panoptic: tuple[PanopticImage, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)
    licenses: tuple[Mapping[str, Any], ...] = ()
    problems: tuple[Problem, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_panoptic(self) -> bool:
        return bool(self.panoptic)

    def image_by_id(self) -> dict[int, CocoImage]:
        return {im.id: im for im in self.images}

    def category_by_id(self) -> dict[int, CocoCategory]:
        return {c.id: c for c in self.categories}

    def annotations_by_image(self) -> dict[int, list[CocoAnnotation]]:
        """Annotations by image id (every image present, possibly empty), in file order."""
        out: dict[int, list[CocoAnnotation]] = {im.id: [] for im in self.images}
        for a in self.annotations:
            out[a.image_id].append(a)
        return out

    def panoptic_by_image(self) -> dict[int, PanopticImage]:
        return {p.image_id: p for p in self.panoptic}

    def subset(self, image_ids: Container[int]) -> CocoDataset:
        """The images in ``image_ids`` with their annotations (records shared, file order)."""
        return replace(
            self,
            images=tuple(im for im in self.images if im.id in image_ids),
            annotations=tuple(a for a in self.annotations if a.image_id in image_ids),
            panoptic=tuple(p for p in self.panoptic if p.image_id in image_ids),
        )

    def without_images(self, image_ids: Collection[int]) -> CocoDataset:
        """The dataset without the images ``image_ids`` and their annotations (itself when
        there are none)."""
        if not image_ids:
            return self
        return self.subset({im.id for im in self.images if im.id not in image_ids})

    def to_dict(self) -> dict[str, Any]:
        """A plain COCO dict of the records (compressed RLE segmentations): ``info`` first
        (when there is one), then ``licenses``, ``images``, ``annotations``, ``categories`` and
        the other top-level fields. For writing a file; stages pass the records."""
        out: dict[str, Any] = {}
        if self.info:
            out["info"] = dict(self.info)
        if self.licenses:
            out["licenses"] = [dict(x) for x in self.licenses]
        out["images"] = [im.to_json() for im in self.images]
        out["annotations"] = [a.to_json() for a in self.annotations]
        out["categories"] = [c.to_json() for c in self.categories]
        out.update(self.extra)
        return out


# --------------------------------------------------------------------------------------------
# field checks


def _is_int(value: Any) -> bool:
    t = type(value)
    if t is int:  # the common case first (this runs several times per record)
        return True
    if t is float:
        return math.isfinite(value) and value == int(value)
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value == int(value)
    )


def _number(value: Any) -> bool:
    t = type(value)
    if t is int:
        return True
    if t is float:
        return math.isfinite(value)
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class _Reader:
    """One pass over a parsed COCO dict; ``report`` raises (strict) or records a problem."""

    def __init__(self, name: str, strict: bool, image_root: Path | None) -> None:
        self.name = name
        self.strict = strict
        self.image_root = image_root
        self.problems: list[Problem] = []

    def report(self, issue: str, where: str, message: str, **ids: Any) -> None:
        p = Problem(
            issue=issue,
            where=where,
            message=message,
            image_id=ids.pop("image_id", None),
            annotation_id=ids.pop("annotation_id", None),
            detail=ids,
        )
        if self.strict:
            raise DataError(str(p))
        self.problems.append(p)

    def repeated(
        self, key: int, seen: Container[int], issue: str, where: str, what: str, **ids: Any
    ) -> bool:
        """Whether ``key`` was seen already (then reported: ``what`` followed by the key)."""
        if key not in seen:
            return False
        self.report(issue, where, f"{what} {key}", **ids)
        return True

    def int_field(
        self, rec: Mapping[str, Any], key: str, where: str, issue: str, **ids: Any
    ) -> int:
        """The integer ``rec[key]``; reports and raises _Skip when missing or not an integer."""
        if key not in rec or rec[key] is None:
            self.report(issue, where, f"missing '{key}'", **ids)
            raise _Skip
        value = rec[key]
        if not _is_int(value):
            self.report(issue, where, f"'{key}' must be an integer, got {value!r}", **ids)
            raise _Skip
        return int(value)

    # ---------------------------------------------------------------------------- records

    def licenses(self, data: Mapping[str, Any]) -> dict[Any, str]:
        out: dict[Any, str] = {}
        lics = data.get("licenses") or []
        if not isinstance(lics, list):
            return out
        for lic in lics:
            if isinstance(lic, Mapping) and "id" in lic:
                text = " ".join(str(x) for x in (lic.get("name"), lic.get("url")) if x)
                out[_hashable(lic["id"])] = text or str(lic["id"])
        return out

    def image(self, i: int, img: Any, licenses: Mapping[Any, str]) -> CocoImage:
        where = f"{self.name}: images[{i}]"
        if not isinstance(img, Mapping):
            self.report(MALFORMED_IMAGE, where, "an image record must be a JSON object")
            raise _Skip
        iid = self.int_field(img, "id", where, MALFORMED_IMAGE)
        where += f" (id {iid})"
        fn = img.get("file_name")
        if fn is not None and not isinstance(fn, str):
            self.report(
                MALFORMED_IMAGE, where, f"'file_name' must be text, got {fn!r}", image_id=iid
            )
            raise _Skip
        file_name = fn if fn is not None else ""
        if (img.get("height") is None or img.get("width") is None) and self.image_root:
            h, w = self._size_from_file(where, iid, img, file_name)
        else:
            h = self.int_field(img, "height", where, MALFORMED_IMAGE, image_id=iid)
            w = self.int_field(img, "width", where, MALFORMED_IMAGE, image_id=iid)
        if h <= 0 or w <= 0:
            self.report(MALFORMED_IMAGE, where, f"non-positive size {h}x{w}", image_id=iid)
            raise _Skip
        lic = img.get("license")
        lic_text = licenses.get(_hashable(lic)) if lic is not None else None
        url = next(
            (
                _text(img.get(k))
                for k in ("coco_url", "url_image", "url", "flickr_url")
                if _text(img.get(k))
            ),
            None,
        )
        return CocoImage(
            id=iid,
            file_name=file_name,
            height=h,
            width=w,
            license=lic_text or _text(lic),
            url=url,
            extra={k: v for k, v in img.items() if k not in _IMAGE_KEYS},
        )

    def _size_from_file(
        self, where: str, iid: int, img: Mapping[str, Any], file_name: str
    ) -> tuple[int, int]:
        from entityseg_data.io.images import image_size

        if not file_name:
            self.report(MALFORMED_IMAGE, where, "no height/width and no file_name", image_id=iid)
            raise _Skip
        assert self.image_root is not None
        try:
            size = image_size(self.image_root / file_name)
        except DataError as exc:
            self.report(
                MALFORMED_IMAGE, where, f"no height/width in the JSON and {exc}", image_id=iid
            )
            raise _Skip from None
        h = img.get("height") if img.get("height") is not None else size.height
        w = img.get("width") if img.get("width") is not None else size.width
        if not _is_int(h) or not _is_int(w):
            self.report(MALFORMED_IMAGE, where, f"size must be integers, got {h!r}x{w!r}")
            raise _Skip
        return int(h or 0), int(w or 0)

    def category(self, i: int, cat: Any) -> CocoCategory:
        where = f"{self.name}: categories[{i}]"
        if not isinstance(cat, Mapping):
            self.report(MALFORMED_CATEGORY, where, "a category record must be a JSON object")
            raise _Skip
        cid = self.int_field(cat, "id", where, MALFORMED_CATEGORY)
        where += f" (id {cid})"
        name = cat.get("name")
        if not isinstance(name, str) or not name.strip():
            self.report(MALFORMED_CATEGORY, where, f"'name' must be non-empty text, got {name!r}")
            raise _Skip
        isthing = cat.get("isthing")
        if isthing is not None and (not _is_int(isthing) or int(isthing) not in (0, 1)):
            self.report(MALFORMED_CATEGORY, where, f"'isthing' must be 0 or 1, got {isthing!r}")
            raise _Skip
        sup = cat.get("supercategory")
        return CocoCategory(
            id=cid,
            name=name,
            supercategory=str(sup) if sup is not None else None,
            isthing=None if isthing is None else bool(int(isthing)),
            extra={
                k: v for k, v in cat.items() if k not in ("id", "name", "supercategory", "isthing")
            },
        )

    def _bbox(self, value: Any, where: str, **ids: Any) -> tuple[float, float, float, float] | None:
        if value is None:
            return None
        if (
            not isinstance(value, list | tuple)
            or len(value) != 4
            or not (_number(value[0]) and _number(value[1]))
            or not (_number(value[2]) and _number(value[3]))
        ):
            self.report(
                MALFORMED_ANNOTATION,
                where,
                f"'bbox' must be 4 finite numbers, got {value!r}",
                **ids,
            )
            raise _Skip
        x, y, w, h = float(value[0]), float(value[1]), float(value[2]), float(value[3])
        return (x, y, w, h)

    def _area(self, value: Any, where: str, **ids: Any) -> float | None:
        if value is None:
            return None
        if not _number(value):
            self.report(
                MALFORMED_ANNOTATION, where, f"'area' must be a finite number, got {value!r}", **ids
            )
            raise _Skip
        return float(value)

    def _crowd(self, value: Any, where: str, **ids: Any) -> bool:
        if value is None:
            return False
        if not _is_int(value) or int(value) not in (0, 1):
            self.report(
                MALFORMED_ANNOTATION, where, f"'iscrowd' must be 0 or 1, got {value!r}", **ids
            )
            raise _Skip
        return bool(int(value))

    def annotation(
        self,
        i: int,
        a: Any,
        images: Mapping[int, CocoImage],
        categories: Mapping[int, CocoCategory],
        seen_ids: set[int],
    ) -> CocoAnnotation:
        where = f"{self.name}: annotations[{i}]"
        if not isinstance(a, Mapping):
            self.report(MALFORMED_ANNOTATION, where, "an annotation must be a JSON object")
            raise _Skip
        aid = None
        if a.get("id") is not None:
            aid = self.int_field(a, "id", where, MALFORMED_ANNOTATION)
            where += f" (id {aid})"
        iid = self.int_field(a, "image_id", where, MALFORMED_ANNOTATION, annotation_id=aid)
        ids = {"image_id": iid, "annotation_id": aid}
        if aid is not None:
            if aid in seen_ids:
                self.report(DUPLICATE_ANNOTATION_ID, where, f"duplicate annotation id {aid}", **ids)
                raise _Skip
            seen_ids.add(aid)
        img = images.get(iid)
        if img is None:
            self.report(UNKNOWN_IMAGE, where, f"unknown image id {iid} (not in 'images')", **ids)
            raise _Skip
        cid = None
        if a.get("category_id") is not None:
            cid = self.int_field(a, "category_id", where, MALFORMED_ANNOTATION, **ids)
            if categories and cid not in categories:
                self.report(
                    UNKNOWN_CATEGORY, where, f"category id {cid} is not in 'categories'", **ids
                )
                raise _Skip
        iscrowd = self._crowd(a.get("iscrowd"), where, **ids)
        area = self._area(a.get("area"), where, **ids)
        bbox = self._bbox(a.get("bbox"), where, **ids)
        if "segmentation" not in a:
            self.report(MALFORMED_ANNOTATION, where, "missing 'segmentation'", **ids)
            raise _Skip
        seg = a["segmentation"]
        fmt = (
            "polygon"
            if isinstance(seg, list)
            else "uncompressed_rle"
            if isinstance(seg, Mapping) and isinstance(seg.get("counts"), list)
            else "rle"
        )
        try:
            rle = _prepare(seg, img.height, img.width)  # counts decoded later, in one batch
        except _RleSizeError as exc:
            self.report(RLE_SIZE_MISMATCH, where, str(exc), **ids)
            raise _Skip from None
        except DataError as exc:
            self.report(MALFORMED_SEGMENTATION, where, str(exc), **ids)
            raise _Skip from None
        kind = a.get("kind")
        if kind is not None and kind not in ("thing", "stuff"):
            self.report(
                MALFORMED_ANNOTATION,
                where,
                f"'kind' must be 'thing' or 'stuff', got {kind!r}",
                **ids,
            )
            raise _Skip
        if kind is None and cid is not None and cid in categories:
            kind = categories[cid].kind
        name = a.get("name")
        if not isinstance(name, str) or not name.strip():
            ori = a.get("category_id_ori")
            name = ori if isinstance(ori, str) and ori.strip() else None
        return CocoAnnotation(
            image_id=iid,
            segmentation=rle,
            id=aid,
            category_id=cid,
            iscrowd=iscrowd,
            area=area,
            bbox=bbox,
            name=name,
            format=fmt,
            kind=kind,
            extra={k: v for k, v in a.items() if k not in _ANN_KEYS},
        )

    def check_counts(
        self, anns: list[CocoAnnotation], wheres: Sequence[str]
    ) -> list[CocoAnnotation]:
        """Decode the counts of every RLE annotation in one vectorised pass (the strict
        decoder); report the corrupt ones (strict: raise) and drop them; uncompressed RLEs
        become compressed."""
        from entityseg_data.errors import RLEError
        from entityseg_data.masks import rle as rle_ops

        todo = [k for k, a in enumerate(anns) if a.format != "polygon"]
        rles = [anns[k].segmentation for k in todo]
        drop: set[int] = set()
        try:
            cs = list_counts(rles)
        except RLEError:
            cs = []
            for k in todo:
                try:
                    cs.extend(list_counts([anns[k].segmentation]))
                except RLEError as exc:
                    a = anns[k]
                    self.report(
                        MALFORMED_SEGMENTATION,
                        wheres[k],
                        str(exc),
                        image_id=a.image_id,
                        annotation_id=a.id,
                    )
                    drop.add(k)
                    cs.append(None)
        for k, c in zip(todo, cs, strict=True):
            if c is not None:  # an uncompressed RLE becomes compressed
                anns[k] = replace(
                    anns[k], segmentation=rle_ops.from_counts(c, *anns[k].segmentation["size"])
                )
        return [a for k, a in enumerate(anns) if k not in drop]

    def panoptic(
        self,
        i: int,
        a: Any,
        images: Mapping[int, CocoImage] | None,
        categories: Mapping[int, CocoCategory],
    ) -> PanopticImage:
        """One panoptic annotation; its image must be in ``images`` unless that is None."""
        where = f"{self.name}: annotations[{i}]"
        if not isinstance(a, Mapping):
            self.report(MALFORMED_ANNOTATION, where, "an annotation must be a JSON object")
            raise _Skip
        iid = self.int_field(a, "image_id", where, MALFORMED_ANNOTATION)
        where += f" (image_id {iid})"
        if images is not None and iid not in images:
            self.report(
                UNKNOWN_IMAGE, where, f"unknown image id {iid} (not in 'images')", image_id=iid
            )
            raise _Skip
        fn = a.get("file_name")
        if not isinstance(fn, str) or not fn:
            self.report(
                MALFORMED_ANNOTATION,
                where,
                "a panoptic annotation needs a PNG 'file_name'",
                image_id=iid,
            )
            raise _Skip
        infos = a.get("segments_info")
        if not isinstance(infos, list):
            self.report(MALFORMED_ANNOTATION, where, "'segments_info' must be a list", image_id=iid)
            raise _Skip
        segs: list[PanopticSegment] = []
        seen: set[int] = set()
        for k, s in enumerate(infos):
            sw = f"{where} segments_info[{k}]"
            if not isinstance(s, Mapping):
                self.report(
                    MALFORMED_ANNOTATION, sw, "a segment must be a JSON object", image_id=iid
                )
                raise _Skip
            sid = self.int_field(s, "id", sw, MALFORMED_ANNOTATION, image_id=iid)
            cid = self.int_field(s, "category_id", sw, MALFORMED_ANNOTATION, image_id=iid)
            if sid <= 0 or sid >= 256**3:
                self.report(
                    MALFORMED_ANNOTATION, sw, f"segment id {sid} is not in 1..2^24-1", image_id=iid
                )
                raise _Skip
            if sid in seen:
                self.report(MALFORMED_ANNOTATION, sw, f"duplicate segment id {sid}", image_id=iid)
                raise _Skip
            seen.add(sid)
            if categories and cid not in categories:
                self.report(
                    UNKNOWN_CATEGORY, sw, f"category id {cid} is not in 'categories'", image_id=iid
                )
                raise _Skip
            segs.append(
                PanopticSegment(
                    id=sid,
                    category_id=cid,
                    iscrowd=self._crowd(s.get("iscrowd"), sw, image_id=iid),
                    area=self._area(s.get("area"), sw, image_id=iid),
                    bbox=self._bbox(s.get("bbox"), sw, image_id=iid),
                )
            )
        return PanopticImage(image_id=iid, file_name=fn, segments=tuple(segs))


_CHUNK = 2048  # RLEs decoded per vectorised pass, at most
_CHUNK_CHARS = 1 << 20  # and counts-string characters per pass (~64 bytes each while decoding)


def list_counts(rles: Sequence[Mapping[str, Any]]) -> list[np.ndarray | None]:
    """Validate the counts of every RLE with the strict decoder (RLEError as
    :func:`entityseg_data.masks.rle.counts_many`), in vectorised passes of at most ``_CHUNK``
    RLEs and ``_CHUNK_CHARS`` string characters, so the decoder's peak is bounded by the pass,
    not the file. Returns the counts of the uncompressed (list) RLEs, which the caller turns into
    strings, and None for the compressed ones: their counts are not kept (all of them at once
    would be several times the size of a file of 12 MP masks)."""
    from entityseg_data.masks import rle as rle_ops

    out: list[np.ndarray | None] = []
    start = 0
    while start < len(rles):
        end, chars = start, 0
        while end < len(rles) and end - start < _CHUNK and (end == start or chars < _CHUNK_CHARS):
            c = rles[end].get("counts")
            chars += len(c) if isinstance(c, str | bytes) else 0
            end += 1
        chunk = rles[start:end]
        for r, c in zip(chunk, rle_ops.counts_many(chunk), strict=True):
            out.append(c if isinstance(r.get("counts"), list) else None)
        start = end
    return out


class _Skip(Exception):
    """The current record is dropped (its problem was reported)."""


class _RleSizeError(DataError):
    pass


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _prepare(segmentation: Any, height: int, width: int) -> RLE:
    """Checks that need no decoding, and polygons rasterised: a compressed-or-list RLE dict
    ``{"size": [H, W], "counts": str | list}`` whose counts still need :func:`_decode_counts`
    (polygons come back validated). Raises DataError / _RleSizeError."""
    from entityseg_data.errors import RLEError
    from entityseg_data.masks import rle as rle_ops

    if isinstance(segmentation, Mapping):
        try:
            rh, rw = rle_ops.size(segmentation)
        except RLEError as exc:
            raise DataError(str(exc)) from None
        if (rh, rw) != (int(height), int(width)):
            raise _RleSizeError(f"RLE size {rh}x{rw} differs from the image size {height}x{width}")
        counts = segmentation.get("counts")
        if isinstance(counts, bytes):
            try:
                counts = counts.decode("ascii")
            except UnicodeDecodeError:
                raise DataError(
                    "RLE counts string has characters outside the COCO alphabet"
                ) from None
        if not isinstance(counts, str | list):
            raise DataError(f"RLE counts must be a string or a list, got {type(counts).__name__}")
        return {"size": [rh, rw], "counts": counts}
    if isinstance(segmentation, list):
        return rle_ops.polygons_to_rle(segmentation, int(height), int(width))
    raise DataError(f"unsupported segmentation of type {type(segmentation).__name__}")


def checked_rles(items: Sequence[tuple[Any, int, int]]) -> list[RLE | DataError]:
    """:func:`checked_rle` of many ``(segmentation, height, width)``, the counts strings decoded
    in bounded vectorised passes (:func:`list_counts`, the strict decoder);
    each result is the compressed RLE or the DataError of that item."""
    from entityseg_data.errors import RLEError
    from entityseg_data.masks import rle as rle_ops

    out: list[RLE | DataError] = []
    todo: list[int] = []
    rles: list[RLE] = []  # out[todo[k]] is rles[k]
    for seg, h, w in items:
        try:
            rle = _prepare(seg, h, w)
        except DataError as exc:
            out.append(exc)
            continue
        out.append(rle)
        todo.append(len(out) - 1)
        rles.append(rle)
    try:
        cs = list_counts(rles)
    except RLEError:  # find which (only when something is wrong)
        cs = []
        for i, rle in zip(todo, rles):
            try:
                cs.extend(list_counts([rle]))
            except RLEError as exc:
                out[i] = DataError(str(exc))
                cs.append(None)
    for i, c in zip(todo, cs, strict=True):
        r = out[i]
        if c is not None and isinstance(r, dict):  # an uncompressed RLE becomes compressed
            out[i] = rle_ops.from_counts(c, r["size"][0], r["size"][1])
    return out


def checked_rle(segmentation: Any, height: int, width: int) -> RLE:
    """A compressed RLE of ``segmentation`` (compressed RLE, uncompressed RLE or polygons)
    checked against the image size ``height x width`` by the strict decoder
    (:mod:`entityseg_data.masks.rle`): the RLE's ``size`` must be the image's, the counts string
    in the COCO alphabet and complete, the runs covering exactly ``height * width`` pixels.
    Raises DataError (an RLE size mismatch as a subclass); the caller adds file and record."""
    (res,) = checked_rles([(segmentation, height, width)])
    if isinstance(res, DataError):
        raise res
    return res


# --------------------------------------------------------------------------------------------
# entry points


def read_coco(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    strict: bool = True,
    what: str = "COCO annotations",
    image_root: str | os.PathLike[str] | None = None,
    require_annotations: bool = False,
    name: str | None = None,
) -> CocoDataset:
    """Read and validate a COCO instances / EntitySeg / COCO panoptic JSON (a path or a parsed
    dict). See the module docstring for what is checked and the two policies.

    ``image_root``: folder of the ``file_name`` entries, used only to read the size of images
    whose record lacks ``height``/``width``. ``require_annotations``: the file must have an
    ``annotations`` list. ``name``: how messages name a dict source (default ``<what>``)."""
    data, default_name = json_source(source, what)
    name = name or default_name
    rd = _Reader(name, strict, Path(image_root) if image_root is not None else None)
    if not isinstance(data, Mapping):
        kind = "a JSON list" if isinstance(data, list) else f"JSON {type(data).__name__}"
        raise DataError(f"{name}: not a COCO file ({kind}; expected an object with 'images')")
    if not isinstance(data.get("images"), list):
        raise DataError(f"{name}: not a COCO file (needs an 'images' list)")
    _check_lists(data, name)
    if require_annotations and not isinstance(data.get("annotations"), list):
        raise DataError(f"{name}: missing 'annotations' list (not a COCO annotation file)")
    categories = _categories(rd, data, name)
    images = _images(rd, data, name)
    raw_anns = data.get("annotations") or []
    if any(isinstance(a, Mapping) and "segments_info" in a for a in raw_anns):
        return _dataset(
            rd, data, images, categories, panoptic=_panoptic(rd, raw_anns, images, categories)
        )
    anns: list[CocoAnnotation] = []
    seen: set[int] = set()
    ann_where: list[str] = []
    for i, a in enumerate(raw_anns):
        try:
            anns.append(rd.annotation(i, a, images, categories, seen))
        except _Skip:
            continue
        ann_where.append(
            f"{name}: annotations[{i}]"
            + (f" (id {anns[-1].id})" if anns[-1].id is not None else "")
        )
    return _dataset(rd, data, images, categories, annotations=rd.check_counts(anns, ann_where))


def read_panoptic(
    source: str | os.PathLike[str] | Mapping[str, Any], *, what: str = "COCO panoptic annotations"
) -> CocoDataset:
    """Read and validate a COCO panoptic JSON, ground truth or predictions (strict): the
    ``annotations`` list of ``{"image_id", "file_name", "segments_info"}``, one per image,
    checked as :func:`read_coco` checks them. ``images`` and ``categories`` are read and checked
    when the file has them (then every annotation's image must be listed and every segment's
    category); panopticapi needs neither in a predictions file, nor ``images`` in a ground
    truth.

    Raises:
        DataError: the first problem, naming the file and the record.
    """
    data, name = json_source(source, what)
    if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{name}: not a COCO panoptic file (needs an 'annotations' list)")
    _check_lists(data, name)
    rd = _Reader(name, True, None)
    categories = _categories(rd, data, name)
    images = _images(rd, data, name) if data.get("images") is not None else None
    panoptic = _panoptic(rd, data["annotations"], images, categories)
    return _dataset(rd, data, images or {}, categories, panoptic=panoptic)


def _check_lists(data: Mapping[str, Any], name: str) -> None:
    for key in ("images", "annotations", "categories", "licenses"):
        if key in data and data[key] is not None and not isinstance(data[key], list):
            raise DataError(f"{name}: '{key}' must be a list")


def _categories(rd: _Reader, data: Mapping[str, Any], name: str) -> dict[int, CocoCategory]:
    categories: dict[int, CocoCategory] = {}
    for i, c in enumerate(data.get("categories") or []):
        try:
            cat = rd.category(i, c)
        except _Skip:
            continue
        where = f"{name}: categories[{i}]"
        if not rd.repeated(
            cat.id, categories, DUPLICATE_CATEGORY_ID, where, "duplicate category id"
        ):
            categories[cat.id] = cat
    return categories


def _images(rd: _Reader, data: Mapping[str, Any], name: str) -> dict[int, CocoImage]:
    licenses = rd.licenses(data)
    images: dict[int, CocoImage] = {}
    for i, img in enumerate(data.get("images") or []):
        try:
            im = rd.image(i, img, licenses)
        except _Skip:
            continue
        where = f"{name}: images[{i}]"
        what = "duplicate image id"
        if not rd.repeated(im.id, images, DUPLICATE_IMAGE_ID, where, what, image_id=im.id):
            images[im.id] = im
    return images


def _panoptic(
    rd: _Reader,
    raw_anns: Sequence[Any],
    images: Mapping[int, CocoImage] | None,
    categories: Mapping[int, CocoCategory],
) -> list[PanopticImage]:
    panoptic: list[PanopticImage] = []
    seen: set[int] = set()
    for i, a in enumerate(raw_anns):
        try:
            p = rd.panoptic(i, a, images, categories)
        except _Skip:
            continue
        where = f"{rd.name}: annotations[{i}]"
        what = "a second panoptic annotation of image"
        if not rd.repeated(
            p.image_id, seen, MALFORMED_ANNOTATION, where, what, image_id=p.image_id
        ):
            seen.add(p.image_id)
            panoptic.append(p)
    return panoptic


def _dataset(
    rd: _Reader,
    data: Mapping[str, Any],
    images: Mapping[int, CocoImage],
    categories: Mapping[int, CocoCategory],
    *,
    annotations: Sequence[CocoAnnotation] = (),
    panoptic: Sequence[PanopticImage] = (),
) -> CocoDataset:
    info = data.get("info")
    return CocoDataset(
        source=rd.name,
        images=tuple(images.values()),
        annotations=tuple(annotations),
        categories=tuple(categories.values()),
        panoptic=tuple(panoptic),
        info=dict(info) if isinstance(info, Mapping) else {},
        licenses=tuple(x for x in (data.get("licenses") or []) if isinstance(x, Mapping)),
        problems=tuple(rd.problems),
        extra={k: v for k, v in data.items() if k not in _TOP_KEYS},
    )


_TOP_KEYS = ("images", "annotations", "categories", "info", "licenses")


def as_dataset(
    source: CocoDataset | str | os.PathLike[str] | Mapping[str, Any], **read: Any
) -> CocoDataset:
    """``source`` itself when it is a :class:`CocoDataset` (already read), else
    :func:`read_coco` ``(source, **read)``: how a public function that takes records also
    takes a path or a parsed dict, read once at the boundary."""
    if isinstance(source, CocoDataset):
        return source
    return read_coco(source, **read)


_RESULT_KEYS = ("image_id", "segmentation", "score")


def checked_score(value: Any, where: str) -> float:
    """A detection score as float: a finite number (not a bool); else DataError naming
    ``where``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: 'score' must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DataError(f"{where}: score is {value} (must be finite)")
    return float(value)


def read_results(
    source: str | os.PathLike[str] | Sequence[Any] | Mapping[str, Any],
    images: Mapping[int, tuple[int, int]],
    *,
    categories: Collection[int] | None = None,
    what: str = "predictions",
) -> tuple[CocoResult, ...]:
    """Read and validate a COCO results file (strict): a list of ``{"image_id",
    "segmentation", "score"}`` records (or an object with that list under ``annotations``),
    as a path or already parsed, against the images it predicts.

    ``images``: ``{image id: (height, width)}`` of the ground truth; every result's image must
    be one of them and its segmentation (compressed RLE, uncompressed RLE or polygons) is
    checked against that size by the strict decoder (all counts strings in one vectorised
    pass). ``categories``: the ground truth's category ids for a class-aware evaluation: every
    result then needs a ``category_id`` among them; without it ``category_id`` is kept when it
    is an integer and otherwise ignored (class-agnostic), as is ``bbox``. Scores must be finite
    numbers.

    Raises:
        DataError: the first problem, naming the file and the record (``prediction [i]
        (image_id N)``).
    """
    data, name = json_source(source, what)
    if isinstance(data, Mapping) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise DataError(f"{name}: predictions must be a list of results (COCO results format)")
    keys = _RESULT_KEYS if categories is None else ("image_id", "category_id", *_RESULT_KEYS[1:])
    needs = ", ".join(f"'{k}'" for k in keys[:-1]) + f" and '{keys[-1]}'"
    heads: list[tuple[int, int | None, float]] = []
    items: list[tuple[Any, int, int]] = []
    wheres: list[str] = []
    for i, rec in enumerate(data):
        where = f"{name}: prediction [{i}]"
        if not isinstance(rec, Mapping):
            raise DataError(f"{where}: not an object")
        missing = [k for k in keys if k not in rec]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)} (a result needs {needs})")
        iid = rec["image_id"]
        if not _is_int(iid):
            raise DataError(f"{where}: 'image_id' must be an integer, got {iid!r}")
        iid = int(iid)
        where += f" (image_id {iid})"
        if iid not in images:
            raise DataError(f"{where}: unknown image id {iid} (not in the ground truth)")
        raw_cid = rec.get("category_id")
        cid = int(raw_cid) if raw_cid is not None and _is_int(raw_cid) else None
        if categories is not None and (cid is None or cid not in categories):
            raise DataError(f"{where}: category id {raw_cid!r} is not a GT category")
        score = checked_score(rec["score"], where)
        h, w = images[iid]
        heads.append((iid, cid, score))
        items.append((rec["segmentation"], h, w))
        wheres.append(where)
    out = []
    for rle, where, (iid, cid, score) in zip(checked_rles(items), wheres, heads, strict=True):
        if isinstance(rle, DataError):
            raise DataError(f"{where}: {rle}")
        out.append(CocoResult(image_id=iid, segmentation=rle, score=score, category_id=cid))
    return tuple(out)


def workspace_coco(
    workspace: Workspace, *, stage: int = 1, statuses: tuple[str, ...] | None = ("approved",)
) -> dict[str, Any]:
    """The COCO dict of a workspace's annotations of ``stage`` (the approved ones by default),
    stage-1 masks carrying each entity's stage-2 name (matched by image id and entity id) when
    stage 2 has one (and its ``kind`` when stage 1 has none). Image ``file_name`` s are relative
    to the workspace root."""
    from entityseg_data.masks.store import workspace_to_coco

    coco = workspace_to_coco(workspace, stage=stage, statuses=statuses)
    if stage == 1:
        named = workspace_to_coco(workspace, stage=2, statuses=statuses)
        by_key = {(a["image_id"], a["entity_id"]): a for a in named["annotations"]}
        for a in coco["annotations"]:
            two = by_key.get((a["image_id"], a["entity_id"]), {})
            a["name"] = two.get("name", a.get("name"))
            if a.get("kind") is None and two.get("kind") is not None:
                a["kind"] = two["kind"]
    return coco


def panoptic_ids(rgb: np.ndarray) -> np.ndarray:
    """int64 segment ids ``R + 256 G + 256^2 B`` of uint8 RGB pixels ``(..., 3)`` (a panoptic
    PNG's (H, W, 3) array, or a stripe of it): (H, W) or the leading shape."""
    a = np.asarray(rgb).astype(np.uint32)
    return (a[..., 0] | (a[..., 1] << 8) | (a[..., 2] << 16)).astype(np.int64)


def read_panoptic_png(
    path: str | os.PathLike[str], height: int | None = None, width: int | None = None
) -> np.ndarray:
    """(H, W) int64 segment ids of a COCO panoptic PNG (RGB, ``id = R + 256 G + 256^2 B``);
    the size must be ``height x width`` when given. Raises DataError naming the file."""
    from entityseg_data.io.images import read_label_array

    ids = panoptic_ids(read_label_array(path, "panoptic PNG", modes=("RGB", "RGBA")))
    if height is not None and width is not None and ids.shape != (int(height), int(width)):
        raise DataError(
            f"{path}: PNG is {ids.shape[0]}x{ids.shape[1]}, the image is {height}x{width}"
        )
    return ids


def group_by_image(anns: Iterable[CocoAnnotation]) -> dict[int, list[CocoAnnotation]]:
    """Annotations by image id, in order."""
    out: dict[int, list[CocoAnnotation]] = defaultdict(list)
    for a in anns:
        out[a.image_id].append(a)
    return dict(out)


def raise_first(problems: Sequence[Problem], issues: Iterable[str] | None = None) -> None:
    """Raise DataError for the first problem (of one of ``issues`` when given)."""
    keep = set(issues) if issues is not None else None
    for p in problems:
        if keep is None or p.issue in keep:
            raise DataError(str(p))


__all__ = [
    "STRUCTURAL_ISSUES",
    "CocoAnnotation",
    "CocoCategory",
    "CocoDataset",
    "CocoImage",
    "CocoResult",
    "PanopticImage",
    "PanopticSegment",
    "Problem",
    "as_dataset",
    "checked_rle",
    "checked_score",
    "group_by_image",
    "panoptic_ids",
    "raise_first",
    "read_coco",
    "read_panoptic",
    "read_panoptic_png",
    "read_results",
    "workspace_coco",
]
