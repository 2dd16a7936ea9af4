"""Model predictions in a workspace: any :class:`~entityseg_data.masks.types.Segmenter` in,
stage-1 pre-annotations out (one file + one catalog row per image and model version).

>>> ws.predictions.add(FelzenszwalbSegmenter())          # PredictReport
>>> masks = ws.predictions.latest(12)                     # ImageMasks | None
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from entityseg_data.errors import DataError, EntitySegError
from entityseg_data.masks.types import Entity, ImageMasks, Segmenter

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)

#: entity keys of a prediction file that are not carried into ``Entity.extra``
_PAYLOAD_KEYS = frozenset({"id", "segmentation", "score", "name", "kind"})


def masks_to_payload(masks: ImageMasks, image_id: int, model_version: str) -> dict[str, Any]:
    """The prediction-file payload of ``masks`` (see :mod:`entityseg_data.catalog.predictions`):
    ``{"image_id", "height", "width", "model_version", "entities": [{"id", "segmentation",
    "score", ...extra}]}``."""
    entities = []
    for k, e in enumerate(masks.entities, start=1):
        rec: dict[str, Any] = dict(e.extra)
        rec.update({"id": e.id if e.id not in (None, "") else k, "segmentation": e.rle})
        if e.score is not None:
            rec["score"] = float(e.score)
        if e.name is not None:
            rec["name"] = e.name
        if e.kind is not None:
            rec["kind"] = e.kind
        entities.append(rec)
    return {
        "image_id": int(image_id),
        "height": int(masks.height),
        "width": int(masks.width),
        "model_version": model_version,
        "entities": entities,
    }


def masks_from_payload(data: Mapping[str, Any], where: str = "") -> ImageMasks:
    """:class:`ImageMasks` of a prediction file's payload (RLEs strictly validated)."""
    try:
        h, w = int(data["height"]), int(data["width"])
        raw = list(data.get("entities") or [])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where or 'prediction'}: needs 'height', 'width', 'entities'") from None
    ents = []
    for k, e in enumerate(raw):
        ent = Entity.from_coco(e, h, w, where=f"{where}: entity {k}" if where else f"entity {k}")
        extra = {key: v for key, v in e.items() if key not in _PAYLOAD_KEYS}
        ents.append(
            Entity(
                id=ent.id,
                rle=ent.rle,
                score=ent.score,
                name=ent.name,
                category_id=ent.category_id,
                kind=ent.kind,
                flags=ent.flags,
                extra=extra,
            )
        )
    return ImageMasks(image_id=data.get("image_id"), height=h, width=w, entities=tuple(ents))


@dataclass
class PredictReport:
    """What :meth:`Predictions.add` did: images ``done`` now, ``skipped`` (already predicted
    with this version), ``failed`` ``(image_id, message)`` pairs, ``entities`` written."""

    model_version: str
    done: int = 0
    skipped: int = 0
    entities: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "done": self.done,
            "skipped": self.skipped,
            "entities": self.entities,
            "failed": [{"image_id": i, "error": m} for i, m in self.failed],
        }


class Predictions:
    """The predictions of one workspace (the catalog's ``predictions`` table and its files)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def add(
        self,
        segmenter: Segmenter,
        *,
        model_version: str | None = None,
        image_ids: Iterable[int] | None = None,
        skip_existing: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> PredictReport:
        """Segment the workspace's accepted images and store the results as stage-1
        pre-annotations of ``model_version`` (default: the segmenter's).

        Images that already have a prediction of that version are skipped (so a killed run
        resumes) unless ``skip_existing`` is False. An image that cannot be read or segmented
        is reported in :attr:`PredictReport.failed` and the others go on. ``progress`` is
        called with ``(n_done, n_total)`` after each image."""
        from entityseg_data.io.images import read_image

        version = model_version or segmenter.model_version
        if not version:
            raise DataError("the segmenter has no model_version; pass model_version=")
        ws = self.workspace
        with ws.catalog() as cat:
            images = cat.images(ids=None if image_ids is None else list(image_ids))
        done_ids = ws.predicted_ids(version) if skip_existing else set()
        report = PredictReport(model_version=version)
        for n, rec in enumerate(images, start=1):
            if rec.id in done_ids:
                report.skipped += 1
            else:
                try:
                    hw = (
                        None if rec.height is None or rec.width is None else (rec.height, rec.width)
                    )
                    rgb = read_image(ws.image_path(rec), expect_hw=hw)
                    masks = segmenter.segment(rgb)
                    if (masks.height, masks.width) != rgb.shape[:2]:
                        raise DataError(
                            f"the segmenter returned {masks.height}x{masks.width} masks for a "
                            f"{rgb.shape[0]}x{rgb.shape[1]} image"
                        )
                    ws.write_prediction(masks_to_payload(masks, rec.id, version), version)
                    report.done += 1
                    report.entities += len(masks)
                except (EntitySegError, OSError, ValueError) as exc:
                    log.warning("image %d (%s): %s", rec.id, rec.path, exc)
                    report.failed.append((rec.id, str(exc)))
            if progress is not None:
                progress(n, len(images))
        return report

    def write(self, image_id: int, masks: ImageMasks, model_version: str) -> str:
        """Store ``masks`` as the prediction of ``model_version`` for an image (file, then its
        catalog row); returns the file path relative to the workspace."""
        return self.workspace.write_prediction(
            masks_to_payload(masks, image_id, model_version), model_version
        )

    def latest(self, image_id: int, model_version: str | None = None) -> ImageMasks | None:
        """The newest prediction of an image (of ``model_version``), or None."""
        found = self.workspace.latest_prediction(image_id, model_version)
        if found is None:
            return None
        rec, data = found
        return masks_from_payload(data, where=str(self.workspace.abspath(rec.path)))

    def image_ids(self, model_version: str) -> set[int]:
        """Ids of the images with a prediction file of ``model_version``."""
        return self.workspace.predicted_ids(model_version)

    def versions(self) -> dict[str, int]:
        """Model version -> number of predicted images."""
        with self.workspace.catalog() as cat:
            recs = cat.predictions()
        out: dict[str, int] = {}
        for r in recs:
            out[r.model_version] = out.get(r.model_version, 0) + 1
        return out
