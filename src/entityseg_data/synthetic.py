"""Deterministic synthetic high-resolution entity scenes with exact ground truth.

Used by tests, benchmarks and the bundled demo when no real photos are wanted. A scene is a label
map whose entities cover the whole image (unless ``void_entities`` punches unlabelled holes):

- **stuff** regions: horizontal bands (sky, wall, ground, ...) with wavy boundaries, some split by
  a wavy vertical boundary;
- **things** painted on top in order (later ones occlude earlier ones): blobs with a radial
  outline, polygons, rings (with a hole showing what is behind), and
- **thin structures** (poles, wires: 2-7 px wide at 12 MP, sub-pixel at 800 px) and **small
  entities** (pebbles, coins: a few hundred pixels at 12 MP).

Every stuff boundary and blob outline carries a fine ripple (wavelength ~6-14 px, amplitude ~2-6 px
at 12 MP) that disappears when the image is resized to the lr 800 px copy: this is the "boundary
detail lost at 800 px". Each entity has its own colour and texture (flat, stripes, smooth noise,
fine grain) so images are not trivially segmentable by colour alone.

Rasterisation uses PIL's polygon/line/ellipse fill into a 32-bit image (C speed); colours come from
per-entity lookup tables. A 3000x4000 scene takes well under a second on one core.

Determinism: the same ``seed``/size/parameters give bit-identical outputs (numpy PCG64 + PIL).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from entityseg_data.errors import DataError
from entityseg_data.io import atomic_open, atomic_write_json

log = logging.getLogger(__name__)

STUFF_NAMES: tuple[str, ...] = (
    "sky",
    "wall",
    "ceiling",
    "floor",
    "grass",
    "road",
    "water",
    "mountain",
    "sand",
    "building",
    "snow",
    "field",
)
THING_NAMES: tuple[str, ...] = (
    "person",
    "car",
    "dog",
    "cat",
    "chair",
    "table",
    "bottle",
    "cup",
    "bird",
    "tree",
    "lamp",
    "bicycle",
    "book",
    "flower",
    "bag",
)
RING_NAMES: tuple[str, ...] = ("tire", "plate", "ring buoy")
THIN_NAMES: tuple[str, ...] = ("pole", "wire", "rope", "branch")
SMALL_NAMES: tuple[str, ...] = ("pebble", "coin", "leaf", "button", "insect")

#: name -> is it a thing (True) or stuff (False)
IS_THING: dict[str, bool] = {
    **{n: False for n in STUFF_NAMES},
    **{n: True for n in THING_NAMES + RING_NAMES + THIN_NAMES + SMALL_NAMES},
}


@dataclass(frozen=True)
class SceneEntity:
    """One entity of a synthetic scene: ``id`` is its value in the label map (1..N)."""

    id: int
    name: str
    kind: str  # "stuff" | "thing"
    shape: str  # "band" | "split" | "blob" | "polygon" | "ring" | "thin" | "small"
    area: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "shape": self.shape,
            "area": self.area,
        }


def _wavy(
    rng: np.random.Generator, n: int, base: float, amp_low: float, detail: float
) -> np.ndarray:
    """A 1D boundary of ``n`` samples: ``base`` + low-frequency waves + a fine ripple of amplitude
    ``detail`` pixels (wavelength 6-14 samples) + +-1 px jitter when ``detail`` > 0."""
    t = np.arange(n, dtype=np.float64)
    out = np.full(n, base, dtype=np.float64)
    for _ in range(3):
        period = rng.uniform(0.3, 1.5) * n
        out += amp_low * rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 7))
    if detail > 0:
        lam = rng.uniform(6.0, 14.0)
        out += detail * np.sin(2 * np.pi * t / lam + rng.uniform(0, 7))
        out += rng.integers(-1, 2, size=n)
    return out


def _blob_polygon(
    rng: np.random.Generator, cx: float, cy: float, r: float, detail: float
) -> list[tuple[float, float]]:
    """Radial outline r(theta) = r * (1 + sum of low harmonics) + a fine ripple (``detail`` px,
    arc wavelength ~8 px). Vertices ~1 px apart along the outline."""
    n = max(64, int(2 * np.pi * r))
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad: npt.NDArray[np.float64] = np.ones(n)
    for k in range(2, 6):
        rad += rng.uniform(0, 0.18 / k * 2) * np.cos(k * th + rng.uniform(0, 7))
    rad = r * np.clip(rad, 0.35, None)
    if detail > 0:
        k_fine = max(8, int(2 * np.pi * r / rng.uniform(6.0, 12.0)))
        rad += detail * np.cos(k_fine * th + rng.uniform(0, 7))
    xs = cx + rad * np.cos(th)
    ys = cy + rad * np.sin(th)
    return list(zip(xs.tolist(), ys.tolist()))


def _regular_polygon(
    rng: np.random.Generator, cx: float, cy: float, r: float
) -> list[tuple[float, float]]:
    """A rotated rectangle, triangle or star (convex and non-convex test shapes)."""
    kind = rng.integers(0, 3)
    rot = rng.uniform(0, np.pi)
    if kind == 0:  # rectangle
        a, b = r, r * rng.uniform(0.3, 1.0)
        pts = [(-a, -b), (a, -b), (a, b), (-a, b)]
    elif kind == 1:  # triangle
        pts = [(r * math.cos(t), r * math.sin(t)) for t in (0.0, 2.1, 4.2)]
    else:  # star
        k = int(rng.integers(5, 9))
        pts = []
        for i in range(2 * k):
            rr = r if i % 2 == 0 else r * rng.uniform(0.35, 0.6)
            t = np.pi * i / k
            pts.append((rr * math.cos(t), rr * math.sin(t)))
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def make_scene(
    seed: int,
    height: int = 3000,
    width: int = 4000,
    *,
    n_bands: int | None = None,
    n_things: int | None = None,
    n_thin: int | None = None,
    n_small: int | None = None,
    void_entities: int = 0,
    boundary_detail: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One synthetic scene.

    Args:
        seed: any int; the output is a pure function of the arguments.
        height, width: image size in pixels (>= 32 each).
        n_bands: stuff bands (default 2-4, some split in two => 2-8 stuff entities).
        n_things: blobs/polygons/rings (default 5-12).
        n_thin: thin structures (default 2-4).
        n_small: small entities (default 3-8).
        void_entities: blobs painted with 0 at the end (unlabelled area; default 0 = every pixel
            belongs to an entity).
        boundary_detail: add the fine ripple to outlines (scaled to the image size).

    Returns:
        ``(rgb, label_map, info)``: rgb uint8 (H, W, 3); label_map uint16 (H, W) with values
        0 (void) and 1..N (entities, every id present); info
        ``{"seed", "height", "width", "entities": [SceneEntity.to_json(), ...]}`` in id order.
    """
    if height < 32 or width < 32:
        raise DataError(f"make_scene: size {height}x{width} is too small (min 32x32)")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, height, width, 7])
    h, w = int(height), int(width)
    short = min(h, w)
    # fine ripple ~2-6 px at 12 MP, scaled with the short side (sub-pixel at 800 px)
    detail = (short / 3000.0) * rng.uniform(2.0, 6.0) if boundary_detail else 0.0

    entities: list[tuple[str, str, str]] = []  # (name, kind, shape), index + 1 = label

    def new_id(name: str, kind: str, shape: str) -> int:
        entities.append((name, kind, shape))
        return len(entities)

    # --- stuff: horizontal bands below wavy boundaries, some split by a wavy vertical boundary
    nb = max(1, int(n_bands) if n_bands is not None else int(rng.integers(2, 5)))
    stuff_names = [str(x) for x in rng.permutation(STUFF_NAMES)]
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    band = np.zeros((h, w), dtype=np.uint8)
    for b in range(1, nb):
        top = h * (b / nb) + rng.uniform(-0.08, 0.08) * h / nb
        boundary = _wavy(rng, w, top, 0.25 * h / nb, detail).astype(np.float32)
        band += yy >= boundary[None, :]
    stuff = np.zeros((h, w), dtype=np.int32)
    for b in range(nb):
        in_band = band == b
        sid = new_id(stuff_names[(2 * b) % len(stuff_names)], "stuff", "band")
        stuff[in_band] = sid
        if rng.random() < 0.5:
            sid2 = new_id(stuff_names[(2 * b + 1) % len(stuff_names)], "stuff", "split")
            split_x = _wavy(rng, h, rng.uniform(0.25, 0.75) * w, 0.05 * w, detail)
            stuff[in_band & (xx >= split_x.astype(np.float32)[:, None])] = sid2
    del band, yy, xx
    canvas = Image.fromarray(stuff, mode="I")
    del stuff
    draw = ImageDraw.Draw(canvas)

    # --- things
    nt = int(n_things) if n_things is not None else int(rng.integers(5, 13))
    for _ in range(nt):
        r = rng.uniform(0.04, 0.16) * short
        cx, cy = rng.uniform(0, w), rng.uniform(0.15 * h, h)
        kind = rng.random()
        if kind < 0.5:
            tid = new_id(str(rng.choice(THING_NAMES)), "thing", "blob")
            draw.polygon(_blob_polygon(rng, cx, cy, r, detail), fill=tid)
        elif kind < 0.85:
            tid = new_id(str(rng.choice(THING_NAMES)), "thing", "polygon")
            draw.polygon(_regular_polygon(rng, cx, cy, r), fill=tid)
        else:
            tid = new_id(str(rng.choice(RING_NAMES)), "thing", "ring")
            rr = 0.6 * r
            box = [cx - rr, cy - rr * rng.uniform(0.6, 1.0), cx + rr, cy + rr]
            draw.ellipse(box, outline=tid, width=max(2, int(rr * rng.uniform(0.2, 0.45))))

    # --- thin structures: straight poles and sagging wires, 2-7 px at 12 MP
    nthin = int(n_thin) if n_thin is not None else int(rng.integers(2, 5))
    for _ in range(nthin):
        lw = max(1, round(rng.uniform(2.0, 7.0) * short / 3000.0))
        if rng.random() < 0.5:
            tid = new_id("pole", "thing", "thin")
            x0 = rng.uniform(0, w)
            pts = [(x0, rng.uniform(0, 0.5 * h)), (x0 + rng.uniform(-0.05, 0.05) * w, h)]
        else:
            tid = new_id(str(rng.choice(THIN_NAMES[1:])), "thing", "thin")
            y0, y1 = rng.uniform(0.05, 0.6) * h, rng.uniform(0.05, 0.6) * h
            sag = rng.uniform(0.02, 0.12) * h
            t = np.linspace(0, 1, 64)
            px = -0.02 * w + t * 1.04 * w
            py = y0 + (y1 - y0) * t + sag * 4 * t * (1 - t)
            pts = list(zip(px.tolist(), py.tolist()))
        draw.line(pts, fill=tid, width=lw, joint="curve")

    # --- small entities: a few hundred pixels at 12 MP
    ns = int(n_small) if n_small is not None else int(rng.integers(3, 9))
    for _ in range(ns):
        rr = max(1.5, rng.uniform(5.0, 14.0) * short / 3000.0)
        cx, cy = rng.uniform(0, w), rng.uniform(0.3 * h, h)
        tid = new_id(str(rng.choice(SMALL_NAMES)), "thing", "small")
        draw.ellipse([cx - rr, cy - rr * rng.uniform(0.5, 1.0), cx + rr, cy + rr], fill=tid)

    # --- unlabelled holes
    for _ in range(int(void_entities)):
        r = rng.uniform(0.03, 0.08) * short
        draw.polygon(_blob_polygon(rng, rng.uniform(0, w), rng.uniform(0, h), r, detail), fill=0)

    raw = np.asarray(canvas)
    n = len(entities)
    counts = np.bincount(raw.ravel(), minlength=n + 1)
    keep = [i for i in range(1, n + 1) if counts[i] > 0]
    lut = np.zeros(n + 1, dtype=np.uint16)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.uint16)
    label_map = lut[raw]

    ents = [
        SceneEntity(
            id=new,
            name=entities[old - 1][0],
            kind=entities[old - 1][1],
            shape=entities[old - 1][2],
            area=int(counts[old]),
        )
        for new, old in enumerate(keep, start=1)
    ]
    rgb = _paint(rng, label_map, ents)
    info = {
        "seed": int(seed),
        "height": h,
        "width": w,
        "entities": [e.to_json() for e in ents],
    }
    return rgb, label_map, info


def _paint(
    rng: np.random.Generator, label_map: np.ndarray, ents: Sequence[SceneEntity]
) -> np.ndarray:
    """Colour + texture per entity from lookup tables: flat, stripes, smooth noise or grain."""
    h, w = label_map.shape
    n = len(ents) + 1
    palette = rng.integers(30, 226, size=(n, 3)).astype(np.int16)
    palette[0] = (0, 0, 0)
    tex = rng.integers(0, 4, size=n)
    amp_stripe = np.where(tex == 1, rng.integers(15, 40, size=n), 0).astype(np.int16)
    amp_noise = np.where(tex == 2, rng.integers(20, 50, size=n), 0).astype(np.int16)
    amp_grain = np.where(tex == 3, 3, 1).astype(np.int16)

    # stripes: period ~ 1/150 of the short side, one orientation per scene
    period = max(4, min(h, w) // 150)
    a, b = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    yy = np.arange(h, dtype=np.int32)[:, None]
    xx = np.arange(w, dtype=np.int32)[None, :]
    stripes = (((xx * a + yy * b) // period) & 1).astype(np.int16) * 2 - 1
    # smooth noise: a coarse random field upsampled bilinearly, in [-1, 1] * 64
    coarse = rng.integers(0, 256, size=(max(2, h // 64), max(2, w // 64)), dtype=np.uint8)
    smooth = np.asarray(
        Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16
    )
    smooth = (smooth - 128) // 2
    # fine grain: a tiled 256x256 block of +-8
    block = rng.integers(-8, 9, size=(256, 256), dtype=np.int16)
    grain = np.tile(block, (h // 256 + 1, w // 256 + 1))[:h, :w]

    lum = stripes * amp_stripe[label_map]
    lum += (smooth * amp_noise[label_map]) // 64
    lum += grain * amp_grain[label_map]
    out = palette[label_map]  # (H, W, 3) int16
    out += lum[..., None]
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def scene_names(info: dict[str, Any]) -> dict[int, str]:
    """label value -> entity name of a scene's ``info``."""
    return {int(e["id"]): str(e["name"]) for e in info["entities"]}


def write_dataset(
    out_dir: str | Path,
    n_images: int,
    *,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] = ((3000, 4000),),
    sources: Sequence[str] = ("synthetic",),
    image_format: str = "jpg",
    jpeg_quality: int = 90,
    label_maps: bool = False,
    json_name: str = "annotations.json",
    scene_kwargs: dict[str, Any] | None = None,
    write_images: bool = True,
) -> Path:
    """Write ``n_images`` scenes as an image folder plus an EntitySeg-style COCO JSON.

    Layout::

        out_dir/images/{i:06d}.jpg|png       (i = 1..n)
        out_dir/label_maps/{i:06d}.png       (uint16 PNG label maps, when ``label_maps``)
        out_dir/{json_name}

    Image ``i`` gets size ``sizes[(i - 1) % len(sizes)]`` (H, W), source
    ``sources[(i - 1) % len(sources)]`` and scene seed ``seed * 1_000_003 + i``.

    JSON: ``images[]`` ``{id, file_name (relative to images/), height, width, img_source,
    url_flag, url_dataset, url_image}``; ``annotations[]`` ``{id, image_id, segmentation
    (compressed RLE), area, bbox, category_id, iscrowd 0, category_id_ori (name), name}``;
    ``categories[]`` one per entity name ``{id, name, supercategory, isthing}`` (ids 1..K in name
    order). ``write_images=False`` writes only the JSON (statistics benchmarks need no pixels).
    Returns the JSON path.
    """
    from entityseg_data.masks import rle as rle_utils

    if image_format not in ("jpg", "png"):
        raise DataError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if label_maps:
        (out / "label_maps").mkdir(parents=True, exist_ok=True)
    names = sorted(IS_THING)
    cat_ids = {name: i + 1 for i, name in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in range(1, int(n_images) + 1):
        h, w = sizes[(i - 1) % len(sizes)]
        rgb, lm, info = make_scene(seed * 1_000_003 + i, h, w, **(scene_kwargs or {}))
        stem = f"{i:06d}"
        file_name = f"{stem}.{image_format}"
        if write_images:
            with atomic_open(out / "images" / file_name, "wb") as f:
                if image_format == "jpg":
                    Image.fromarray(rgb).save(f, format="JPEG", quality=jpeg_quality)
                else:
                    Image.fromarray(rgb).save(f, format="PNG", compress_level=1)
        if label_maps:
            with atomic_open(out / "label_maps" / f"{stem}.png", "wb") as f:
                Image.fromarray(lm).save(f, format="PNG", compress_level=1)
        images.append(
            {
                "id": i,
                "file_name": file_name,
                "height": int(h),
                "width": int(w),
                "img_source": sources[(i - 1) % len(sources)],
                "url_flag": 0,
                "url_dataset": "",
                "url_image": "",
            }
        )
        rles = rle_utils.label_map_to_rles(lm, ids=range(1, len(info["entities"]) + 1))
        for e in info["entities"]:
            seg = rles[e["id"]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "segmentation": seg,
                    "area": int(e["area"]),
                    "bbox": rle_utils.bbox(seg),
                    "category_id": cat_ids[e["name"]],
                    "iscrowd": 0,
                    "category_id_ori": e["name"],
                    "name": e["name"],
                }
            )
        log.debug("synthetic image %d/%d written", i, n_images)
    coco = {
        "info": {"description": "entityseg_data synthetic scenes", "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": [
            {
                "id": cat_ids[n],
                "name": n,
                "supercategory": "thing" if IS_THING[n] else "stuff",
                "isthing": int(IS_THING[n]),
            }
            for n in names
        ],
    }
    path = out / json_name
    atomic_write_json(path, coco)
    return path


def load_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON file (helper for callers of :func:`write_dataset`)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
