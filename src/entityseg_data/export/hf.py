"""Hugging Face ``datasets`` export: images, entity masks as COCO RLE, names, provenance.

One row per image::

    image        datasets.Image (the original bytes are embedded, so Parquet files are
                 self-contained)
    image_id, file_name, height, width, split
    source, url, license, attribution        provenance
    entities     list of {id, name, rle_size [h, w], rle_counts (compressed COCO RLE string),
                          area, bbox [x, y, w, h], iscrowd}

Rows are streamed into Parquet shards with pyarrow (``rows_per_group`` rows per row group, so
memory stays bounded at 12 MP); ``save_to_disk`` is made from those shards. ``push_to_hub`` runs
only when a token is configured (argument, ``HF_TOKEN`` or the huggingface_hub login).

Decode a mask: ``pycocotools.mask.decode({"size": e["rle_size"], "counts": e["rle_counts"]})``
or :func:`entity_rle`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from entityseg_data.errors import ConfigError, DataError
from entityseg_data.io.coco import CocoDataset, as_dataset
from entityseg_data.io.files import read_bytes
from entityseg_data.io.images import DEFAULT_MAX_BYTES

log = logging.getLogger(__name__)


def hf_features() -> Any:
    """The ``datasets.Features`` of an export."""
    from datasets import Features, Image, List, Value

    return Features(
        {
            "image": Image(),
            "image_id": Value("int64"),
            "file_name": Value("string"),
            "height": Value("int32"),
            "width": Value("int32"),
            "split": Value("string"),
            "source": Value("string"),
            "url": Value("string"),
            "license": Value("string"),
            "attribution": Value("string"),
            "entities": List(
                {
                    "id": Value("int64"),
                    "name": Value("string"),
                    "rle_size": List(Value("int32"), length=2),
                    "rle_counts": Value("string"),
                    "area": Value("int64"),
                    "bbox": List(Value("float32"), length=4),
                    "iscrowd": Value("int8"),
                }
            ),
        }
    )


def entity_rle(entity: dict[str, Any]) -> dict[str, Any]:
    """The compressed COCO RLE of one exported entity."""
    return {"size": [int(v) for v in entity["rle_size"]], "counts": entity["rle_counts"]}


def iter_rows(
    coco: CocoDataset | Mapping[str, Any],
    images_dir: str | Path,
    skipped: list[dict[str, Any]] | None = None,
    *,
    splits: Mapping[int, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Export rows of EntitySeg/COCO records (see the module doc; a COCO dict is read by
    :func:`~entityseg_data.io.coco.read_coco`), one image at a time. ``splits``: image id ->
    split (else the image's own ``split``, else ``train``). Images that cannot be read are left
    out and appended to ``skipped`` (raised when it is None)."""
    from entityseg_data.export.entityseg import entity_name
    from entityseg_data.masks import rle as rle_utils

    ds = as_dataset(coco, what="COCO annotations")
    cats = {c.id: c.name for c in ds.categories}
    by_image = ds.annotations_by_image()
    root = Path(images_dir)
    for im in ds.images:
        h, w = im.height, im.width
        path = root / im.file_name
        try:
            data = read_bytes(path, max_bytes=DEFAULT_MAX_BYTES)
        except DataError as exc:
            if skipped is None:
                raise
            skipped.append({"image_id": im.id, "error": str(exc)})
            log.warning("hf export: skipped image %s: %s", im.id, exc)
            continue
        ents = []
        for a in by_image[im.id]:
            seg = a.segmentation
            ents.append(
                {
                    "id": a.id,
                    "name": entity_name(a, cats),
                    "rle_size": [h, w],
                    "rle_counts": seg["counts"],
                    "area": rle_utils.area(seg),
                    "bbox": rle_utils.bbox(seg),
                    "iscrowd": int(a.iscrowd),
                }
            )
        lic = im.extra.get("license")
        yield {
            "image": {"bytes": data, "path": im.file_name},
            "image_id": im.id,
            "file_name": im.file_name,
            "height": h,
            "width": w,
            "split": (splits or {}).get(im.id) or im.extra.get("split") or "train",
            "source": im.source,
            "url": im.extra.get("url_image") or im.extra.get("url"),
            "license": None if lic is None else str(lic),
            "attribution": im.extra.get("attribution"),
            "entities": ents,
        }


def _token(token: str | None) -> str | None:
    if token:
        return token
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # no login
        return None


def export_hf(
    source: Any,
    out_dir: str | Path,
    *,
    images_dir: str | Path | None = None,
    rows_per_group: int = 16,
    save_to_disk: bool = True,
    push_to_hub: str | None = None,
    token: str | None = None,
    progress: Callable[[int], object] | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/parquet/{split}.parquet`` (self-contained) and, when ``save_to_disk``,
    ``out_dir/hf`` (``datasets.load_from_disk``: a DatasetDict by split).

    Args:
        source: a Workspace (approved masks + stage-2 names), an EntitySeg/COCO dict or JSON path.
        images_dir: folder of the JSON's ``file_name`` entries (a workspace uses its root).
        push_to_hub: a repo id; needs a token (argument, ``HF_TOKEN`` or a saved login).
    Returns ``{"parquet": {split: path}, "hf": path | None, "rows": {split: n},
    "skipped": [{image_id, error}]}`` (unreadable images are left out and listed).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from entityseg_data.export.entityseg import release_coco

    if push_to_hub and not _token(token):
        raise ConfigError(
            "push_to_hub needs a Hugging Face token: set HF_TOKEN or run `huggingface-cli login`"
        )
    coco, root, ws = release_coco(source, images_dir, what="export_hf")
    splits: dict[int, str] = {}
    if ws is not None:
        with ws.catalog() as cat:
            splits = {r.id: r.split for r in cat.images(status=None) if r.split}
    features = hf_features()
    schema = features.arrow_schema
    out = Path(out_dir)
    (out / "parquet").mkdir(parents=True, exist_ok=True)
    writers: dict[str, Any] = {}
    buffers: dict[str, list[dict[str, Any]]] = {}
    rows: dict[str, int] = {}
    tmp_paths: dict[str, Path] = {}
    skipped: list[dict[str, Any]] = []

    def flush(split: str) -> None:
        if buffers.get(split):
            writers[split].write_table(pa.Table.from_pylist(buffers[split], schema=schema))
            buffers[split] = []

    try:
        for row in iter_rows(coco, root, skipped, splits=splits):
            split = str(row["split"])
            if split not in writers:
                tmp_paths[split] = out / "parquet" / f".{split}.parquet.tmp"
                writers[split] = pq.ParquetWriter(tmp_paths[split], schema)
                buffers[split] = []
            buffers[split].append(row)
            rows[split] = rows.get(split, 0) + 1
            if len(buffers[split]) >= rows_per_group:
                flush(split)
            if progress is not None:
                progress(1)
        for split in writers:
            flush(split)
    finally:
        for w in writers.values():
            w.close()
    paths = {}
    for split, tmp in tmp_paths.items():
        final = out / "parquet" / f"{split}.parquet"
        os.replace(tmp, final)
        paths[split] = final
    result: dict[str, Any] = {"parquet": paths, "hf": None, "rows": rows, "skipped": skipped}
    if save_to_disk or push_to_hub:
        from datasets import Dataset, DatasetDict

        dd = DatasetDict(
            {
                s: Dataset.from_parquet(str(p), features=features, cache_dir=str(out / ".cache"))
                for s, p in paths.items()
            }
        )
        if save_to_disk:
            dd.save_to_disk(str(out / "hf"))
            result["hf"] = out / "hf"
        if push_to_hub:
            dd.push_to_hub(push_to_hub, token=_token(token))
            result["hub"] = push_to_hub
        del dd
        import shutil

        shutil.rmtree(out / ".cache", ignore_errors=True)
    log.info("HF export in %s: %s", out, rows)
    return result
