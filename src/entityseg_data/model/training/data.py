"""Training data: COCO/EntitySeg records, the CropFormer and LSJ mappers, sampler and collate.

* :func:`load_records` reads an EntitySeg/COCO instance JSON (path or dict) + image root into
  light :class:`Record` objects; masks stay encoded (checked compressed RLE) and are decoded one
  at a time inside the mapper.
* :class:`EntityCropMapper` is the official ``EntityCropDatasetMapper(is_train=True)``
  (REFERENCE.md 2.2): one short side drawn from ``min_sizes`` and one horizontal flip shared by
  all views; view 0 = the flipped image resized with the ``resize_shape`` rule; views 1..
  = ``num_crops`` distinct corner crops (``crop_boxes``, the geometry of prediction) cut from the
  flipped ORIGINAL-resolution image and resized with the same rule; GT masks cut and
  nearest-resized with each view; all non-crowd entities kept in every view in the same order with
  a validity flag (non-empty box and non-empty mask).
* :class:`LSJMapper` is the Mask2Former baseline's ``coco_instance_lsj`` (REFERENCE 2.6): flip,
  ResizeScale(0.1..2.0 of 1024), FixedSizeCrop(1024) padded with 128; empty instances dropped.
* :class:`FullViewMapper`: CropFormer's full view only (V = 1), e.g. for Mask2Former at 800 px.
* :class:`StreamSampler` + :class:`TrainDataset`: each sample's randomness comes from its global
  stream position (``numpy`` ``default_rng([seed, position])``), so augmentations and the loss's
  random points do not depend on workers, world size or restarts (exact resume).
* :func:`collate` builds ``(B, V, 3, Hp, Wp)`` normalised padded images and per-image
  :class:`~entityseg_data.model.training.losses.ImageTarget` s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.io import images as image_io
from entityseg_data.io.coco import read_coco
from entityseg_data.masks import rle as rle_utils
from entityseg_data.model.inference.views import crop_boxes, resize_shape
from entityseg_data.model.training.config import DataConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One image: its file, original size, and its NON-CROWD annotations (encoded)."""

    image_id: int
    path: str
    height: int
    width: int
    segmentations: tuple[Any, ...]  # checked compressed RLE dicts, decoded lazily
    bboxes: tuple[tuple[float, float, float, float] | None, ...]


@dataclass
class Sample:
    """A mapped training sample.

    ``views``: V (h_v, w_v, 3) uint8 RGB arrays; ``masks``: V (N, h_v, w_v) bool arrays (the same
    N entities in every view); ``valid``: (N, V) bool; ``seed``: int for the loss's random points.
    """

    views: list[np.ndarray]
    masks: list[np.ndarray]
    valid: np.ndarray
    image_id: int
    seed: int
    crop_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def load_records(
    source: str | os.PathLike[str] | Mapping[str, Any],
    image_root: str | os.PathLike[str],
    *,
    filter_empty: bool = True,
    max_images: int = 0,
) -> list[Record]:
    """Records of a COCO/EntitySeg instance JSON (a path or an already-loaded dict).

    The file is read and validated by the toolkit's one COCO reader
    (:func:`entityseg_data.io.coco.read_coco`: sizes, ids, RLE runs checked; segmentations kept
    as compressed RLE). Crowd annotations are dropped (REFERENCE 1.4); with ``filter_empty``
    images without a non-crowd annotation are removed. Annotations with ``ignore`` != 0 are
    rejected, as detectron2's loader does, and so are empty segmentations. Records keep the
    JSON order of ``images``.
    """
    from entityseg_data.masks import rle as rle_ops

    ds = read_coco(source, what="training annotations", require_annotations=True)
    by_image: dict[int, list[Any]] = {}
    for ann in ds.annotations:
        if ann.extra.get("ignore", 0):
            raise DataError(f"{ds.source}: annotation id={ann.id} has ignore != 0 (unsupported)")
        if ann.iscrowd:
            continue
        if ann.format == "polygon" and rle_ops.area(ann.segmentation) == 0:
            raise DataError(f"{ds.source}: annotation id={ann.id} has an empty segmentation")
        by_image.setdefault(ann.image_id, []).append(ann)
    records = []
    root = str(image_root)
    for img in ds.images:
        anns = by_image.get(img.id, [])
        if filter_empty and not anns:
            continue
        records.append(
            Record(
                image_id=img.id,
                path=os.path.join(root, img.file_name),
                height=img.height,
                width=img.width,
                segmentations=tuple(a.segmentation for a in anns),
                bboxes=tuple(a.bbox for a in anns),
            )
        )
        if max_images and len(records) >= max_images:
            break
    if not records:
        raise DataError(f"{ds.source}: no usable training image (every image lacks annotations?)")
    return records


def read_image(path: str, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 upright RGB (the toolkit's one decoder, as ``predict`` reads images);
    its size must match the JSON's. Raises DataError naming the file."""
    return image_io.read_image(path, expect_hw=(height, width))


def decode_mask(segm: Any, height: int, width: int, where: str = "") -> np.ndarray:
    """(H, W) bool mask of a compressed/uncompressed RLE or polygon segmentation."""
    if isinstance(segm, Mapping):  # strict: size, then counts (RLEError names ``where``)
        rle = rle_utils.validate(segm, height, width, where=where)
    else:
        rle = rle_utils.to_compressed(segm, height, width, where=where)
    return rle_utils.decode(rle).astype(bool)


def resize_rgb(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """PIL bilinear resize (antialiased when shrinking) of an (H, W, 3) uint8 image."""
    from entityseg_data.model.inference.views import resize_rgb as _resize

    return _resize(image, hw)


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """PIL NEAREST resize of an (H, W) bool mask to ``hw`` = (h, w)."""
    from PIL import Image

    if mask.shape == tuple(hw):
        return np.ascontiguousarray(mask)
    im = Image.fromarray(np.ascontiguousarray(mask).view(np.uint8))
    return np.asarray(im.resize((int(hw[1]), int(hw[0])), Image.Resampling.NEAREST)).astype(bool)


def _bbox(rec: Record, k: int, mask: np.ndarray) -> tuple[float, float, float, float]:
    box = rec.bboxes[k]
    if box is not None:
        return box
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    )


def _box_valid(
    box: tuple[float, float, float, float],
    region: tuple[int, int, int, int],
    scale: tuple[float, float],
) -> bool:
    """The (already flipped) XYWH box clipped to ``region`` and scaled is non-empty (> 1e-5)."""
    x, y, w, h = box
    rx0, ry0, rx1, ry1 = region
    bw = (min(x + w, rx1) - max(x, rx0)) * scale[1]
    bh = (min(y + h, ry1) - max(y, ry0)) * scale[0]
    return bw > 1e-5 and bh > 1e-5


class EntityCropMapper:
    """CropFormer's training mapper (REFERENCE.md 2.2); views = [full, crop_1 .. crop_k]."""

    def __init__(self, *, config: DataConfig) -> None:
        if not config.min_sizes:
            raise DataError("data.min_sizes is empty")
        self.cfg = config

    def num_views(self) -> int:
        return 1 + self.cfg.num_crops

    def __call__(self, rec: Record, rng: np.random.Generator, seed: int = 0) -> Sample:
        cfg = self.cfg
        short = int(cfg.min_sizes[int(rng.integers(len(cfg.min_sizes)))])
        flip = bool(rng.random() >= 0.5)
        image = read_image(rec.path, rec.height, rec.width)
        if flip:
            image = image[:, ::-1]
        H, W = rec.height, rec.width
        regions = [(0, 0, W, H)]
        if cfg.num_crops > 0:
            boxes = crop_boxes(H, W, cfg.crop_side_ratio, cfg.crop_stride_ratio)
            if cfg.num_crops > len(boxes):
                raise DataError(f"data.num_crops={cfg.num_crops} > {len(boxes)} crops available")
            pick = rng.choice(len(boxes), size=cfg.num_crops, replace=False)
            regions += [boxes[int(i)] for i in sorted(pick.tolist())]
        sizes = [resize_shape(y1 - y0, x1 - x0, short, cfg.max_size) for x0, y0, x1, y1 in regions]
        views = [
            resize_rgb(image[y0:y1, x0:x1], hw) for (x0, y0, x1, y1), hw in zip(regions, sizes)
        ]
        n = len(rec.segmentations)
        masks = [np.zeros((n, h, w), dtype=bool) for h, w in sizes]
        valid = np.zeros((n, len(regions)), dtype=bool)
        for k, segm in enumerate(rec.segmentations):
            full = decode_mask(segm, H, W, f"{rec.path} annotation #{k}")
            x, y, bw, bh = _bbox(rec, k, full)
            if flip:
                full = full[:, ::-1]
                x = W - x - bw
            for v, ((x0, y0, x1, y1), hw) in enumerate(zip(regions, sizes)):
                m = resize_mask(full[y0:y1, x0:x1], hw)
                masks[v][k] = m
                scale = (hw[0] / (y1 - y0), hw[1] / (x1 - x0))
                valid[k, v] = _box_valid((x, y, bw, bh), (x0, y0, x1, y1), scale) and m.any()
        return Sample(
            views=views,
            masks=masks,
            valid=valid,
            image_id=rec.image_id,
            seed=seed,
            crop_boxes=regions[1:],
        )


class FullViewMapper(EntityCropMapper):
    """Multi-scale full view only (V = 1): the CropFormer mapper with ``num_crops = 0``."""

    def __init__(self, *, config: DataConfig) -> None:
        import dataclasses

        super().__init__(config=dataclasses.replace(config, num_crops=0))


class LSJMapper:
    """Large-scale jitter of the Mask2Former baselines (REFERENCE.md 2.6); V = 1."""

    def __init__(self, *, config: DataConfig) -> None:
        self.cfg = config

    def num_views(self) -> int:
        return 1

    def geometry(
        self, h: int, w: int, rng: np.random.Generator
    ) -> tuple[bool, tuple[int, int], tuple[int, int]]:
        """(flip, resized (h, w), crop offset (y, x)) drawn like detectron2's ResizeScale +
        FixedSizeCrop."""
        cfg = self.cfg
        flip = bool(rng.random() < 0.5)
        scale = rng.uniform(cfg.lsj_min_scale, cfg.lsj_max_scale)
        s = min(cfg.lsj_size * scale / h, cfg.lsj_size * scale / w)
        nh, nw = max(1, int(np.round(h * s))), max(1, int(np.round(w * s)))
        oy = int(np.round(max(nh - cfg.lsj_size, 0) * rng.uniform(0.0, 1.0)))
        ox = int(np.round(max(nw - cfg.lsj_size, 0) * rng.uniform(0.0, 1.0)))
        return flip, (nh, nw), (oy, ox)

    def __call__(self, rec: Record, rng: np.random.Generator, seed: int = 0) -> Sample:
        cfg = self.cfg
        size = cfg.lsj_size
        flip, (nh, nw), (oy, ox) = self.geometry(rec.height, rec.width, rng)
        image = read_image(rec.path, rec.height, rec.width)
        if flip:
            image = image[:, ::-1]
        img = resize_rgb(image, (nh, nw))[oy : oy + size, ox : ox + size]
        canvas = np.full((size, size, 3), cfg.lsj_pad_value, dtype=np.uint8)
        canvas[: img.shape[0], : img.shape[1]] = img
        kept = []
        for k, segm in enumerate(rec.segmentations):
            full = decode_mask(segm, rec.height, rec.width, f"{rec.path} annotation #{k}")
            if flip:
                full = full[:, ::-1]
            m = resize_mask(full, (nh, nw))[oy : oy + size, ox : ox + size]
            if m.any():
                pad = np.zeros((size, size), dtype=bool)
                pad[: m.shape[0], : m.shape[1]] = m
                kept.append(pad)
        masks = np.stack(kept) if kept else np.zeros((0, size, size), dtype=bool)
        return Sample(
            views=[canvas],
            masks=[masks],
            valid=np.ones((len(kept), 1), dtype=bool),
            image_id=rec.image_id,
            seed=seed,
        )


def build_mapper(config: DataConfig) -> EntityCropMapper | LSJMapper:
    """The mapper named by ``config.mapper``."""
    if config.mapper == "entity_crop":
        return EntityCropMapper(config=config)
    if config.mapper == "full":
        return FullViewMapper(config=config)
    if config.mapper == "lsj":
        return LSJMapper(config=config)
    raise DataError(f"unknown data.mapper {config.mapper!r}")


def sample_rng(seed: int, position: int) -> tuple[np.random.Generator, int]:
    """The augmentation RNG and the loss seed of the sample at global stream ``position``."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(position), 17])
    loss_seed = int(
        np.random.default_rng([int(seed) & 0xFFFFFFFF, int(position), 29]).integers(0, 2**62)
    )
    return rng, loss_seed


class TrainDataset:
    """Map-style dataset indexed by ``(record index, global stream position)`` keys."""

    def __init__(
        self,
        *,
        records: Sequence[Record],
        mapper: Callable[[Record, np.random.Generator, int], Sample],
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.mapper = mapper
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, position = key
        rng, loss_seed = sample_rng(self.seed, position)
        return self.mapper(self.records[index], rng, loss_seed)


class StreamSampler:
    """Infinite, resumable stream of ``(index, position)`` keys for one process.

    The global stream is a concatenation of per-epoch permutations of ``range(n)`` (epoch e shuffled
    with ``default_rng([seed, e])``); global position p goes to rank ``p % world_size``. ``start``
    is the number of GLOBAL positions already consumed (saved in checkpoints), so a restart yields
    exactly the keys an uninterrupted run would have.
    """

    def __init__(
        self,
        *,
        size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        shuffle: bool = True,
    ) -> None:
        if size <= 0:
            raise DataError("cannot sample from an empty dataset")
        self.size, self.seed, self.rank, self.world = size, seed, rank, world_size
        self.start, self.shuffle = start, shuffle

    def _perm(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, epoch, 3]).permutation(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start
        pos += (self.rank - pos) % self.world  # first position belonging to this rank
        epoch = pos // self.size
        perm = self._perm(epoch)
        while True:
            e = pos // self.size
            if e != epoch:
                epoch, perm = e, self._perm(e)
            yield int(perm[pos % self.size]), pos
            pos += self.world


@dataclass
class Batch:
    """A collated batch: ``images`` (B, V, 3, Hp, Wp) float32 normalised and padded;
    ``targets`` B ImageTargets (view masks unpadded); ``pad_hw`` = (Hp, Wp); ``seeds`` B ints."""

    images: Any
    targets: list[Any]
    pad_hw: tuple[int, int]
    seeds: list[int]
    image_ids: list[int]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            images=self.images.to(device, non_blocking=True),
            targets=[t.to(device) for t in self.targets],
            pad_hw=self.pad_hw,
            seeds=self.seeds,
            image_ids=self.image_ids,
        )


def collate(
    samples: Sequence[Sample],
    *,
    pixel_mean: Sequence[float] | None = None,
    pixel_std: Sequence[float] | None = None,
    size_divisibility: int = 32,
) -> Batch:
    """Stack samples into a :class:`Batch` (images normalised, zero-padded bottom/right)."""
    import torch

    from entityseg_data.model.inference.preprocess import PIXEL_MEAN, PIXEL_STD, stack_views
    from entityseg_data.model.training.losses import ImageTarget

    images, pad_hw = stack_views(
        [s.views for s in samples],
        pixel_mean=pixel_mean or PIXEL_MEAN,
        pixel_std=pixel_std or PIXEL_STD,
        size_divisibility=size_divisibility,
    )
    targets = [
        ImageTarget(
            masks=[torch.from_numpy(np.ascontiguousarray(m)) for m in s.masks],
            valid=torch.from_numpy(s.valid),
        )
        for s in samples
    ]
    return Batch(
        images=images,
        targets=targets,
        pad_hw=pad_hw,
        seeds=[s.seed for s in samples],
        image_ids=[s.image_id for s in samples],
    )


def workspace_records(
    path: str | os.PathLike[str], split: str = "train", *, filter_empty: bool = True
) -> list[Record]:
    """Records of a workspace's approved stage-1 masks, restricted to catalog ``split`` (images
    whose ``split`` column equals it; empty = all images). File names are relative to the
    workspace root (the upright normalised copy when the catalog has one)."""
    from entityseg_data.masks.store import workspace_to_coco
    from entityseg_data.workspace import Workspace

    ws = Workspace.open(path)
    coco = workspace_to_coco(ws, stage=1, statuses=("approved",))
    if split:
        with ws.catalog() as cat:
            keep = {r.id for r in cat.images(status=None, split=split)}
        coco = dict(coco)
        coco["images"] = [im for im in coco["images"] if int(im["id"]) in keep]
        coco["annotations"] = [a for a in coco["annotations"] if int(a["image_id"]) in keep]
    if not coco["images"]:
        raise DataError(f"{path}: no approved stage-1 annotation in split {split!r}")
    return load_records(coco, ws.root, filter_empty=filter_empty)


def records_from_config(config: DataConfig) -> list[Record]:
    """All training records named by a DataConfig (``workspace`` or ``train_json`` +
    ``extra_train``)."""
    if config.workspace:
        records = workspace_records(
            config.workspace, config.workspace_split, filter_empty=config.filter_empty
        )
        return records[: config.max_images] if config.max_images else records
    pairs = []
    if config.train_json:
        pairs.append((config.train_json, config.image_root or str(Path(config.train_json).parent)))
    pairs += list(config.extra_train)
    if not pairs:
        raise DataError("no training data: set data.train_json (and data.image_root)")
    records = []
    for js, root in pairs:
        records += load_records(js, root, filter_empty=config.filter_empty)
    if config.max_images:
        records = records[: config.max_images]
    log.info("training on %d images from %d file(s)", len(records), len(pairs))
    return records
