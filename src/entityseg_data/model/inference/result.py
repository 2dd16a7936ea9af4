"""The result of segmenting one image: a non-overlapping label map and per-entity records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class LazyMasks:
    """Sequence of the (H, W) bool masks of a result, computed on access (``masks[i]`` is entity
    ``i + 1``)."""

    def __init__(self, label_map: np.ndarray, n: int) -> None:
        self._lm = label_map
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> np.ndarray:
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._lm == i + 1

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self._n):
            yield self[i]


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """Entities of one image, ids 1..N by descending score.

    ``label_map`` (H, W) uint16, 0 = no entity, ``i`` = entity i; per entity (arrays of length N,
    row ``i - 1`` = id ``i``): ``scores`` (final score in ``score_mode``), ``class_scores`` (entity
    probability), ``mask_quality`` (mean fused mask probability over the mask; SAM's
    ``predicted_iou`` slot), ``areas`` (pixels), ``boxes`` (int64 ``[x, y, w, h]``, COCO),
    ``query_index`` (the decoder query), ``view_disagreement`` (CropFormer with crops: 1 - IoU
    of the full view's and the crop views' masks at 1/4 resolution, see
    :mod:`~entityseg_data.model.inference.disagreement`; None otherwise). ``source`` names the
    input (path or ``None``).
    """

    label_map: np.ndarray
    scores: np.ndarray
    class_scores: np.ndarray
    mask_quality: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    query_index: np.ndarray
    score_mode: str = "calibrated"
    source: str | None = None
    model_version: str | None = None
    view_disagreement: np.ndarray | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.scores)

    @property
    def height(self) -> int:
        return int(self.label_map.shape[0])

    @property
    def width(self) -> int:
        return int(self.label_map.shape[1])

    @property
    def ids(self) -> np.ndarray:
        return np.arange(1, len(self) + 1, dtype=np.int64)

    @property
    def masks(self) -> LazyMasks:
        """Per-entity (H, W) bool masks, computed on access."""
        return LazyMasks(self.label_map, len(self))

    def mask(self, entity_id: int) -> np.ndarray:
        """(H, W) bool mask of entity ``entity_id`` (1-based)."""
        return self.label_map == entity_id

    def with_source(self, source: str | None, model_version: str | None = None) -> Any:
        import dataclasses

        return dataclasses.replace(
            self, source=source, model_version=model_version or self.model_version, _cache={}
        )

    @property
    def rles(self) -> list[dict[str, Any]]:
        """Compressed COCO RLE of each entity (computed once, from one transpose of the map)."""
        if "rles" not in self._cache:
            from entityseg_data.masks.rle import label_map_to_rles

            by_id = label_map_to_rles(self.label_map, ids=range(1, len(self) + 1))
            self._cache["rles"] = [by_id[i] for i in range(1, len(self) + 1)]
        return self._cache["rles"]

    # ------------------------------------------------------------------ records
    def records(self) -> list[dict[str, Any]]:
        """Sidecar records: id, score, class_score, mask_quality, area, bbox ``[x, y, w, h]``."""
        return [
            {
                "id": i + 1,
                "score": float(self.scores[i]),
                "class_score": float(self.class_scores[i]),
                "mask_quality": float(self.mask_quality[i]),
                "area": int(self.areas[i]),
                "bbox": [int(v) for v in self.boxes[i]],
                "query": int(self.query_index[i]),
                **(
                    {"view_disagreement": float(self.view_disagreement[i])}
                    if self.view_disagreement is not None
                    else {}
                ),
            }
            for i in range(len(self))
        ]

    def to_coco(self, image_id: int | str | None = None, category_id: int = 1) -> list[dict]:
        """COCO results records (also SAM automatic-mask-generator compatible): ``segmentation``
        (compressed RLE), ``area``, ``bbox`` ``[x, y, w, h]``, ``predicted_iou`` (mean mask
        probability), ``stability_score`` (same value; we have no stability estimate),
        ``point_coords`` (box centre), ``crop_box`` (the whole image), plus ``score``, ``id``,
        ``image_id``, ``category_id``."""
        out = []
        for i, rle in enumerate(self.rles):
            x, y, w, h = (int(v) for v in self.boxes[i])
            rec = {
                "id": i + 1,
                "image_id": image_id,
                "category_id": category_id,
                "segmentation": rle,
                "area": int(self.areas[i]),
                "bbox": [x, y, w, h],
                "score": float(self.scores[i]),
                "predicted_iou": float(self.mask_quality[i]),
                "stability_score": float(self.mask_quality[i]),
                "point_coords": [[x + w / 2.0, y + h / 2.0]],
                "crop_box": [0, 0, self.width, self.height],
            }
            out.append(rec)
        return out

    def to_label_studio(
        self,
        *,
        from_name: str = "mask",
        to_name: str = "image",
        label: str = "entity",
        model_version: str | None = None,
        id_prefix: str = "p",
    ) -> dict[str, Any]:
        """One Label Studio prediction (stage-1 pre-annotation) with a brush result per entity.

        Result ids are ``{id_prefix}{entity id}``; pass a unique ``id_prefix`` per task when ids
        must be unique across a project.
        """
        from entityseg_data.masks.brush import brush_result, brush_rles_of_label_map

        n = len(self)
        # every entity's brush RLE from one pass over the label map's row-major runs
        brushes = brush_rles_of_label_map(self.label_map, range(1, n + 1)) if n else {}
        result = [
            brush_result(
                brushes[i + 1],
                region_id=f"{id_prefix}{i + 1}",
                height=self.height,
                width=self.width,
                score=float(self.scores[i]),
                from_name=from_name,
                to_name=to_name,
                label=label,
            )
            for i in range(n)
        ]
        return {
            "model_version": model_version or self.model_version or "entityseg-data",
            "score": float(self.scores.mean()) if len(self) else 0.0,
            "result": result,
        }

    def save(
        self,
        output: str,
        *,
        formats: tuple[str, ...] = ("png", "json"),
        image: np.ndarray | None = None,
    ) -> list[Path]:
        """Write the result; ``output`` is a path template or a folder (see
        :func:`~entityseg_data.model.inference.outputs.save_result`)."""
        from entityseg_data.model.inference.outputs import save_result

        return save_result(self, output, formats=formats, image=image)
