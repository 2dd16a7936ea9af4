"""Helpers for tests on ../shared/realdata (real public COCO samples; see its README)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("ENTITYSEG_SHARED", ROOT.parent / "shared")) / "realdata"

#: the paper's Table 2 row for COCO (whole COCO panoptic set; realdata/README.md)
PAPER_COCO = {
    "entities_per_image_avg": 11.2,
    "complexity": 0.758,
    "simplicity": 0.581,
    "valid_area": 0.891,
    "image_res": 522.5,
}


def realdata(name: str) -> Path:
    """``realdata/<name>``, or skip the test when the shared folder is absent."""
    path = REALDATA / name
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return path


def read_panoptic_ids(png: Path) -> np.ndarray:
    """(H, W) int64 segment ids of a COCO panoptic PNG (id = R + 256 G + 256^2 B)."""
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def panoptic_to_coco(
    folder: Path, json_name: str, png_dir: str, *, first_images: int | None = None
) -> dict[str, Any]:
    """A COCO instances dict (compressed RLEs) with every panoptic segment, thing or stuff, as
    one annotation (the COCO-Entity protocol); crowd segments keep ``iscrowd``.

    ``first_images``: only the first N images and their segments (the PNGs of the others are not
    decoded), with the annotation ids the whole conversion gives them."""
    from entityseg_data.masks import rle as rle_utils

    data = json.loads((folder / json_name).read_text())
    images = data["images"] if first_images is None else data["images"][:first_images]
    keep = {int(im["id"]) for im in images}
    anns = []
    next_id = 1  # segment ids are unique per image only: annotation ids count every segment
    for pa in data["annotations"]:
        if int(pa["image_id"]) not in keep:
            next_id += len(pa["segments_info"])
            continue
        ids = read_panoptic_ids(folder / png_dir / pa["file_name"])
        for s in pa["segments_info"]:
            m = ids == s["id"]
            r = rle_utils.encode(m.astype(np.uint8))
            anns.append(
                {
                    "id": next_id,
                    "image_id": int(pa["image_id"]),
                    "segmentation": r,
                    "area": int(m.sum()),
                    "bbox": s["bbox"],
                    "category_id": int(s["category_id"]),
                    "iscrowd": int(s.get("iscrowd", 0)),
                }
            )
            next_id += 1
    return {"images": images, "annotations": anns, "categories": data["categories"]}
