"""Importing annotated datasets as approved annotations (``export convert``): the COCO importer
(:class:`~entityseg_data.ingest.sources.coco.CocoSource`) and the label-map source run through
the ingest pipeline with ``approved=True``, so an imported image is fetched, decoded (EXIF
applied to image and masks), de-duplicated and recorded with its provenance exactly as any
ingested image, and its masks become approved stage-1 + stage-2 annotations of the annotator
``import`` (:mod:`entityseg_data.ingest.approved`).

Defaults for an import (the images are a curated dataset already): no quality filters (minimum
size, aspect, iconic) and no NSFW scoring; exact and near duplicates are recorded and not
imported twice (``near_duplicates=False``: exact ones only).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from entityseg_data.ingest.approved import ANNOTATOR

if TYPE_CHECKING:
    from entityseg_data.config.ingest import IngestConfig
    from entityseg_data.ingest.report import IngestReport
    from entityseg_data.ingest.sources.base import Source
    from entityseg_data.ingest.sources.coco import ImportPolicy
    from entityseg_data.workspace import Workspace


@dataclass
class ImportResult:
    """What an import did: ``images`` imported now (ids in ``image_ids``), their ``entities``,
    ``duplicates`` not imported again, ``failed`` items by kind, ``problems`` of the source
    records (bad annotations, missing label maps) and the full ingest ``report``."""

    images: int = 0
    entities: int = 0
    duplicates: int = 0
    image_ids: list[int] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    report: IngestReport | None = None


def import_config(
    workspace: Workspace,
    *,
    near_duplicates: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> IngestConfig:
    """The workspace's ingest section with the import defaults (module docstring)."""
    base = workspace.config().ingest
    values: dict[str, Any] = {
        "min_side": 0,
        "max_aspect": 0.0,
        "iconic_enabled": False,
        "nsfw_enabled": False,
    }
    if not near_duplicates:
        values["phash_threshold"] = -1
    values.update(dict(overrides or {}))
    return dataclasses.replace(base, **values)


def run_import(
    workspace: Workspace,
    source: Source,
    *,
    config: IngestConfig | None = None,
    progress: Callable[[Any], None] | None = None,
) -> ImportResult:
    """Ingest ``source`` (built with approved=True) and summarise what was imported."""
    from entityseg_data.ingest.pipeline import ingest

    with workspace.catalog() as cat:
        before = {r.image_id for r in cat.annotations(stage=1, annotator=ANNOTATOR)}
    report = ingest(workspace, [source], config or import_config(workspace), progress=progress)
    res = ImportResult(report=report)
    with workspace.catalog() as cat:
        for r in cat.annotations(stage=1, annotator=ANNOTATOR):
            if r.image_id not in before and r.status == "approved":
                res.image_ids.append(r.image_id)
                res.entities += int(r.n_entities or 0)
    res.images = len(res.image_ids)
    totals = report.totals()
    res.duplicates = int(sum(totals.duplicates.values()))
    res.failed = dict(totals.failed)
    res.problems = [str(p) for p in getattr(source, "problems", [])]
    return res


def import_coco(
    workspace: Workspace,
    annotations: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    *,
    panoptic_dir: str | os.PathLike[str] | None = None,
    policy: ImportPolicy | None = None,
    name: str | None = None,
    config: IngestConfig | None = None,
    progress: Callable[[Any], None] | None = None,
) -> ImportResult:
    """Import a COCO instances / panoptic / EntitySeg JSON as approved annotations (crowd and
    overlap policies: ``policy``; ``approved`` is forced on)."""
    from entityseg_data.ingest.sources.coco import CocoSource, ImportPolicy

    pol = dataclasses.replace(policy or ImportPolicy(), approved=True)
    src = CocoSource(
        annotations=annotations,
        image_root=images_dir,
        panoptic_root=panoptic_dir,
        policy=pol,
        name=name,
    )
    return run_import(workspace, src, config=config, progress=progress)


def import_label_maps(
    workspace: Workspace,
    images_dir: str | os.PathLike[str],
    label_dir: str | os.PathLike[str],
    *,
    names: Mapping[int, str] | None = None,
    void_values: Sequence[int] = (0,),
    label_suffix: str = ".png",
    config: IngestConfig | None = None,
    progress: Callable[[Any], None] | None = None,
) -> ImportResult:
    """Import an image folder + label-map folder as approved annotations."""
    from entityseg_data.ingest.sources.labelmaps import LabelMapSource

    src = LabelMapSource(
        images_dir=images_dir,
        label_dir=label_dir,
        names=names,
        void_values=void_values,
        label_suffix=label_suffix,
        approved=True,
    )
    return run_import(workspace, src, config=config, progress=progress)
