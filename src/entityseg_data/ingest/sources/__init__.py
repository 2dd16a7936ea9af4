"""Image sources behind one interface (:class:`Source` yielding :class:`Item`).

Spec strings (the CLI's ``SOURCE`` arguments), parsed by :func:`parse_source`:

==========================  ===================================================================
``folder:PATH``             a folder (recursive), a glob (``'photos/**/*.jpg'``) or one file
``urls:FILE``               a URL list: ``.txt`` (one per line), ``.csv``/``.tsv``/``.parquet``
                            with a ``url`` column (+ optional id, license, author, attribution)
``coco:JSON[:IMAGE_ROOT]``  a COCO instances/panoptic JSON; masks become pre-annotations
``ade20k:DIR``              an ADE20K root (ADEChallengeData2016 or ADE20K_2021_17_01); masks
                            become pre-annotations
``labelmaps:IMAGES:LABELS`` an image folder + a folder of label-map PNGs (same stems)
``unsplash:TSV``            the Unsplash Lite/Full ``photos.tsv000``
``laion:PARQUET``           a LAION-400M / LAION-5B metadata Parquet file
==========================  ===================================================================

A spec without a known ``kind:`` prefix that names an existing folder or file is a folder source.
"""

from __future__ import annotations

import os

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.ade20k import Ade20kSource
from entityseg_data.ingest.sources.base import Item, Source
from entityseg_data.ingest.sources.coco import CocoSource
from entityseg_data.ingest.sources.folder import FolderSource
from entityseg_data.ingest.sources.labelmaps import LabelMapSource
from entityseg_data.ingest.sources.laion import LaionSource
from entityseg_data.ingest.sources.unsplash import UnsplashSource
from entityseg_data.ingest.sources.urls import UrlListSource

SOURCE_KINDS: dict[str, type[Source]] = {
    "folder": FolderSource,
    "urls": UrlListSource,
    "coco": CocoSource,
    "ade20k": Ade20kSource,
    "labelmaps": LabelMapSource,
    "unsplash": UnsplashSource,
    "laion": LaionSource,
}


def parse_source(spec: str, *, domain_tags: tuple[str, ...] = ()) -> Source:
    """Build a source from a spec string (see the module docstring).

    ``domain_tags`` are added to the adapter's own tags. Raises DataError for unknown kinds or
    missing files."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in SOURCE_KINDS:
        if os.path.exists(spec):
            kind, rest = "folder", spec
        else:
            raise DataError(
                f"source {spec!r}: expected KIND:PATH with KIND one of "
                f"{', '.join(SOURCE_KINDS)} (e.g. folder:photos/ or urls:list.txt)"
            )
    if not rest:
        raise DataError(f"source {spec!r}: missing the path after '{kind}:'")
    tags = tuple(domain_tags)
    if kind == "folder":
        return FolderSource(root=rest, domain_tags=tags, label=spec)
    if kind == "urls":
        return UrlListSource(path=rest, domain_tags=tags, label=spec)
    if kind == "coco":
        json_path, root = rest, None
        low = rest.lower()
        idx = low.find(".json:")
        if idx >= 0:
            json_path, root = rest[: idx + 5], rest[idx + 6 :] or None
        return CocoSource(
            annotations=json_path, image_root=root, domain_tags=("coco", *tags), label=spec
        )
    if kind == "labelmaps":
        images, sep2, labels = rest.rpartition(":")
        if not sep2 or not images or not labels:
            raise DataError(f"source {spec!r}: expected labelmaps:IMAGES_DIR:LABELS_DIR")
        return LabelMapSource(images_dir=images, label_dir=labels, domain_tags=tags, label=spec)
    if kind == "ade20k":
        return Ade20kSource(root=rest, domain_tags=("ade20k", *tags), label=spec)
    if kind == "unsplash":
        return UnsplashSource(path=rest, domain_tags=("photo", *tags), label=spec)
    return LaionSource(path=rest, domain_tags=("web", *tags), label=spec)


__all__ = [
    "SOURCE_KINDS",
    "Ade20kSource",
    "CocoSource",
    "FolderSource",
    "Item",
    "LabelMapSource",
    "LaionSource",
    "Source",
    "UnsplashSource",
    "UrlListSource",
    "parse_source",
]
