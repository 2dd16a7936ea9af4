"""Label Studio JSON <-> the toolkit's annotation files.

Writing (push): a COCO RLE becomes a brush result with ``original_width``/``original_height``
equal to the image size and ``image_rotation`` 0.

Reading (pull, and any Label Studio JSON export) is core data I/O,
:mod:`entityseg_data.io.labelstudio` (evaluation reads exports through it too); its names are
re-exported here for the adapter's callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from entityseg_data.annotation.labelstudio import configs
from entityseg_data.errors import DataError
from entityseg_data.io.labelstudio import (
    GEOMETRY_TYPES,
    Region,
    annotation_from_ls,
    annotator_name,
    latest_annotations,
    ls_export_to_annotations,
    parse_results,
    polygon_mask,
    regions_to_entities,
    task_image,
)
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.brush import brush_result as core_brush_result
from entityseg_data.masks.brush import brush_rles_of_rles, encode_brush
from entityseg_data.masks.store import ImageAnnotation
from entityseg_data.masks.types import EntityId


# ------------------------------------------------------------------------------------ writing
def brush_rle_result(
    region_id: EntityId,
    rle: Sequence[int],
    *,
    height: int,
    width: int,
    label: str = configs.BRUSH_LABELS[0],
    score: float | None = None,
    readonly: bool = False,
) -> dict[str, Any]:
    """The ``brushlabels`` result of one region from its Label Studio brush RLE (the core's
    :func:`entityseg_data.masks.brush.brush_result` with this project's tag names)."""
    return core_brush_result(
        list(rle),
        region_id=region_id,
        height=height,
        width=width,
        score=score,
        readonly=readonly,
        from_name=configs.BRUSH,
        to_name=configs.IMAGE,
        label=label,
    )


def brush_result(
    segmentation: Mapping[str, Any] | np.ndarray,
    *,
    region_id: str,
    height: int,
    width: int,
    score: float | None = None,
    readonly: bool = False,
    label: str = configs.BRUSH_LABELS[0],
) -> dict[str, Any]:
    """A ``brushlabels`` result for one mask (COCO RLE dict or (H, W) array) with display label
    ``label``."""
    if isinstance(segmentation, np.ndarray):
        mask = segmentation
        if mask.shape != (height, width):
            raise DataError(f"region {region_id}: mask {mask.shape} differs from {height}x{width}")
    else:
        seg = rle_utils.to_compressed(dict(segmentation), height, width)
        rle_utils.check_size(seg, height, width, where=f"region {region_id}")
        mask = rle_utils.decode(seg)
    return brush_rle_result(
        region_id,
        encode_brush(mask),
        height=height,
        width=width,
        label=label,
        score=score,
        readonly=readonly,
    )


def name_results(region_id: EntityId, name: str | None, flag: str | None) -> list[dict[str, Any]]:
    """Per-region stage-2 results (TextArea and/or flag Taxonomy) for ``region_id``."""
    out = []
    if name:
        out.append(
            {
                "id": str(region_id),
                "type": "textarea",
                "from_name": configs.NAME,
                "to_name": configs.IMAGE,
                "value": {"text": [name]},
            }
        )
    if flag:
        out.append(
            {
                "id": str(region_id),
                "type": "taxonomy",
                "from_name": configs.FLAGS,
                "to_name": configs.IMAGE,
                "value": {"taxonomy": [[flag]]},
            }
        )
    return out


def annotation_to_results(
    ann: ImageAnnotation,
    *,
    with_names: bool = False,
    flags: Sequence[str] = (),
    labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Brush results (ids = entity ids) for every entity; with ``with_names`` also the stage-2
    name results (a name that is one of ``flags`` goes to the flag Taxonomy).

    ``labels`` gives each entity's display label (default: the palette colouring of
    :func:`display_labels`, so that touching regions differ)."""
    out = []
    flagset = set(flags)
    h, w = ann.height, ann.width
    segs = []
    for e in ann.entities:
        seg = rle_utils.to_compressed(dict(e.segmentation), h, w)
        rle_utils.check_size(seg, h, w, where=f"region {e.id}")
        segs.append(seg)
    brushes = brush_rles_of_rles(segs, h, w)  # one label map when disjoint, else one by one
    if labels is None:
        labels = display_labels(segs, h, w, stage=ann.stage)
    for e, rle, label in zip(ann.entities, brushes, labels):
        out.append(brush_rle_result(e.id, rle, height=h, width=w, label=label, score=e.score))
        if with_names and e.name:
            if e.name in flagset:
                out.extend(name_results(e.id, None, e.name))
            else:
                out.extend(name_results(e.id, e.name, None))
    return out


def adjacency(rles: Sequence[Mapping[str, Any]], h: int, w: int) -> dict[int, set[int]]:
    """Region index -> indices of the regions it touches (4-neighbourhood). Overlapping regions
    are painted later-wins first (the colouring is for display only)."""
    if len(rles) < 2:
        return {}
    lm_t, _ = rle_utils.label_map_t(rles, h, w)  # later wins; (W, H): adjacency is symmetric
    return label_map_adjacency(lm_t)


def label_map_adjacency(grid: np.ndarray) -> dict[int, set[int]]:
    """Label k - 1 -> the labels - 1 it touches (4-neighbourhood) in a 2-D label map (0 = none;
    either orientation: neighbourhood is symmetric)."""
    out: dict[int, set[int]] = {}
    for a, b in ((grid[:, :-1], grid[:, 1:]), (grid[:-1, :], grid[1:, :])):
        diff = (a != b) & (a > 0) & (b > 0)
        if diff.any():
            pairs = np.unique(np.stack([a[diff], b[diff]], 1).astype(np.int64), axis=0)
            for x, y in pairs.tolist():
                out.setdefault(x - 1, set()).add(y - 1)
                out.setdefault(y - 1, set()).add(x - 1)
    return out


def display_labels(
    rles: Sequence[Mapping[str, Any]], h: int, w: int, *, stage: int = 1
) -> list[str]:
    """Palette display labels of regions such that touching regions get different colours."""
    return configs.palette_labels(adjacency(rles, h, w), len(rles), stage)


__all__ = [
    "GEOMETRY_TYPES",
    "Region",
    "annotation_from_ls",
    "annotation_to_results",
    "annotator_name",
    "brush_result",
    "latest_annotations",
    "ls_export_to_annotations",
    "name_results",
    "parse_results",
    "polygon_mask",
    "regions_to_entities",
    "task_image",
]
