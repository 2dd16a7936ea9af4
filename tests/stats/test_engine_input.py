"""How ``stats`` reads its input (io.coco): probe 5.11 and corrupt / mis-sized masks."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from entityseg_data.errors import DataError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.stats.engine import compute_stats


def _gt() -> dict:
    """2 images 20x30 with 2 disjoint rectangles each (the probe's gt.json shape)."""
    anns = []
    for iid in (1, 2):
        for k in range(2):
            m = np.zeros((20, 30), np.uint8)
            m[2 + 8 * k : 8 + 8 * k, 3:20] = 1
            anns.append({"id": len(anns) + 1, "image_id": iid, "segmentation": rle_utils.encode(m)})
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "height": 20, "width": 30} for i in (1, 2)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "entity"}],
    }


def test_probe_5_11_duplicate_image_id_is_an_error_not_counted_twice(tmp_path):
    """Probe 5.11: gt_dupimg.json printed '3 images, 6 entities' (image 1 counted twice)."""
    data = _gt()
    data["images"].append(dict(data["images"][0]))
    p = tmp_path / "gt_dupimg.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"gt_dupimg.json: images\[2\]: duplicate image id 1"):
        compute_stats(p)


def test_probe_5_11_annotation_of_unknown_image_is_an_error_not_dropped(tmp_path):
    """Probe 5.11: an annotation of an unknown image was dropped without a word."""
    data = _gt()
    data["annotations"][3]["image_id"] = 99
    p = tmp_path / "gt_orphan.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations\[3\] \(id 4\): unknown image id 99"):
        compute_stats(p)


def test_corrupt_rles_skip_their_image_with_the_reason():
    """A truncated RLE used to be decoded (uninitialised memory); now its image is skipped and
    listed, the others measured."""
    data = _gt()
    data["annotations"][2]["segmentation"] = {"size": [20, 30], "counts": "0::"}
    s = compute_stats(copy.deepcopy(data), name="x")
    assert s.n_images == 1 and s.n_entities == 2
    assert [e["image_id"] for e in s.errors] == [2]
    assert "annotations[2] (id 3)" in s.errors[0]["error"]
    good = compute_stats(_gt())
    assert good.n_images == 2 and good.n_entities == 4


def test_string_height_is_an_error():
    data = _gt()
    data["images"][1]["height"] = "20"
    with pytest.raises(DataError, match=r"images\[1\] \(id 2\): 'height' must be an integer"):
        compute_stats(data)


def test_missing_size_read_upright_from_the_image(tmp_path):
    from PIL import Image

    data = _gt()
    for im in data["images"]:
        del im["height"], im["width"]
        exif = Image.Exif()
        exif[0x0112] = 6  # stored 30 high x 20 wide, shown 20 x 30
        Image.new("RGB", (20, 30)).save(tmp_path / im["file_name"], exif=exif)
    s = compute_stats(data, images_dir=tmp_path)
    assert s.n_images == 2 and {(r["height"], r["width"]) for r in s.images} == {(20, 30)}
