"""Masks a source declares final (``export convert``, :class:`~entityseg_data.ingest.sources.
coco.ImportPolicy` ``approved=True``) written as approved annotations instead of a prediction.

For an accepted image the pipeline writes, by the annotator :data:`ANNOTATOR`, a stage-1 file
(the masks, with each entity's ``kind``) and a stage-2 file (the same masks with their names),
both marked ``approved`` in the catalog, so statistics, exports and training see them like any
approved annotation. Files are written first, then the catalog rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from entityseg_data.masks.store import Entity, ImageAnnotation, save_annotation

if TYPE_CHECKING:
    from entityseg_data.catalog import Catalog
    from entityseg_data.ingest.preannotations import PreAnnotation
    from entityseg_data.workspace import Workspace

ANNOTATOR = "import"


def write_approved(
    ws: Workspace,
    cat: Catalog,
    image_id: int,
    pre: PreAnnotation,
    *,
    origin: str,
    annotator: str = ANNOTATOR,
) -> int:
    """Write ``pre`` (upright entities of image ``image_id``) as approved stage-1 and stage-2
    annotations of ``annotator``; returns the number of entities."""
    for stage in (1, 2):
        ents = tuple(
            Entity(
                id=f"e{k}",
                rle=e["segmentation"],
                name=e.get("name") if stage == 2 else None,
                origin=origin,
                kind=e.get("kind"),
            )
            for k, e in enumerate(pre.entities, start=1)
        )
        ann = ImageAnnotation(
            image_id=image_id,
            height=pre.height,
            width=pre.width,
            stage=stage,
            annotator=annotator,
            entities=ents,
            meta={"origin": origin, "imported_from": pre.model_version},
        )
        path = save_annotation(ws.root, ann)
        cat.set_annotation(
            image_id,
            stage,
            annotator,
            status="approved",
            mask_path=ws.relpath(path),
            n_entities=len(ents),
        )
    return len(pre.entities)
