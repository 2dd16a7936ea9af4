"""ADE20K source, for both public layouts, with the masks carried in as pre-annotations.

Layouts (``DIR`` is the dataset root holding ``images/``):

* **ADE20K 2021** (``ADE20K_2021_17_01``): ``images/ADE/{training,validation}/<group>/<scene>/
  ADE_*.jpg`` beside ``ADE_*_seg.png``, ``ADE_*.json`` and a folder ``ADE_*/`` of
  ``instance_NNN_ADE_*.png`` (the scene is the parent folder). In ``_seg.png`` the class of a
  pixel is ``R // 10 * 256 + G`` (the JSON objects' ``name_ndx``) and the blue channel tells the
  object instances apart; each distinct non-zero (class, B) region is exactly the visible part of
  one whole object (checked on the three images of the CSAILVision sample: one region per whole
  object of the JSON; each region is the 255-valued pixels of that object's ``instance_NNN``
  PNG, where 128 marks the occluded, amodal part, up to a few hundred pixels). **Entities**:
  one per (class, B) region, i.e. per visible object instance, non-overlapping by construction;
  named by the first synonym of the JSON object's ``name`` (``"car, auto, automobile"`` ->
  ``car``), ``category_id`` = ``name_ndx``. Object parts (``part_level`` > 0, ``_parts_N.png``)
  are not entities. Without a ``_seg.png`` the visible pixels of the whole-object instance PNGs
  are used instead.
* **SceneParsing** (``ADEChallengeData2016``): ``images/{training,validation}/ADE_*.jpg`` and
  ``annotations/{training,validation}/ADE_*.png``, one 8-bit class index per pixel (0 = not
  labelled, 1..150 = the classes of ``objectInfo150``), plus ``sceneCategories.txt``
  (``ADE_train_00000001 airport_terminal``). The format has no instances, so **entities** are
  defined as: for a *thing* class, each 8-connected component of its pixels (touching objects of
  one class therefore merge into one entity: a pre-annotation for a person to split); for a
  *stuff* class, all its pixels in the image (one entity per stuff class, connected or not).
  Thing/stuff is the ``Stuff`` column of the release's ``objectInfo150.csv`` (35 stuff classes:
  wall, building, sky, floor, ceiling, road, grass, ...); components smaller than ``min_area``
  pixels (default 0: none dropped) are left out.

Kinds: SceneParsing classes get ``thing``/``stuff`` from that table; an ADE20K 2021 object gets
the kind of the ADE150 class with the same first synonym when there is one, else none (the full
release has 3,688 classes without a thing/stuff flag).

Each image gets the domain tags ``ade20k``, its split and its scene category.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source
from entityseg_data.io.files import parse_json, read_bytes
from entityseg_data.masks.runs import paint_masks

if TYPE_CHECKING:
    from entityseg_data.ingest.preannotations import PreAnnotation

log = logging.getLogger(__name__)

ADE20K_LICENSE = (
    "ADE20K terms of use (MIT CSAIL; research and education; images keep their own copyright)"
)
MODEL_VERSION = "source:ade20k"

#: The 150 SceneParsing classes (label value k = ADE150_NAMES[k - 1]), first synonym of each
#: ``objectInfo150`` name.
ADE150_NAMES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "window", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
#: Label values marked ``Stuff`` = 1 in ``objectInfo150.csv`` (the other 115 are things).
ADE150_STUFF: frozenset[int] = frozenset(
    {1, 2, 3, 4, 6, 7, 10, 12, 14, 17, 22, 26, 27, 29, 30, 47, 49, 52, 53, 55, 60, 61, 62}
    | {69, 80, 85, 92, 95, 97, 102, 106, 110, 114, 129, 141}
)
_ADE150_BY_NAME = {n: k for k, n in enumerate(ADE150_NAMES, start=1)}


def ade150_kind(label: int) -> str:
    """``thing`` or ``stuff`` of a SceneParsing label value 1..150."""
    return "stuff" if int(label) in ADE150_STUFF else "thing"


def first_synonym(name: str) -> str:
    """``"car, auto, automobile"`` -> ``"car"`` (ADE20K names are WordNet synonym lists)."""
    return str(name).split(",")[0].strip()


def _read_png(path: Path, what: str) -> np.ndarray:
    from entityseg_data.io.images import read_label_array

    return read_label_array(path, what)


def _read_ade_json(path: Path) -> dict[str, Any]:
    data = read_bytes(path, max_bytes=256 << 20)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # some ADE20K JSONs are Latin-1
        text = data.decode("latin-1")
    obj = parse_json(text, str(path))
    ann = obj.get("annotation") if isinstance(obj, dict) else None
    if not isinstance(ann, dict) or not isinstance(ann.get("object", []), list):
        raise DataError(f"{path}: not an ADE20K annotation file (no 'annotation.object' list)")
    return ann


def _whole_objects(ann: dict[str, Any], where: Path) -> list[dict[str, Any]]:
    out = []
    for i, o in enumerate(ann.get("object", [])):
        try:
            level = int((o.get("parts") or {}).get("part_level", 0))
            o_ndx = int(o["name_ndx"])
            name = str(o["name"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DataError(f"{where}: object[{i}] lacks name / name_ndx / parts") from None
        if level == 0:
            out.append({**o, "name_ndx": o_ndx, "name": name})
    return out


def _object_info(o: dict[str, Any]) -> dict[str, Any]:
    short = first_synonym(o["name"])
    k = _ADE150_BY_NAME.get(short)
    return {
        "name": short,
        "category_id": int(o["name_ndx"]),
        "kind": ade150_kind(k) if k is not None else None,
    }


def full_label_map(image: Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``(label_map, infos)`` of an ADE20K 2021 image ``.../ADE_*.jpg``: (H, W) int32 with
    entity i+1 for ``infos[i]`` (see the module docstring)."""
    seg_path = image.with_name(image.stem + "_seg.png")
    json_path = image.with_suffix(".json")
    ann = _read_ade_json(json_path) if json_path.is_file() else {"object": []}
    objects = _whole_objects(ann, json_path)
    by_class = {o["name_ndx"]: o for o in objects}
    if seg_path.is_file():
        seg = _read_png(seg_path, "ADE20K _seg.png")
        if seg.ndim != 3 or seg.shape[2] < 3:
            raise DataError(f"{seg_path}: an ADE20K _seg.png must be RGB, got {seg.shape}")
        seg = seg[..., :3].astype(np.int64)
        cls = seg[..., 0] // 10 * 256 + seg[..., 1]
        key = cls * 256 + seg[..., 2]
        key[cls == 0] = 0
        keys, inverse = np.unique(key, return_inverse=True)
        labels = np.arange(keys.size, dtype=np.int32) - (1 if keys.size and keys[0] == 0 else 0)
        lm = (labels[inverse.reshape(key.shape)] + 1).astype(np.int32)
        infos = []
        for k in keys[keys > 0]:
            c = int(k // 256)
            o = by_class.get(c)
            infos.append(_object_info(o) if o else {"category_id": c})
        return lm, infos
    if not objects:
        raise DataError(f"{image}: no {seg_path.name} and no objects in {json_path.name}")
    for o in objects:
        if not o.get("instance_mask"):
            raise DataError(f"{json_path}: object {o.get('id')} has no instance_mask")
    paths = [image.parent / str(o["instance_mask"]) for o in objects]

    def visible(path: Path) -> np.ndarray:
        m = _read_png(path, "ADE20K instance mask")
        return (m[..., 0] if m.ndim == 3 else m) == 255  # 255 = visible, 128 = occluded part

    # the mask core's label map (object i -> i + 1, later objects win), masks read one by one
    lm = paint_masks(
        (visible(p) for p in paths),
        policy="later_wins",
        dtype=np.int32,
        where=[str(p) for p in paths],
    )
    return lm, [_object_info(o) for o in objects]


def scene_parsing_label_map(
    annotation: Path, *, min_area: int = 0
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``(label_map, infos)`` of a SceneParsing annotation PNG (class index per pixel):
    8-connected components of thing classes, whole stuff classes (module docstring)."""
    from skimage.measure import label as cc_label

    cls = _read_png(annotation, "SceneParsing annotation")
    if cls.ndim != 2:
        raise DataError(f"{annotation}: a SceneParsing annotation must be single-channel")
    cls = cls.astype(np.int64)
    if cls.size and int(cls.max()) > len(ADE150_NAMES):
        raise DataError(
            f"{annotation}: class index {int(cls.max())} is not in 0..{len(ADE150_NAMES)}"
        )
    lm = np.zeros(cls.shape, np.int32)
    infos: list[dict[str, Any]] = []
    for c in (int(v) for v in np.unique(cls) if v > 0):
        mask = cls == c
        info = {"name": ADE150_NAMES[c - 1], "category_id": c, "kind": ade150_kind(c)}
        if info["kind"] == "stuff":
            parts = [mask]
        else:
            comp, n = cc_label(mask, connectivity=2, return_num=True)
            parts = [comp == i for i in range(1, n + 1)]
        for part in parts:
            if min_area and int(part.sum()) < min_area:
                continue
            infos.append(dict(info))
            lm[part] = len(infos)
    return lm, infos


def _pre(
    builder: Callable[[Path], tuple[np.ndarray, list[dict[str, Any]]]],
    path: Path,
    raw_h: int,
    raw_w: int,
    orientation: int,
) -> PreAnnotation:
    from entityseg_data.ingest.preannotations import from_label_map

    lm, infos = builder(path)
    return from_label_map(lm, infos, raw_h, raw_w, orientation, model_version=MODEL_VERSION)


class Ade20kSource(Source):
    """Images of an ADE20K folder (``DIR`` is the dataset root holding ``images/``), with their
    masks as pre-annotations (``pre_annotations=False``: images only)."""

    kind = "ade20k"

    def __init__(
        self,
        *,
        root: str | os.PathLike[str],
        license: str = ADE20K_LICENSE,
        pre_annotations: bool = True,
        min_area: int = 0,
        domain_tags: tuple[str, ...] = ("ade20k",),
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"ade20k:{root}")
        self.root = Path(root)
        self.license = license
        self.pre_annotations = pre_annotations
        self.min_area = int(min_area)
        self.domain_tags = tuple(domain_tags)
        if not (self.root / "images").is_dir():
            raise DataError(
                f"ade20k source: {self.root} has no images/ folder (expected the "
                f"ADEChallengeData2016 or ADE20K_2021_17_01 root)"
            )

    def _scenes(self) -> dict[str, str]:
        scenes = {}
        table = self.root / "sceneCategories.txt"
        if table.exists():
            for line in table.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    scenes[parts[0]] = parts[1]
        return scenes

    def _pre_annotation(
        self, path: Path, rel: tuple[str, ...], split: str | None
    ) -> Callable[[int, int, int], PreAnnotation] | None:
        if not self.pre_annotations:
            return None
        if rel and rel[0] == "ADE":  # the 2021 layout
            if (
                path.with_name(path.stem + "_seg.png").is_file()
                or path.with_suffix(".json").is_file()
            ):
                return partial(_pre, full_label_map, path)
            return None
        if split is None:
            return None
        ann = self.root / "annotations" / split / f"{path.stem}.png"
        if not ann.is_file():
            return None
        return partial(_pre, partial(scene_parsing_label_map, min_area=self.min_area), ann)

    def items(self) -> Iterator[Item]:
        scenes = self._scenes()
        images = self.root / "images"
        for dirpath, dirnames, filenames in os.walk(images):
            dirnames.sort()
            for name in sorted(filenames):
                if not (name.startswith("ADE_") and name.lower().endswith(".jpg")):
                    continue
                path = Path(dirpath) / name
                stem = path.stem
                rel = path.relative_to(images).parts
                split = next((p for p in rel if p in ("training", "validation")), None)
                scene = scenes.get(stem)
                if scene is None and len(rel) >= 3 and rel[0] == "ADE":
                    scene = rel[-2]
                tags = tuple(t for t in (*self.domain_tags, split, scene and f"scene:{scene}") if t)
                pre = self._pre_annotation(path, rel, split)
                yield Item(
                    source=self.kind,
                    source_id=stem,
                    path=str(path.resolve()),
                    license=self.license,
                    attribution=f"ADE20K {stem}",
                    domain_tags=tags,
                    extra={k: v for k, v in (("scene", scene), ("split", split)) if v},
                    pre_annotation=pre,
                    pre_annotation_version=MODEL_VERSION if pre else None,
                )
