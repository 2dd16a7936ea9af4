"""A workspace's annotated images as typed records: the dataset the curation loop produces.

:class:`Dataset` selects, once, one annotation per image from the catalog (by default the
approved stage-1 masks) and reads each image's mask file on access as a :class:`Sample`: the
:class:`~entityseg_data.catalog.ImageRecord`, the entities as
:class:`~entityseg_data.masks.types.ImageMasks` (compressed COCO RLEs of the image size,
region ids kept) and, for stage-1 masks, the stage-2 names typed for them (matched by image and
entity id). Nothing here is a COCO dict; :meth:`Dataset.to_coco` writes one at the boundary.

>>> ds = Dataset(ws)                       # approved stage-1 masks with their stage-2 names
>>> len(ds), ds.image_ids[:3]
>>> s = ds[12]                             # Sample of image 12
>>> s.masks.entities[0].name, s.masks.entities[0].area
>>> rgb, lm = s.load_image(), s.label_map()  # (H, W, 3) uint8 upright, (H, W) uint16 (0 = none)

Core: imports no stage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.catalog import ImageRecord
from entityseg_data.errors import DataError
from entityseg_data.masks import store
from entityseg_data.masks.runs import OverlapPolicy
from entityseg_data.masks.types import Entity, ImageMasks

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

__all__ = ["Dataset", "Sample", "image_masks_of"]


def image_masks_of(ann: store.ImageAnnotation) -> ImageMasks:
    """The masks of an annotation file (entity ids, names, scores, kinds and origins kept)."""
    return ImageMasks(
        image_id=ann.image_id, height=ann.height, width=ann.width, entities=ann.entities
    )


@dataclass(frozen=True)
class Sample:
    """One annotated image.

    Attributes:
        image: its catalog record (provenance, size, split, file).
        masks: its entities; entity ``i`` of ``masks.entities`` is value ``i + 1`` of
            :meth:`label_map`.
        annotator: whose annotation this is (``import`` for imported datasets).
        stage: 1 (masks) or 2 (named masks).
        root: the workspace root (image files are relative to it).
    """

    image: ImageRecord
    masks: ImageMasks
    annotator: str
    stage: int
    root: Path

    @property
    def image_id(self) -> int:
        return int(self.image.id)

    @property
    def height(self) -> int:
        return self.masks.height

    @property
    def width(self) -> int:
        return self.masks.width

    @property
    def entities(self) -> tuple[Entity, ...]:
        return self.masks.entities

    @property
    def names(self) -> list[str | None]:
        """Each entity's stage-2 name (None where it has none), in entity order."""
        return [e.name for e in self.masks.entities]

    @property
    def path(self) -> Path:
        """The file to read the pixels from (the upright normalised copy when there is one)."""
        return self.root / self.image.path

    def load_image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, upright (EXIF applied), checked against the annotation's size."""
        from entityseg_data.io.images import read_image

        return read_image(self.path, expect_hw=(self.height, self.width))

    def label_map(self, policy: OverlapPolicy = "reject", dtype: Any = None) -> np.ndarray:
        """(H, W) label map in image orientation: entity ``i`` -> ``i + 1``, 0 = no entity.
        Approved masks do not overlap; ``policy`` says what to do if some do (``"reject"``
        raises :class:`~entityseg_data.errors.OverlapError`)."""
        return self.masks.label_map(policy=policy, dtype=dtype)


class Dataset:
    """The annotated images of a workspace, one annotation per image, in image-id order.

    Args:
        workspace: the workspace.
        stage: 1 (masks; each entity gets the name typed for it in stage 2 when an approved
            stage-2 annotation exists) or 2 (the stage-2 annotations themselves).
        annotator: one annotator's annotations (for agreement); None = any annotator.
        statuses: catalog statuses to include (default: approved only); None = every
            annotation whose file exists (with ``annotator``) or every status.
        split: only images of this catalog split (``train``/``val``...).

    The selection is read from the catalog once, at construction; mask files are read when a
    sample is accessed. A missing or corrupt mask file raises DataError naming the file.
    """

    def __init__(
        self,
        workspace: Workspace,
        *,
        stage: int = 1,
        annotator: str | None = None,
        statuses: Sequence[str] | None = ("approved",),
        split: str | None = None,
    ) -> None:
        if stage not in (1, 2):
            raise DataError(f"stage must be 1 or 2, got {stage}")
        self.workspace = workspace
        self.stage = stage
        self.annotator = annotator
        self.statuses = None if statuses is None else tuple(statuses)
        self.split = split
        with workspace.catalog() as cat:
            rows = cat.annotations(stage=stage, annotator=annotator)
            images = {r.id: r for r in cat.images(status=None, split=split)}
            named: dict[int, str] = {}
            if stage == 1:
                for r in cat.annotations(stage=2):
                    if self.statuses is None or r.status in self.statuses:
                        named.setdefault(r.image_id, r.annotator)
        chosen: dict[int, str] = {}
        for r in rows:
            if self.statuses is None or r.status in self.statuses:
                chosen.setdefault(r.image_id, r.annotator)
        if annotator is not None and self.statuses is None:
            for a in store.iter_annotations(workspace.root, stage, annotator):
                chosen.setdefault(a.image_id, annotator)
        self._images = images
        self._chosen = {i: chosen[i] for i in sorted(chosen) if i in images}
        self._namer = named

    # ------------------------------------------------------------------ selection
    def __len__(self) -> int:
        return len(self._chosen)

    def __repr__(self) -> str:
        who = f", annotator={self.annotator!r}" if self.annotator else ""
        split = f", split={self.split!r}" if self.split else ""
        return f"Dataset({self.workspace.root}, stage={self.stage}{who}{split}: {len(self)} images)"

    @property
    def image_ids(self) -> list[int]:
        """Ids of the selected images, ascending."""
        return list(self._chosen)

    @property
    def images(self) -> list[ImageRecord]:
        """Catalog records of the selected images, by id."""
        return [self._images[i] for i in self._chosen]

    def annotator_of(self, image_id: int) -> str:
        try:
            return self._chosen[int(image_id)]
        except KeyError:
            raise KeyError(f"image {image_id} is not in {self!r}") from None

    # ------------------------------------------------------------------ samples
    def __getitem__(self, image_id: int) -> Sample:
        """The sample of image ``image_id`` (a catalog id, not a position)."""
        annotator = self.annotator_of(image_id)
        root = Path(self.workspace.root)
        ann = store.load_annotation(root, self.stage, annotator, int(image_id))
        where = store.annotation_path(root, self.stage, annotator, int(image_id))
        if ann is None:
            raise DataError(f"{where}: annotation file missing (the catalog lists it)")
        masks = image_masks_of(ann)
        namer = self._namer.get(int(image_id))
        if namer is not None:
            masks = _with_names(masks, store.load_annotation(root, 2, namer, int(image_id)))
        return Sample(
            image=self._images[int(image_id)],
            masks=masks,
            annotator=annotator,
            stage=self.stage,
            root=root,
        )

    def __iter__(self) -> Iterator[Sample]:
        for image_id in self._chosen:
            yield self[image_id]

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._chosen

    # ------------------------------------------------------------------ summaries
    def count_entities(self) -> int:
        """Entities over all samples (reads every mask file)."""
        return sum(len(s.masks) for s in self)

    def name_counts(self) -> Counter[str]:
        """How often each stage-2 name occurs (unnamed entities are left out)."""
        out: Counter[str] = Counter()
        for s in self:
            out.update(n for n in s.names if n)
        return out

    # ------------------------------------------------------------------ boundary
    def to_coco(self, category_of: Any = None) -> dict[str, Any]:
        """An EntitySeg/COCO instance dict of the selection, written by the one COCO writer of
        annotation files (:func:`entityseg_data.masks.store.annotations_to_coco`): one
        ``entity`` category (or ``category_of(name) -> (id, name)``), compressed RLE
        segmentations, per annotation ``name`` (stage-2 name or None), ``entity_id`` (the region
        id) and ``kind`` when known; image ``file_name`` relative to the workspace root. The same
        dict as :func:`entityseg_data.io.coco.workspace_coco` for the default selection."""
        anns = [
            store.ImageAnnotation(
                image_id=s.image_id,
                height=s.height,
                width=s.width,
                stage=s.stage,
                annotator=s.annotator,
                entities=s.masks.entities,
            )
            for s in self
        ]
        return store.annotations_to_coco(anns, self._images, category_of)


def _with_names(masks: ImageMasks, named: store.ImageAnnotation | None) -> ImageMasks:
    """Stage-1 masks with the names (and kinds, where stage 1 has none) of their stage-2
    entities, matched by entity id."""
    if named is None:
        return masks
    by_id = {str(e.id): e for e in named.entities}
    ents = []
    for e in masks.entities:
        two = by_id.get(str(e.id))
        if two is not None:
            name = two.name if two.name is not None else e.name
            e = replace(e, name=name, kind=e.kind or two.kind)
        ents.append(e)
    return replace(masks, entities=tuple(ents))
