"""Releases: the EntitySeg layout, Hugging Face datasets and class-aware subsets, of a workspace
or of a COCO / EntitySeg JSON with its image folder (the ``export`` commands).

>>> export_entityseg(ws, "release/")                                  # or ws.export_entityseg
>>> export_entityseg("ann.json", "release/", images_dir="imgs/", split=False)
>>> export_hf(ws, "release_hf/")
>>> export_subsets(ws, "subsets/", k_instance=50)   # for `eval --task instance|panoptic|semantic`

A source is a :class:`~entityseg_data.workspace.Workspace` (its approved stage-1 masks with
their stage-2 names), a COCO dict or a JSON path; it is validated by the strict COCO reader
before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from entityseg_data.workspace import Workspace

if TYPE_CHECKING:
    from entityseg_data.export.entityseg import ExportResult

#: what is exported: a workspace, a COCO dict or the path of a COCO / EntitySeg JSON
ExportSource: TypeAlias = "Workspace | str | Path | dict[str, Any]"
#: called with the number of images just written (e.g. ``tqdm.update``)
Progress = Callable[[int], object]


def export_entityseg(
    source: ExportSource,
    out_dir: str | Path,
    *,
    images_dir: str | Path | None = None,
    seed: int | None = None,
    split: bool = True,
    lr: bool = True,
    class_agnostic: bool = True,
    link: bool = True,
    overrides: Iterable[str] = (),
    progress: Progress | None = None,
) -> ExportResult:
    """The EntitySeg release layout: COCO JSON (compressed RLE; one ``entity`` category and
    free-form names, or with ``class_agnostic=False`` one category per name) per split
    (``split``: seeded train/val stratified by source, else one ``all`` file), the hr images
    (hard-linked when ``link`` and the filesystem allow, else copied) and the official lr copy
    (``lr``). Settings (``export`` section, ``seed``): the workspace's config, or the defaults
    for a JSON, with ``overrides`` (``key=value``, e.g. ``export.val_fraction=0.2``); ``seed``
    None = the config's. A workspace's splits are kept in its catalog. ``images_dir``: the
    image folder of a JSON source (required for one)."""
    from entityseg_data.config import WorkspaceConfig, apply_overrides
    from entityseg_data.export.entityseg import export_entityseg as run

    sets = list(overrides)
    if isinstance(source, Workspace):
        cfg = source.config(sets)
    else:
        cfg = apply_overrides(WorkspaceConfig(), sets)
    return run(
        source,
        out_dir,
        images_dir=images_dir,
        config=cfg.export,
        seed=cfg.seed if seed is None else seed,
        split=split,
        lr=lr,
        class_agnostic=class_agnostic,
        link=link,
        progress=progress,
    )


def export_hf(
    source: ExportSource,
    out_dir: str | Path,
    *,
    images_dir: str | Path | None = None,
    save_to_disk: bool = True,
    push_to_hub: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """A Hugging Face ``datasets`` export: ``out_dir/parquet/{split}.parquet`` (images
    embedded, entity masks as RLE, names, provenance) and, with ``save_to_disk``, ``out_dir/hf``
    for ``datasets.load_from_disk``; ``push_to_hub``: also push to that repo id (needs
    ``HF_TOKEN`` or a saved login). Returns ``{"parquet": {split: path}, "hf": path | None,
    "rows": {split: n}, "skipped": [{image_id, error}]}``; see
    :func:`entityseg_data.export.hf.export_hf`."""
    from entityseg_data.export.hf import export_hf as run

    return run(
        source,
        out_dir,
        images_dir=images_dir,
        save_to_disk=save_to_disk,
        push_to_hub=push_to_hub,
        progress=progress,
    )


def export_subsets(
    source: ExportSource,
    out_dir: str | Path,
    *,
    k_instance: int = 100,
    k_semantic: int = 100,
    k_panoptic: int = 100,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """The class-aware subsets: instance (the top ``k_instance`` classes by entities, COCO
    JSON), semantic (top ``k_semantic`` by pixels, label PNGs + semantic_categories.json) and
    panoptic (top ``k_panoptic`` by entities, COCO panoptic PNGs + JSON); a K of 0 skips that
    subset. Returns ``{kind: path}`` (the files ``eval --task ...`` reads)."""
    from entityseg_data.export.subsets import export_subsets as run

    return run(
        source,
        out_dir,
        k_instance=k_instance,
        k_semantic=k_semantic,
        k_panoptic=k_panoptic,
        progress=progress,
    )
