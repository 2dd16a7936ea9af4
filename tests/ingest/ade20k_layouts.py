"""Small ADE20K fixtures written in the real layouts (facts from the CSAILVision ADE20K sample
and toolkit, ``utils/utils_ade20k.py``; SceneParsing ``ADEChallengeData2016``).

2021 layout, per image: ``ADE_*.jpg``; ``ADE_*_seg.png`` (RGB: class = R // 10 * 256 + G = the
JSON object's ``name_ndx``, B = instance code); ``ADE_*.json`` (``{"annotation": {"filename",
"folder", "imsize": [H, W, 3], "source", "scene", "object": [{"id", "name", "name_ndx",
"hypernym", "raw_name", "attributes", "depth_ordering_rank", "occluded", "crop", "parts":
{"hasparts", "ispartof", "part_level"}, "instance_mask", "polygon": {"x", "y"},
"saved_date"}]}}``); ``ADE_*/instance_NNN_ADE_*.png`` (L: 255 visible, 128 occluded, 0 outside).
SceneParsing: ``images/<split>/ADE_*.jpg``, ``annotations/<split>/ADE_*.png`` (L, 0..150),
``sceneCategories.txt``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 48, 64

#: (id, name, name_ndx, raw name) of the 2021 fixture's whole objects, and the visible masks
OBJECTS_2021 = [
    (0, "wall", 2978, "wall"),
    (1, "person, individual, someone, somebody, mortal, soul", 1831, "person"),
    (2, "person, individual, someone, somebody, mortal, soul", 1831, "woman"),
    (3, "car, auto, automobile, machine, motorcar", 401, "car"),
    (5, "sidewalk cafe, terrace", 2376, "café"),  # no ADE150 class: kind unknown
]


def _masks_2021() -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Visible and amodal masks by object id: the car hides the right part of person 2."""
    full = {k: np.zeros((H, W), bool) for k, *_ in OBJECTS_2021}
    full[0][:, :] = True
    full[1][10:40, 5:15] = True
    full[2][12:44, 30:44] = True
    full[3][25:45, 38:60] = True
    full[5][0:6, 50:64] = True
    visible = {}
    taken = np.zeros((H, W), bool)
    for k in (5, 3, 1, 2, 0):  # depth order: front first
        visible[k] = full[k] & ~taken
        taken |= full[k]
    return visible, full


def write_2021(root: Path, stem: str = "ADE_train_00000007", *, seg: bool = True) -> Path:
    """One image of the 2021 layout under ``root/images/ADE/training/urban/street``; returns
    the image path. Also writes a part (a windshield of the car) that is not an entity."""
    folder = root / "images" / "ADE" / "training" / "urban" / "street"
    (folder / stem).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / f"{stem}.jpg")
    visible, full = _masks_2021()
    rgb = np.zeros((H, W, 3), np.uint8)
    objects = []
    for n, (oid, name, ndx, raw) in enumerate(OBJECTS_2021):
        rgb[visible[oid]] = (ndx // 256 * 10, ndx % 256, 8 * (n + 1))
        inst = np.where(visible[oid], 255, np.where(full[oid], 128, 0)).astype(np.uint8)
        rel = f"{stem}/instance_{oid:03d}_{stem}.png"
        Image.fromarray(inst, "L").save(folder / rel)
        ys, xs = np.nonzero(full[oid])
        objects.append(
            {
                "id": oid,
                "name": name,
                "name_ndx": ndx,
                "hypernym": [name, "entity"],
                "raw_name": raw,
                "attributes": [],
                "depth_ordering_rank": n + 1,
                "occluded": "no",
                "crop": "0",
                "parts": {"hasparts": [6] if oid == 3 else [], "ispartof": [], "part_level": 0},
                "instance_mask": rel,
                "polygon": {
                    "x": [int(xs.min()), int(xs.max())],
                    "y": [int(ys.min()), int(ys.max())],
                },
                "saved_date": "25-Sep-2005 20:19:10",
            }
        )
    part = np.zeros((H, W), np.uint8)
    part[27:31, 42:56] = 255
    Image.fromarray(part, "L").save(folder / f"{stem}/instance_006_{stem}.png")
    objects.append(
        {
            "id": 6,
            "name": "windshield, windscreen",
            "name_ndx": 3057,
            "hypernym": [],
            "raw_name": "windshield",
            "attributes": [],
            "depth_ordering_rank": 6,
            "occluded": "no",
            "crop": "0",
            "parts": {"hasparts": [], "ispartof": 3, "part_level": 1},
            "instance_mask": f"{stem}/instance_006_{stem}.png",
            "polygon": {"x": [42, 56], "y": [27, 31]},
            "saved_date": "25-Sep-2005 20:19:10",
        }
    )
    parts_png = np.zeros((H, W, 3), np.uint8)
    parts_png[part > 0] = (110, 241, 255)
    Image.fromarray(parts_png).save(folder / f"{stem}_parts_1.png")
    if seg:
        Image.fromarray(rgb).save(folder / f"{stem}_seg.png")
    ann = {
        "annotation": {
            "filename": f"{stem}.jpg",
            "folder": "ADE20K_2021_17_01/images/ADE/training/urban/street",
            "imsize": [H, W, 3],
            "source": {"folder": "x", "filename": "y.jpg", "origin": "test fixture"},
            "scene": ["outdoor", "urban", "street"],
            "object": objects,
        }
    }
    # like some real files: Latin-1, not UTF-8 (the raw name "café")
    (folder / f"{stem}.json").write_bytes(json.dumps(ann, ensure_ascii=False).encode("latin-1"))
    return folder / f"{stem}.jpg"


def expected_2021() -> list[tuple[str, int, str | None, np.ndarray]]:
    """(name, category_id, kind, visible mask) of the 2021 fixture's entities."""
    visible, _ = _masks_2021()
    kinds = {0: "stuff", 1: "thing", 2: "thing", 3: "thing", 5: None}
    out = []
    for oid, name, ndx, _ in OBJECTS_2021:
        out.append((name.split(",")[0], ndx, kinds[oid], visible[oid]))
    return out


def scene_parsing_classes() -> np.ndarray:
    """(H, W) uint8 class indices: wall (1, stuff) in two separate pieces; persons (13) as two
    blobs, two touching ones and a diagonal neighbour; a 2-pixel car (21); 0 elsewhere."""
    c = np.zeros((H, W), np.uint8)
    c[0:8, :] = 1
    c[40:48, :] = 1
    c[10:20, 2:8] = 13  # person A
    c[10:20, 20:26] = 13  # person B
    c[10:20, 26:32] = 13  # person C touching B: one component
    c[20, 32] = 13  # diagonal neighbour of C (8-connected): same component
    c[30:32, 50] = 21  # tiny car
    return c


def write_scene_parsing(root: Path, stem: str = "ADE_val_00000003") -> Path:
    """One SceneParsing image under ``root`` (ADEChallengeData2016 layout); returns its path."""
    (root / "images" / "validation").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "validation").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    img = root / "images" / "validation" / f"{stem}.jpg"
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(img)
    Image.fromarray(scene_parsing_classes(), "L").save(
        root / "annotations" / "validation" / f"{stem}.png"
    )
    (root / "sceneCategories.txt").write_text(f"{stem} street\n")
    return img
