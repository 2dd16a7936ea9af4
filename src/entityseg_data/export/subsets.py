"""Class-aware subsets, like the official release's instance / semantic / panoptic subsets.

Classes are the entities' open-vocabulary names (``name`` / ``category_id_ori`` / category
name). Names that are not classes are left out: ``unknown``, ``blurred``, ``unnamed`` and any
``*_other`` name (``exclude`` / ``exclude_suffixes``). Ties are broken by name.

- **instance**: the top-K classes by *entity* frequency; a COCO instances JSON with those K
  categories (ids 1..K by rank) and only their annotations (every image is kept).
- **semantic**: the top-K classes by *pixel* frequency; one PNG label map per image with class
  index 0..K-1 and ``ignore_value`` (255; 65535 when K > 255) elsewhere, plus a categories JSON.
- **panoptic**: the top-K classes by entity frequency, COCO panoptic format: one RGB PNG per
  image with ``segment id = R + 256 G + 256^2 B`` (0 = void) and a JSON with ``segments_info``
  ``{id, category_id, area, bbox, iscrowd}``; the entities of one *stuff* class in an image are
  merged into one segment (COCO panoptic convention); things stay separate. Thing/stuff comes
  from ``is_thing(name)``, else the entities' own ``kind`` (a workspace imported from COCO
  panoptic or ADE20K carries it), else the category's ``isthing`` flag, else thing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from entityseg_data.errors import ConfigError
from entityseg_data.export.entityseg import entity_name, release_records, thing_flags
from entityseg_data.io import atomic_open, atomic_write_json
from entityseg_data.io.coco import CocoAnnotation, CocoCategory, CocoDataset, as_dataset
from entityseg_data.masks import rle as rle_utils

log = logging.getLogger(__name__)

EXCLUDE: tuple[str, ...] = ("unknown", "blurred", "unnamed")
EXCLUDE_SUFFIXES: tuple[str, ...] = ("_other",)


Source = CocoDataset | str | Path | Mapping[str, Any]


def _names(ds: CocoDataset) -> list[str]:
    cats = {c.id: c.name for c in ds.categories}
    return [entity_name(a, cats) for a in ds.annotations]


def _is_class(name: str, exclude: Sequence[str], suffixes: Sequence[str]) -> bool:
    return name not in exclude and not any(name.endswith(s) for s in suffixes)


def rank_classes(
    coco: Source,
    *,
    by: str = "entities",
    exclude: Sequence[str] = EXCLUDE,
    exclude_suffixes: Sequence[str] = EXCLUDE_SUFFIXES,
) -> list[tuple[str, int]]:
    """``[(name, count)]`` by descending entity count (``by="entities"``) or pixel count
    (``by="pixels"``), crowd annotations excluded. ``coco``: the records, or a COCO dict /
    JSON path read by :func:`~entityseg_data.io.coco.read_coco`."""
    if by not in ("entities", "pixels"):
        raise ConfigError(f"rank_classes: by must be 'entities' or 'pixels', got {by!r}")
    ds = as_dataset(coco, require_annotations=True)
    counts: Counter[str] = Counter()
    for a, name in zip(ds.annotations, _names(ds)):
        if a.iscrowd or not _is_class(name, exclude, exclude_suffixes):
            continue
        counts[name] += 1 if by == "entities" else rle_utils.area(a.segmentation)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _thing_flags(
    ds: CocoDataset, classes: Sequence[str], is_thing: Callable[[str], bool | None] | None
) -> dict[str, bool]:
    known = thing_flags(ds, is_thing)
    by_name = {c.name: c for c in ds.categories}
    out = {}
    for n in classes:
        flag = known.get(n)
        if flag is None and n in by_name:
            flag = by_name[n].isthing
        out[n] = True if flag is None else bool(flag)
    return out


def instance_subset(
    coco: Source,
    k: int,
    *,
    is_thing: Callable[[str], bool | None] | None = None,
    **rank_kwargs: Any,
) -> CocoDataset:
    """The COCO instance records of the top-``k`` classes by entity frequency (categories 1..k
    by rank; every image kept); ``.to_dict()`` is the ``instance.json`` file."""
    ds = as_dataset(coco, require_annotations=True)
    top = [n for n, _ in rank_classes(ds, by="entities", **rank_kwargs)[: int(k)]]
    ids = {n: i + 1 for i, n in enumerate(top)}
    flags = _thing_flags(ds, top, is_thing)
    anns = tuple(
        replace(a, category_id=ids[name], name=name)
        for a, name in zip(ds.annotations, _names(ds))
        if name in ids
    )
    cats = tuple(
        CocoCategory(id=ids[n], name=n, supercategory="entity", isthing=flags[n]) for n in top
    )
    return CocoDataset(
        source=ds.source,
        images=ds.images,
        annotations=anns,
        categories=cats,
        info={"description": f"instance subset: top {k} classes by entity frequency"},
    )


def _label_map(anns: Sequence[CocoAnnotation], h: int, w: int) -> np.ndarray:
    """(H, W) uint16 map of annotation index + 1 (later annotations win on overlaps)."""
    if not anns:
        return np.zeros((h, w), np.uint16)
    rles = [a.segmentation for a in anns]
    return rle_utils.rles_to_label_map(rles, h, w, policy="later_wins")


def _stem(file_name: str) -> str:
    return Path(file_name).with_suffix("").as_posix().replace("/", "__")


def semantic_subset(
    coco: Source,
    k: int,
    out_dir: str | Path,
    *,
    ignore_value: int | None = None,
    progress: Callable[[int], object] | None = None,
    **rank_kwargs: Any,
) -> dict[str, Any]:
    """Semantic label PNGs (``out_dir/semantic/<stem>.png``) and ``semantic_categories.json``
    for the top-``k`` classes by pixel frequency. Returns the categories JSON dict (with
    ``files``: image id -> PNG path relative to ``out_dir``)."""
    ds = as_dataset(coco, require_annotations=True)
    top = [n for n, _ in rank_classes(ds, by="pixels", **rank_kwargs)[: int(k)]]
    dtype = np.uint8 if len(top) <= 255 else np.uint16
    ignore = ignore_value if ignore_value is not None else (255 if dtype == np.uint8 else 65535)
    if ignore < len(top):
        raise ConfigError(f"ignore_value {ignore} collides with a class index (K = {len(top)})")
    index = {n: i for i, n in enumerate(top)}
    by_image: dict[int, list[tuple[CocoAnnotation, str]]] = {}
    for a, n in zip(ds.annotations, _names(ds)):
        if not a.iscrowd:
            by_image.setdefault(a.image_id, []).append((a, n))
    out = Path(out_dir)
    files = {}
    for im in ds.images:
        h, w = im.height, im.width
        pairs = by_image.get(im.id, [])
        lm = _label_map([a for a, _ in pairs], h, w)
        lut = np.full(len(pairs) + 1, ignore, dtype=dtype)
        for i, (_, n) in enumerate(pairs):
            if n in index:
                lut[i + 1] = index[n]
        sem = lut[lm]
        rel = f"semantic/{_stem(im.file_name)}.png"
        with atomic_open(out / rel, "wb") as f:
            Image.fromarray(sem).save(f, format="PNG")
        files[im.id] = rel
        if progress is not None:
            progress(1)
    meta = {
        "classes": [{"index": i, "name": n} for i, n in enumerate(top)],
        "ignore_value": int(ignore),
        "files": files,
    }
    atomic_write_json(out / "semantic_categories.json", meta, indent=2)
    return meta


def panoptic_subset(
    coco: Source,
    k: int,
    out_dir: str | Path,
    *,
    is_thing: Callable[[str], bool | None] | None = None,
    progress: Callable[[int], object] | None = None,
    **rank_kwargs: Any,
) -> dict[str, Any]:
    """COCO panoptic PNGs (``out_dir/panoptic/<stem>.png``) + ``panoptic.json`` for the top-``k``
    classes by entity frequency. Returns the panoptic JSON dict."""
    ds = as_dataset(coco, require_annotations=True)
    top = [n for n, _ in rank_classes(ds, by="entities", **rank_kwargs)[: int(k)]]
    ids = {n: i + 1 for i, n in enumerate(top)}
    flags = _thing_flags(ds, top, is_thing)
    by_image: dict[int, list[tuple[CocoAnnotation, str]]] = {}
    for a, n in zip(ds.annotations, _names(ds)):
        if n in ids and not a.iscrowd:
            by_image.setdefault(a.image_id, []).append((a, n))
    out = Path(out_dir)
    anns_out = []
    for im in ds.images:
        h, w = im.height, im.width
        pairs = by_image.get(im.id, [])
        lm = _label_map([a for a, _ in pairs], h, w)
        # segment per thing entity; one per stuff class
        seg_of = np.zeros(len(pairs) + 1, dtype=np.uint32)
        segments: list[tuple[int, str]] = []
        stuff_seg: dict[str, int] = {}
        for i, (_, n) in enumerate(pairs):
            if not flags[n] and n in stuff_seg:
                seg_of[i + 1] = stuff_seg[n]
                continue
            segments.append((len(segments) + 1, n))
            seg_of[i + 1] = len(segments)
            if not flags[n]:
                stuff_seg[n] = len(segments)
        pan = seg_of[lm]
        rgb = np.stack([pan & 255, (pan >> 8) & 255, (pan >> 16) & 255], axis=-1).astype(np.uint8)
        rel = f"{_stem(im.file_name)}.png"
        with atomic_open(out / "panoptic" / rel, "wb") as f:
            Image.fromarray(rgb).save(f, format="PNG")
        infos = []
        if segments:
            rles = rle_utils.label_map_to_rles(pan, ids=[s for s, _ in segments])
            for sid, n in segments:
                r = rles[sid]
                area = rle_utils.area(r)
                if area == 0:  # fully covered by later entities
                    continue
                infos.append(
                    {
                        "id": sid,
                        "category_id": ids[n],
                        "area": area,
                        "bbox": rle_utils.bbox(r),
                        "iscrowd": 0,
                    }
                )
        anns_out.append({"image_id": im.id, "file_name": rel, "segments_info": infos})
        if progress is not None:
            progress(1)
    data = {
        "info": {"description": f"panoptic subset: top {k} classes by entity frequency"},
        "images": [
            {"id": im.id, "file_name": im.file_name, "height": im.height, "width": im.width}
            for im in ds.images
        ],
        "annotations": anns_out,
        "categories": [
            {"id": ids[n], "name": n, "supercategory": "entity", "isthing": int(flags[n])}
            for n in top
        ],
    }
    atomic_write_json(out / "panoptic.json", data)
    return data


def export_subsets(
    source: Any,
    out_dir: str | Path,
    *,
    k_instance: int = 100,
    k_semantic: int = 100,
    k_panoptic: int = 100,
    is_thing: Callable[[str], bool | None] | None = None,
    progress: Callable[[int], object] | None = None,
) -> dict[str, Path]:
    """All three subsets of a workspace (approved masks + stage-2 names) or a COCO dict/JSON.
    A K of 0 skips that subset. Returns ``{kind: path}``."""
    coco, _ = release_records(source, what="COCO annotations")
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    if k_instance:
        paths["instance"] = out / "instance.json"
        inst = instance_subset(coco, k_instance, is_thing=is_thing)
        atomic_write_json(paths["instance"], inst.to_dict())
    if k_semantic:
        semantic_subset(coco, k_semantic, out, progress=progress)
        paths["semantic"] = out / "semantic_categories.json"
    if k_panoptic:
        panoptic_subset(coco, k_panoptic, out, is_thing=is_thing, progress=progress)
        paths["panoptic"] = out / "panoptic.json"
    return paths
