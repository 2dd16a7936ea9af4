"""Pre-annotations carried over from a source's own masks (COCO instances / panoptic, ADE20K,
label maps).

A payload is written to ``predictions/<model_version>/<image_id>.json`` as::

    {"image_id": catalog_id, "height": H, "width": W,
     "entities": [{"id": k, "segmentation": <compressed COCO RLE>, "score": 1.0, "name": str,
                   "kind": "thing" | "stuff", "category_id": int, "iscrowd": 1}]}

(``name``, ``kind``, ``category_id`` and ``iscrowd`` only when the source says so)
in the upright (EXIF-applied) geometry of the stored image, with non-overlapping masks (stage 1
wants one entity per pixel). A row in the catalog ``predictions`` table points to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.io.images import orient_array
from entityseg_data.masks import rle as rle_ops
from entityseg_data.masks.runs import OverlapPolicy

_FIELDS = ("name", "kind", "category_id", "iscrowd")


@dataclass(frozen=True)
class PreAnnotation:
    """Entities of one image in upright geometry. ``entities`` as in the module docstring
    (without ``image_id``, which the pipeline adds once the catalog id is known)."""

    model_version: str
    height: int
    width: int
    entities: list[dict[str, Any]]

    def payload(self, image_id: int) -> dict[str, Any]:
        return {
            "image_id": image_id,
            "height": self.height,
            "width": self.width,
            "entities": self.entities,
        }


def label_map_from_rles(
    rles: Sequence[dict[str, Any]], height: int, width: int, *, overlaps: str = "smaller_wins"
) -> np.ndarray:
    """Non-overlapping (H, W) int32 label map: entity ``i+1`` for ``rles[i]``.

    Where masks overlap, ``smaller_wins`` (default) paints the smaller one last, so small
    objects lying on large ones survive; ``later_wins`` paints in the given order."""
    if overlaps not in ("smaller_wins", "later_wins"):
        raise ValueError(f"unknown overlap policy {overlaps!r}")
    policy: OverlapPolicy = "smaller_wins" if overlaps == "smaller_wins" else "later_wins"
    return rle_ops.rles_to_label_map(rles, height, width, dtype=np.int32, policy=policy)


def build(
    label_map: np.ndarray,
    names: Sequence[str | Mapping[str, Any] | None],
    *,
    ann_height: int,
    ann_width: int,
    raw_height: int,
    raw_width: int,
    orientation: int,
    model_version: str,
) -> PreAnnotation:
    """Entities of ``label_map`` (ids 1..len(names), annotated at ``ann_height x ann_width``)
    brought into the upright geometry of the stored image. ``names[i-1]`` describes label i: a
    name, or a mapping of entity fields (``name``, ``kind``, ``category_id``, ``iscrowd``).

    When the annotation size equals the raw (pre-EXIF) pixel size the EXIF orientation is
    applied to the masks as well; when it already equals the upright size it is kept.
    Raises DataError for any other size."""
    swaps = orientation in (5, 6, 7, 8)
    upright = (raw_width, raw_height) if swaps else (raw_height, raw_width)
    if (ann_height, ann_width) == (raw_height, raw_width):
        lm = orient_array(label_map, orientation)
    elif (ann_height, ann_width) == upright:
        lm = label_map
    else:
        raise DataError(
            f"annotation size {ann_height}x{ann_width} does not match the image "
            f"({raw_height}x{raw_width}, EXIF orientation {orientation})"
        )
    rles = rle_ops.label_map_to_rles(np.ascontiguousarray(lm))
    entities = []
    for k, (i, r) in enumerate(sorted(rles.items()), start=1):
        ent: dict[str, Any] = {"id": k, "segmentation": r, "score": 1.0}
        info = names[i - 1] if 0 < i <= len(names) else None
        if isinstance(info, Mapping):
            ent.update({key: v for key, v in info.items() if v is not None and key in _FIELDS})
        elif info:
            ent["name"] = info
        entities.append(ent)
    return PreAnnotation(
        model_version=model_version, height=upright[0], width=upright[1], entities=entities
    )


def from_label_map(
    label_map: np.ndarray,
    infos: Sequence[str | Mapping[str, Any] | None],
    raw_height: int,
    raw_width: int,
    orientation: int,
    *,
    model_version: str,
) -> PreAnnotation:
    """:func:`build` for a label map annotated at its own size (H, W) = ``label_map.shape``."""
    return build(
        label_map,
        infos,
        ann_height=label_map.shape[0],
        ann_width=label_map.shape[1],
        raw_height=raw_height,
        raw_width=raw_width,
        orientation=orientation,
        model_version=model_version,
    )
