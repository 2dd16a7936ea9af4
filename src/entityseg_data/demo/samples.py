"""Bundled sample images for the demo: permissively licensed photos shipped by scikit-image plus
deterministic synthetic high-resolution entity scenes.

:func:`write_samples` lays out a folder and a URL-list folder so the demo exercises the folder
source, the URL downloader (with one dead link), exact and near de-duplication (a byte copy under
another name and a re-encoded copy) and the resolution filter (one image that is too small).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from entityseg_data.io import atomic_write_bytes, atomic_write_text

# name -> (licence, attribution), from scikit-image's data documentation
SKIMAGE_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("public-domain", "NASA (Eileen Collins), via scikit-image"),
    "chelsea": ("CC0-1.0", "Stefan van der Walt, via scikit-image"),
    "coffee": ("CC0-1.0", "Rachel Michetti / Pikolo Espresso Bar, via scikit-image"),
    "rocket": ("public-domain", "SpaceX, via scikit-image"),
}


@dataclass(frozen=True)
class SyntheticTruth:
    """A synthetic scene's ground truth: its label-map PNG and label value -> entity name."""

    label_map: Path
    names: Mapping[int, str]


@dataclass(frozen=True)
class SampleLayout:
    """Where :func:`write_samples` put things.

    ``folder``: images for the folder source; ``served``: the folder a loopback HTTP server serves;
    ``url_names``: file names (relative to ``served``) for the URL list, including one that does not
    exist (a 404); ``licences``: a JSON sidecar ``{file name: {"license", "attribution"}}``;
    ``synthetic_gt``: per synthetic file name, its ground-truth label map path and entity names.
    """

    folder: Path
    served: Path
    url_names: tuple[str, ...]
    licences: Path
    synthetic_gt: dict[str, SyntheticTruth]


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_samples(
    root: str | Path,
    *,
    n_synthetic: int = 3,
    synthetic_size: tuple[int, int] = (900, 1200),
    seed: int = 0,
) -> SampleLayout:
    """Write the demo's sample images under ``root`` (idempotent: same bytes every time).

    Args:
        root: output folder.
        n_synthetic: number of synthetic scenes.
        synthetic_size: (height, width) of each synthetic scene in pixels.
        seed: base seed of the synthetic scenes.
    """
    import skimage.data

    root = Path(root)
    folder, served = root / "folder", root / "served"
    folder.mkdir(parents=True, exist_ok=True)
    served.mkdir(parents=True, exist_ok=True)
    licences: dict[str, dict[str, str]] = {}

    photos = {name: getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS}
    for name in ("astronaut", "chelsea", "coffee"):
        atomic_write_bytes(folder / f"{name}.png", _png(photos[name]))
        lic, att = SKIMAGE_PHOTOS[name]
        licences[f"{name}.png"] = {"license": lic, "attribution": att}
        # the folder source reads provenance from a JSON sidecar with the image's stem
        sidecar = {"license": lic, "attribution": att, "author": att.split(",")[0]}
        atomic_write_text(folder / f"{name}.json", json.dumps(sidecar, sort_keys=True))
    # an exact duplicate under another name, and a re-encoded (near) duplicate
    atomic_write_bytes(folder / "astronaut_copy.png", (folder / "astronaut.png").read_bytes())
    atomic_write_bytes(folder / "coffee_reencoded.jpg", _jpeg(photos["coffee"], 85))
    # too small for the resolution filter
    small = np.asarray(
        Image.fromarray(photos["chelsea"]).resize((150, 100), Image.Resampling.BILINEAR)
    )
    atomic_write_bytes(folder / "chelsea_small.png", _png(small))

    # served over HTTP: the rocket photo and the synthetic scenes
    atomic_write_bytes(served / "rocket.jpg", _jpeg(photos["rocket"], 92))
    licences["rocket.jpg"] = dict(zip(("license", "attribution"), SKIMAGE_PHOTOS["rocket"]))
    url_names = ["rocket.jpg"]
    gt: dict[str, SyntheticTruth] = {}
    from entityseg_data import synthetic

    h, w = synthetic_size
    for i in range(n_synthetic):
        rgb, label_map, info = synthetic.make_scene(seed + i, h, w)
        name = f"scene_{i:02d}.png"
        atomic_write_bytes(served / name, _png(rgb))
        gt_name = f"scene_{i:02d}_gt.png"
        atomic_write_bytes(root / gt_name, _png_u16(label_map))
        gt[name] = SyntheticTruth(root / gt_name, synthetic.scene_names(info))
        licences[name] = {"license": "CC0-1.0", "attribution": "entityseg-data synthetic scene"}
        url_names.append(name)
    url_names.append("missing.jpg")  # a dead link: the downloader reports a 404
    lic_path = root / "licences.json"
    atomic_write_text(lic_path, json.dumps(licences, indent=2, sort_keys=True))
    return SampleLayout(folder, served, tuple(url_names), lic_path, gt)


def write_url_list(layout: SampleLayout, base_url: str, path: str | Path) -> Path:
    """A CSV URL list (url, id, license, attribution) of the served samples under ``base_url``."""
    import csv
    import io as _io

    licences = json.loads(Path(layout.licences).read_text())
    buf = _io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["url", "id", "license", "attribution"])
    for name in layout.url_names:
        lic = licences.get(name, {})
        writer.writerow(
            [f"{base_url}/{name}", name, lic.get("license", ""), lic.get("attribution", "")]
        )
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _png_u16(label_map: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(label_map.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()
