"""Typed entity masks shared by annotations and predictions, and the ``Segmenter`` protocol.

An :class:`Entity` is one mask of one image with what is known about it; an
:class:`ImageMasks` is all entities of one image. Masks are compressed COCO RLEs of the image
size (see :mod:`entityseg_data.masks.rle`); sizes are in pixels, boxes ``(x, y, w, h)`` in pixels
(COCO convention). COCO annotation dicts appear only at the boundary
(:meth:`Entity.to_coco` / :meth:`Entity.from_coco`, :meth:`ImageMasks.from_coco`).

Stages that need a model take a :class:`Segmenter` (an RGB image in, :class:`ImageMasks` out),
so they never import ``entityseg_data.model``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np

from entityseg_data.errors import DataError, RLEError
from entityseg_data.masks import rle as rle_ops
from entityseg_data.masks import runs as R
from entityseg_data.masks.rle import RLE
from entityseg_data.masks.runs import OverlapPolicy, OverlapRule

Kind = Literal["thing", "stuff"]
#: an entity's id: a COCO annotation id or model index (int), a Label Studio region id (str).
#: Annotation files and the annotation stage use strings (``Entity.from_json`` makes them so).
EntityId: TypeAlias = int | str
KINDS: tuple[str, ...] = ("thing", "stuff")

#: COCO keys :meth:`Entity.from_coco` turns into fields (the rest goes to ``extra``).
_COCO_KEYS = frozenset(
    {
        "id",
        "image_id",
        "segmentation",
        "score",
        "name",
        "category_id",
        "kind",
        "isthing",
        "flags",
        "iscrowd",
        "area",
        "bbox",
    }
)


@dataclass(frozen=True)
class Entity:
    """One entity mask of one image.

    Attributes:
        id: the entity's id (COCO annotation id, Label Studio region id, or 1..N for a
            model's entities).
        rle: compressed COCO RLE ``{"size": [H, W], "counts": str}`` of the image size.
        score: confidence in [0, 1] for predictions; None for human annotations.
        name: free-form (stage-2) name, or None.
        category_id: COCO category id, or None (class-agnostic).
        kind: ``"thing"`` / ``"stuff"``, or None when unknown.
        flags: markers such as ``"crowd"`` (COCO ``iscrowd``), ``"blurred"``, ``"unknown"``.
        origin: where the mask came from in a workspace (``"prediction"``, ``"annotation"``,
            a source name...), or None.
        extra: other COCO keys carried through unchanged (e.g. ``predicted_iou``).

    The workspace's annotation files (:mod:`entityseg_data.masks.store`) hold these too
    (:meth:`to_json` / :meth:`from_json`), so annotations and predictions share one type.
    """

    id: EntityId
    rle: RLE
    score: float | None = None
    name: str | None = None
    category_id: int | None = None
    kind: Kind | None = None
    flags: tuple[str, ...] = ()
    origin: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def segmentation(self) -> RLE:
        """The mask under its COCO / annotation-file name (same object as :attr:`rle`)."""
        return self.rle

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the mask in pixels."""
        return rle_ops.size(self.rle)

    @cached_property
    def area(self) -> int:
        """Pixels inside the mask."""
        return rle_ops.area(self.rle, where=f"entity {self.id}")

    @cached_property
    def bbox(self) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` in pixels; zeros for an empty mask."""
        h, _ = self.size
        return R.bbox_colmajor(rle_ops.runs(self.rle, where=f"entity {self.id}"), h)

    @property
    def iscrowd(self) -> bool:
        return "crowd" in self.flags

    def mask(self) -> np.ndarray:
        """(H, W) uint8 mask (0/1)."""
        return rle_ops.decode(self.rle, where=f"entity {self.id}")

    def to_coco(
        self, image_id: int | str | None, *, ann_id: int | str | None = None
    ) -> dict[str, Any]:
        """A COCO annotation dict: ``id``, ``image_id``, ``segmentation``, ``area``, ``bbox``,
        ``iscrowd``, plus ``category_id``/``score``/``name``/``kind``/``flags`` when set and the
        ``extra`` keys."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            {
                "id": self.id if ann_id is None else ann_id,
                "image_id": image_id,
                "segmentation": self.rle,
                "area": self.area,
                "bbox": [float(v) for v in self.bbox],
                "iscrowd": int(self.iscrowd),
            }
        )
        if self.category_id is not None:
            out["category_id"] = self.category_id
        if self.score is not None:
            out["score"] = self.score
        if self.name is not None:
            out["name"] = self.name
        if self.kind is not None:
            out["kind"] = self.kind
        other = tuple(f for f in self.flags if f != "crowd")
        if other:
            out["flags"] = list(other)
        return out

    def to_json(self) -> dict[str, Any]:
        """The entity record of a workspace annotation file: ``id``, ``segmentation`` and the
        fields that are set (``name``, ``score``, ``origin``, ``kind``, ``category_id``,
        ``flags``)."""
        out: dict[str, Any] = {"id": self.id, "segmentation": self.rle}
        for key in ("name", "score", "origin", "kind", "category_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.flags:
            out["flags"] = list(self.flags)
        return out

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], height: int, width: int, *, index: int = 0, where: str = ""
    ) -> Entity:
        """An entity of a workspace annotation / prediction file (``segmentation`` strictly
        checked against (height, width); ``id`` defaults to ``index``)."""
        if not isinstance(data, Mapping) or "segmentation" not in data:
            raise DataError(f"{where or 'entity'}: an entity needs a 'segmentation'")
        segm = data["segmentation"]
        if isinstance(segm, Mapping):
            seg = rle_ops.validate(segm, height, width, where=where)
        else:
            seg = rle_ops.to_compressed(segm, height, width, where=where)
        kind = data.get("kind")
        if kind is not None and kind not in KINDS:
            raise DataError(f"{where or 'entity'}: 'kind' must be 'thing' or 'stuff', got {kind!r}")
        score = data.get("score")
        cat = data.get("category_id")
        return cls(
            id=str(data.get("id", index)),
            rle=seg,
            score=None if score is None else float(score),
            name=data.get("name"),
            category_id=None if cat is None else int(cat),
            kind=kind,
            flags=tuple(str(f) for f in data.get("flags") or ()),
            origin=data.get("origin"),
        )

    @classmethod
    def from_coco(
        cls, ann: Mapping[str, Any], height: int, width: int, *, where: str = ""
    ) -> Entity:
        """An entity from a COCO annotation (compressed/uncompressed RLE or polygons) of an
        image of (height, width); the mask is strictly validated.

        Raises:
            RLEError / DataError: naming ``where`` (see
            :func:`~entityseg_data.masks.rle.record_name`).
        """
        if not isinstance(ann, Mapping):
            raise DataError(f"{where or 'annotation'}: an annotation must be a dict")
        if "segmentation" not in ann or ann["segmentation"] is None:
            raise DataError(f"{where or 'annotation'}: no segmentation")
        segm = ann["segmentation"]
        if isinstance(segm, Mapping):  # the size is checked before the counts
            seg = rle_ops.validate(segm, height, width, where=where)
        else:
            seg = rle_ops.to_compressed(segm, height, width, where=where)
        score = ann.get("score")
        if score is not None:
            try:
                score = float(score)
            except (TypeError, ValueError):
                raise DataError(f"{where or 'annotation'}: 'score' must be a number") from None
        kind = ann.get("kind")
        if kind is None and "isthing" in ann:
            kind = "thing" if ann["isthing"] else "stuff"
        if kind is not None and kind not in KINDS:
            raise DataError(f"{where or 'annotation'}: 'kind' must be thing or stuff, got {kind!r}")
        flags = [str(f) for f in ann.get("flags") or ()]
        if ann.get("iscrowd"):
            flags.insert(0, "crowd")
        cat = ann.get("category_id")
        return cls(
            id=ann.get("id", 0),
            rle=seg,
            score=score,
            name=ann.get("name"),
            category_id=None if cat is None else int(cat),
            kind=kind,
            flags=tuple(dict.fromkeys(flags)),
            extra={k: v for k, v in ann.items() if k not in _COCO_KEYS},
        )


@dataclass(frozen=True)
class ImageMasks:
    """All entity masks of one image (annotations or predictions).

    Attributes:
        image_id: the image's id (catalog or COCO id), or None.
        height, width: image size in pixels; every entity's RLE has this size.
        entities: in order (a label map gives entity ``i`` the value ``i + 1``).
    """

    image_id: int | str | None
    height: int
    width: int
    entities: tuple[Entity, ...] = ()

    def __post_init__(self) -> None:
        for e in self.entities:
            rle_ops.check_size(e.rle, self.height, self.width, where=f"entity {e.id}")

    def __len__(self) -> int:
        return len(self.entities)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities)

    @property
    def rles(self) -> list[RLE]:
        return [e.rle for e in self.entities]

    def areas(self) -> np.ndarray:
        """(N,) int64 pixels per entity."""
        return rle_ops.areas(self.rles)

    def overlap_pixels(self) -> int:
        """Pixels covered by more than one entity (a pixel in k masks counts k - 1)."""
        return rle_ops.overlap_pixels(self.rles)

    def label_map(
        self, policy: OverlapPolicy | OverlapRule = "reject", dtype: Any = None
    ) -> np.ndarray:
        """(H, W) label map: entity ``i`` (position in ``entities``) has value ``i + 1``, 0 = none.

        ``policy`` decides overlaps (``"reject"`` raises
        :class:`~entityseg_data.errors.OverlapError`; see
        :func:`entityseg_data.masks.runs.paint`). dtype: uint16 by default (uint32 above 65535
        entities)."""
        return rle_ops.rles_to_label_map(
            self.rles,
            self.height,
            self.width,
            dtype=dtype,
            policy=policy,
            where=f"image {self.image_id}" if self.image_id is not None else "",
        )

    @classmethod
    def from_label_map(
        cls,
        label_map: np.ndarray,
        *,
        image_id: int | str | None = None,
        ids: Sequence[int] | None = None,
        scores: Sequence[float] | np.ndarray | None = None,
        names: Sequence[str | None] | None = None,
        category_ids: Sequence[int | None] | None = None,
    ) -> ImageMasks:
        """Entities of an (H, W) integer label map (0 = none): one per value in ``ids``
        (default: every nonzero value present, ascending), entity id = the value; ``scores`` /
        ``names`` / ``category_ids`` are given per entity in ``ids`` order. One pass over the
        map (:func:`~entityseg_data.masks.rle.label_map_to_rles`)."""
        if label_map.ndim != 2:
            raise DataError(f"label map must be (H, W), got shape {label_map.shape}")
        by_id = rle_ops.label_map_to_rles(label_map, ids)
        order = list(by_id) if ids is None else [int(i) for i in ids]
        for name, seq in (("scores", scores), ("names", names), ("category_ids", category_ids)):
            if seq is not None and len(seq) != len(order):
                raise DataError(f"{len(order)} entities but {len(seq)} {name}")
        ents = tuple(
            Entity(
                id=i,
                rle=by_id[i],
                score=None if scores is None else float(scores[k]),
                name=None if names is None else names[k],
                category_id=None if category_ids is None else category_ids[k],
            )
            for k, i in enumerate(order)
        )
        h, w = label_map.shape
        return cls(image_id=image_id, height=int(h), width=int(w), entities=ents)

    def to_coco(self, *, first_id: int | None = None) -> list[dict[str, Any]]:
        """COCO annotation dicts of the entities (ids kept, or numbered from ``first_id``)."""
        return [
            e.to_coco(self.image_id, ann_id=None if first_id is None else first_id + k)
            for k, e in enumerate(self.entities)
        ]

    @classmethod
    def from_coco(
        cls,
        image: Mapping[str, Any],
        annotations: Sequence[Mapping[str, Any]],
        *,
        file: str | None = None,
        errors: list[DataError] | None = None,
    ) -> ImageMasks:
        """Entities of one COCO image record (``id``, ``height``, ``width``) and its annotations.

        A bad annotation (corrupt or mis-sized RLE, no segmentation...) raises, naming the file,
        image id and annotation id; when ``errors`` is a list it is appended there instead and
        the annotation is skipped (the image is kept)."""
        image_id = image.get("id")
        where_img = rle_ops.record_name(file, image_id)
        try:
            h, w = image["height"], image["width"]
        except (KeyError, TypeError):
            raise DataError(f"{where_img}: image record needs 'height' and 'width'") from None
        if type(h) is not int or type(w) is not int or h <= 0 or w <= 0:
            raise DataError(
                f"{where_img}: 'height' and 'width' must be positive integers, got {h!r}, {w!r}"
            )
        ents = []
        for k, ann in enumerate(annotations):
            aid = ann.get("id") if isinstance(ann, Mapping) else None
            where = rle_ops.record_name(file, image_id, aid, index=k)
            try:
                ents.append(Entity.from_coco(ann, h, w, where=where))
            except (RLEError, DataError) as exc:
                if errors is None:
                    raise
                errors.append(exc)
        return cls(image_id=image_id, height=h, width=w, entities=tuple(ents))


@runtime_checkable
class Segmenter(Protocol):
    """Anything that finds the entities of an image (a model, a SAM wrapper, a fake in tests).

    ``segment(image)``: ``image`` is an (H, W, 3) uint8 RGB array (upright, EXIF applied); the
    result's ``height``/``width`` are H and W and its entities carry scores.
    ``model_version`` names the model for prediction records.
    """

    @property
    def model_version(self) -> str: ...

    def segment(self, image: np.ndarray) -> ImageMasks: ...


__all__ = ["KINDS", "Entity", "ImageMasks", "Kind", "RLE", "Segmenter"]
