"""Writing prediction results to disk (every file atomically).

Output paths come from a template without extension, e.g. ``out/{parent}/mask/{stem}``;
each format appends its own suffix:

==========  =====================================  ============================================
format      file                                   content
==========  =====================================  ============================================
png         ``{base}.png``                         uint16 label map, 0 = none, 1..N by score
json        ``{base}.json``                        sidecar: size, model, per id score/area/bbox
coco        ``{base}.coco.json``                   COCO results with RLE (SAM AMG compatible)
overlay     ``{base}.overlay.png``                 colour overlay on the image (needs the image)
cutouts     ``{base}.cutouts/{id:04d}.png``        RGBA cut-out per entity (needs the image)
npz         ``{base}.npz``                         label_map + per-entity arrays
==========  =====================================  ============================================

Template fields: ``{stem}`` file name without suffix, ``{name}`` file name, ``{parent}`` name of
the containing folder, ``{relpath}`` path below the input root without suffix, ``{index}`` running
number. A template with none of them is a folder: ``{relpath}`` is appended.
"""

from __future__ import annotations

import io
import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.errors import ConfigError, DataError
from entityseg_data.io import atomic_write_bytes, atomic_write_text

FORMATS = ("png", "json", "coco", "overlay", "cutouts", "npz")
NEEDS_IMAGE = ("overlay", "cutouts")
FIELDS = ("stem", "name", "parent", "relpath", "index")
_SUFFIX = {
    "png": ".png",
    "json": ".json",
    "coco": ".coco.json",
    "overlay": ".overlay.png",
    "cutouts": ".cutouts",
    "npz": ".npz",
}


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown output format(s) {bad}; choose from {list(FORMATS)}")
    return tuple(dict.fromkeys(formats))


def template_fields(template: str) -> set[str]:
    names = {n for _, n, _, _ in string.Formatter().parse(template) if n}
    bad = names - set(FIELDS)
    if bad:
        raise ConfigError(
            f"unknown field(s) {sorted(bad)} in output template {template!r}; use {list(FIELDS)}"
        )
    return names


def output_base(
    template: str, source: str | Path, *, root: str | Path | None = None, index: int = 0
) -> Path:
    """The base path (no extension) of the outputs of ``source`` under ``template``."""
    src = Path(source)
    if root is not None:
        try:
            rel = src.resolve().relative_to(Path(root).resolve())
        except ValueError:
            rel = Path(src.name)
    else:
        rel = Path(src.name)
    relpath = rel.with_suffix("").as_posix()
    if not template_fields(template):
        template = str(Path(template) / "{relpath}")
    text = template.format(
        stem=src.stem, name=src.name, parent=src.parent.name, relpath=relpath, index=index
    )
    for suffix in (".png", ".json", ".npz"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return Path(text)


def output_paths(base: str | Path, formats: Sequence[str]) -> dict[str, Path]:
    base = Path(base)
    return {f: base.with_name(base.name + _SUFFIX[f]) for f in check_formats(formats)}


def outputs_exist(base: str | Path, formats: Sequence[str]) -> bool:
    """True when every output of ``base`` exists (the sidecar/cut-out folder marker included)."""
    paths = output_paths(base, formats)
    for f, p in paths.items():
        if f == "cutouts":
            if not (p / "_done").exists():
                return False
        elif not p.exists():
            return False
    return True


def encode_label_png(label_map: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) uint16 label map (16-bit grayscale)."""
    from PIL import Image

    if label_map.dtype != np.uint16:
        raise DataError(f"label map must be uint16, got {label_map.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label_map)).save(buf, format="PNG")
    return buf.getvalue()


def read_label_png(path: str | Path) -> np.ndarray:
    """(H, W) uint16 label map of a PNG written by :func:`encode_label_png` (DataError naming
    the file when it cannot be read)."""
    from entityseg_data.io.images import read_label_array

    return read_label_array(path, "label PNG").astype(np.uint16)


def sidecar(result: Any) -> dict[str, Any]:
    return {
        "source": result.source,
        "height": result.height,
        "width": result.width,
        "model_version": result.model_version,
        "score_mode": result.score_mode,
        "label_map": "0 = no entity; ids 1..N by descending score",
        "entities": result.records(),
    }


def palette(n: int, seed: int = 0) -> np.ndarray:
    """(n + 1, 3) uint8 colours; row 0 is black."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(40, 256, size=(n + 1, 3), dtype=np.uint8)
    cols[0] = 0
    return cols


def overlay(image: np.ndarray, label_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 image with entities tinted and their boundaries drawn."""
    n = int(label_map.max()) if label_map.size else 0
    cols = palette(n)
    tint = cols[label_map].astype(np.float32)
    inside = (label_map > 0)[..., None]
    out = np.where(inside, (1 - alpha) * image + alpha * tint, image).astype(np.uint8)
    edge = np.zeros(label_map.shape, bool)
    edge[:-1] |= label_map[:-1] != label_map[1:]
    edge[:, :-1] |= label_map[:, :-1] != label_map[:, 1:]
    out[edge] = 255
    return out


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def save_result(
    result: Any,
    output: str | Path,
    *,
    formats: Sequence[str] = ("png", "json"),
    image: np.ndarray | None = None,
    root: str | Path | None = None,
    index: int = 0,
) -> list[Path]:
    """Write ``result`` in ``formats``; ``output`` is a template (fields filled from
    ``result.source``) or a folder. Returns the written paths. The ``json`` sidecar is written
    last, so its presence marks a complete set."""
    formats = check_formats(formats)
    if any(f in NEEDS_IMAGE for f in formats) and image is None:
        raise ConfigError(f"formats {[f for f in formats if f in NEEDS_IMAGE]} need the image")
    source = result.source or "image"
    base = output_base(str(output), source, root=root, index=index)
    paths = output_paths(base, formats)
    written = []
    for f in sorted(formats, key=lambda f: f == "json"):
        p = paths[f]
        if f == "png":
            atomic_write_bytes(p, encode_label_png(result.label_map))
        elif f == "json":
            atomic_write_text(p, json.dumps(sidecar(result), indent=1))
        elif f == "coco":
            atomic_write_text(p, json.dumps(result.to_coco(image_id=source)))
        elif f == "overlay":
            assert image is not None  # checked above (NEEDS_IMAGE)
            atomic_write_bytes(p, _png(overlay(image, result.label_map)))
        elif f == "npz":
            buf = io.BytesIO()
            np.savez_compressed(
                buf,
                label_map=result.label_map,
                scores=result.scores,
                class_scores=result.class_scores,
                mask_quality=result.mask_quality,
                areas=result.areas,
                boxes=result.boxes,
                query_index=result.query_index,
            )
            atomic_write_bytes(p, buf.getvalue())
        elif f == "cutouts":
            assert image is not None  # checked above (NEEDS_IMAGE)
            for i in range(len(result)):
                x, y, w, h = (int(v) for v in result.boxes[i])
                m = result.label_map[y : y + h, x : x + w] == i + 1
                rgba = np.dstack([image[y : y + h, x : x + w], (m * 255).astype(np.uint8)])
                atomic_write_bytes(p / f"{i + 1:04d}.png", _png(rgba))
            atomic_write_text(p / "_done", str(len(result)))
        written.append(p)
    return written
