"""Label-map source: a folder of images beside a folder of integer label-map PNGs (same stem;
8/16-bit gray, or palette indices), one value per entity. Values in ``void_values`` (default 0)
are no entity; ``names`` maps a value to its name. The masks become pre-annotations, or with
``approved=True`` approved annotations (``export convert label-maps``).

Spec: ``labelmaps:IMAGES_DIR:LABELS_DIR``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source

if TYPE_CHECKING:
    from entityseg_data.ingest.preannotations import PreAnnotation

log = logging.getLogger(__name__)

MODEL_VERSION = "source:labelmaps"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def _pre(
    label_png: Path,
    names: Mapping[int, str],
    void: frozenset[int],
    raw_h: int,
    raw_w: int,
    orientation: int,
) -> PreAnnotation:
    from entityseg_data.ingest import preannotations
    from entityseg_data.io.images import read_label_array

    lm = read_label_array(label_png, "label map")
    if lm.ndim != 2:
        raise DataError(f"{label_png}: a label map must be single-channel, got shape {lm.shape}")
    values = [int(v) for v in np.unique(lm) if int(v) not in void]
    relabel = np.zeros(lm.shape, np.int32)
    for k, v in enumerate(values, start=1):
        relabel[lm == v] = k
    infos = [{"name": names.get(v), "category_id": v} for v in values]
    return preannotations.from_label_map(
        relabel, infos, raw_h, raw_w, orientation, model_version=MODEL_VERSION
    )


class LabelMapSource(Source):
    """Images of ``images_dir`` with the label maps of ``label_dir`` (``<stem><label_suffix>``)."""

    kind = "labelmaps"

    def __init__(
        self,
        *,
        images_dir: str | os.PathLike[str],
        label_dir: str | os.PathLike[str],
        names: Mapping[int, str] | None = None,
        void_values: Sequence[int] = (0,),
        label_suffix: str = ".png",
        approved: bool = False,
        domain_tags: tuple[str, ...] = (),
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"labelmaps:{images_dir}:{label_dir}")
        self.images_dir, self.label_dir = Path(images_dir), Path(label_dir)
        for d in (self.images_dir, self.label_dir):
            if not d.is_dir():
                raise DataError(f"labelmaps source: {d} is not a folder")
        self.names = {int(k): str(v) for k, v in (names or {}).items()}
        self.void = frozenset(int(v) for v in void_values)
        self.label_suffix = label_suffix
        self.approved = approved
        self.domain_tags = tuple(domain_tags)
        self.problems: list[str] = []

    def items(self) -> Iterator[Item]:
        files = sorted(p for p in self.images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        for p in files:
            lab = self.label_dir / f"{p.stem}{self.label_suffix}"
            if not lab.is_file():
                self.problems.append(f"{lab}: label map not found")
                log.warning("labelmaps source: %s: label map not found", lab)
                if self.approved:
                    continue  # nothing to import as approved for this image
            pre = partial(_pre, lab, self.names, self.void) if lab.is_file() else None
            yield Item(
                source=self.kind,
                source_id=p.name,
                path=str(p.resolve()),
                domain_tags=self.domain_tags,
                extra={"file_name": p.name},
                pre_annotation=pre,
                pre_annotation_version=MODEL_VERSION if pre else None,
                annotations_approved=self.approved and pre is not None,
            )
