"""Load and validate evaluation inputs.

Ground truth: a COCO / EntitySeg instance JSON (path or dict). Categories are ignored
(class-agnostic evaluation). Segmentations may be compressed RLE, uncompressed RLE or polygons;
every RLE's size must equal its image's ``height x width``.

Predictions, either:

* a COCO results JSON: a list of ``{"image_id", "segmentation", "score"}`` (``category_id`` and
  ``bbox`` are ignored), or a dict with such a list under ``"annotations"``;
* a folder of label-map PNGs, one per image, named after the GT ``file_name`` stem or the image
  id (``<stem>.png`` / ``<id>.png``): pixel value k > 0 = entity k (8/16/32-bit grey, or RGB
  with k = R + 256 G + 65536 B), 0 = no entity. Scores come from an optional ``scores.json`` in the
  folder, ``{"<stem or id>": {"<k>": score}}``; missing scores are 1.0.

Any problem raises one :class:`~entityseg_data.errors.DataError` naming the file and record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.evaluation.image_eval import GTImage, PredImage
from entityseg_data.io import files as io_files
from entityseg_data.io.coco import (
    CocoDataset,
    checked_rle,
    checked_score,
    read_coco,
    read_results,
)
from entityseg_data.masks import rle as rle_utils


@dataclass(frozen=True)
class GTSet:
    """Validated ground truth: images by ascending id."""

    images: dict[int, GTImage]
    file_names: dict[int, str]
    source: str

    @property
    def image_ids(self) -> list[int]:
        return sorted(self.images)


def _segmentation(seg: Any, h: int, w: int, where: str) -> dict[str, Any]:
    try:
        return checked_rle(seg, h, w)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def _areas(anns: Sequence[Any]) -> np.ndarray:
    """(N,) float64: each annotation's ``area`` when given, else its pixel count (one batch)."""
    out = np.array([np.nan if a.area is None else a.area for a in anns], dtype=np.float64)
    missing = np.flatnonzero(np.isnan(out))
    if missing.size:
        out[missing] = rle_utils.areas([anns[i].segmentation for i in missing])
    return out


def load_gt(source: str | Path | Mapping[str, Any]) -> GTSet:
    """Validated GT of a COCO/EntitySeg JSON file or dict (:func:`entityseg_data.io.coco.
    read_coco`, strict: one DataError naming the file and record)."""
    return gt_set(read_coco(source, what="ground truth"))


def gt_set(ds: CocoDataset) -> GTSet:
    """The evaluation view of a read COCO dataset (crowd flags, areas as given or counted)."""
    per = ds.annotations_by_image()
    images = {}
    for im in ds.images:
        items = per[im.id]
        images[im.id] = GTImage(
            image_id=im.id,
            height=im.height,
            width=im.width,
            rles=tuple(a.segmentation for a in items),
            crowd=np.array([a.iscrowd for a in items], dtype=bool),
            areas=_areas(items),
        )
    file_names = {im.id: im.file_name or str(im.id) for im in ds.images}
    return GTSet(images=images, file_names=file_names, source=ds.source)


def load_predictions(
    source: str | Path | list[Any] | Mapping[str, Any], gt: GTSet
) -> dict[int, PredImage | LabelMapRef]:
    """Predictions by image id (every GT image present, possibly empty), validated against
    ``gt``. ``source``: results JSON path/list/dict (read by the strict
    :func:`entityseg_data.io.coco.read_results`) or a label-map PNG folder."""
    if isinstance(source, str | Path) and Path(source).is_dir():
        return load_label_map_folder(Path(source), gt)
    sizes = {iid: (g.height, g.width) for iid, g in gt.images.items()}
    per: dict[int, tuple[list, list]] = {i: ([], []) for i in gt.images}
    for r in read_results(source, sizes):
        per[r.image_id][0].append(r.segmentation)
        per[r.image_id][1].append(r.score)
    return {
        iid: PredImage(rles=tuple(r), scores=np.asarray(s, dtype=np.float64))
        for iid, (r, s) in per.items()
    }


def read_label_map(path: Path) -> np.ndarray:
    """(H, W) int64 label map of a PNG (grey 8/16/32 bit, palette indices, or RGB ids)."""
    from entityseg_data.io.coco import panoptic_ids
    from entityseg_data.io.images import read_label_array

    a = read_label_array(path, "label map")
    if a.ndim == 3 and a.shape[2] == 3:  # RGB ids (RGBA read as RGB)
        return panoptic_ids(a)
    return a.astype(np.int64)


def label_map_predictions(
    label_map: np.ndarray, scores: Mapping[int, float] | None = None, where: str = "label map"
) -> PredImage:
    """Predictions of an (H, W) label map (k > 0 = entity k), in ascending k; ``scores`` by k
    (missing = 1.0)."""
    if label_map.ndim != 2:
        raise DataError(f"{where}: label map must be (H, W), got shape {label_map.shape}")
    by_label = rle_utils.label_map_to_rles(label_map)  # ascending labels
    labels = list(by_label)
    rles = by_label
    sc = []
    for k in labels:
        s = 1.0 if scores is None else scores.get(k, 1.0)
        sc.append(checked_score(s, f"{where}: label {k}"))
    return PredImage(rles=tuple(rles[k] for k in labels), scores=np.asarray(sc, np.float64))


@dataclass(frozen=True)
class LabelMapRef:
    """A label-map PNG not read yet (folders are read one image at a time, in the worker)."""

    path: Path
    scores: tuple[tuple[int, Any], ...]
    scores_file: Path

    def load(self, gt: GTImage) -> PredImage:
        lm = read_label_map(self.path)
        if lm.shape != (gt.height, gt.width):
            raise DataError(
                f"{self.path}: label map size {lm.shape[0]}x{lm.shape[1]} differs from the "
                f"image size {gt.height}x{gt.width}"
            )
        return label_map_predictions(lm, dict(self.scores), where=str(self.path))


def resolve(pred: PredImage | LabelMapRef, gt: GTImage) -> PredImage:
    """The predictions of one image (reads a label-map PNG when given a reference)."""
    return pred.load(gt) if isinstance(pred, LabelMapRef) else pred


def load_label_map_folder(folder: Path, gt: GTSet) -> dict[int, PredImage | LabelMapRef]:
    """Predictions from a folder of label-map PNGs (see the module docstring). File names and
    scores are checked now; each PNG is read when its image is evaluated (:func:`resolve`)."""
    by_key: dict[str, int] = {}
    for iid, fn in gt.file_names.items():
        by_key.setdefault(Path(fn).stem, iid)
        by_key.setdefault(str(iid), iid)
    scores_all: dict[str, Any] = {}
    sp = folder / "scores.json"
    if sp.exists():
        scores_all = io_files.read_json(sp, "scores")
        if not isinstance(scores_all, Mapping):
            raise DataError(f"{sp}: must map file stems to {{label: score}} objects")
    out: dict[int, PredImage | LabelMapRef] = {iid: PredImage() for iid in gt.images}
    for png in sorted(folder.glob("*.png")):
        if png.stem not in by_key:
            raise DataError(f"{png}: matches no ground-truth image (unknown image id/file name)")
        iid = by_key[png.stem]
        raw = scores_all.get(png.stem, scores_all.get(str(iid), {}))
        try:
            sc = tuple((int(k), v) for k, v in dict(raw).items())
        except (TypeError, ValueError):
            raise DataError(f"{sp}: scores of {png.stem!r} must map labels to numbers") from None
        for k, v in sc:
            checked_score(v, f"{sp}: {png.stem} label {k}")
        out[iid] = LabelMapRef(path=png, scores=sc, scores_file=sp)
    return out
