"""The synthetic scene generator: deterministic, full coverage, thin and small entities, boundary
detail that the 800 px lr copy loses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from entityseg_data.errors import DataError
from entityseg_data.export.lr import lr_size, resize_label_map
from entityseg_data.masks import rle as rle_utils
from entityseg_data.synthetic import IS_THING, make_scene, write_dataset


def test_deterministic_and_seed_dependent():
    a = make_scene(4, 300, 400)
    b = make_scene(4, 300, 400)
    c = make_scene(5, 300, 400)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[1], c[1])


def test_labels_cover_the_image_and_match_info():
    rgb, lm, info = make_scene(7, 600, 800)
    assert rgb.shape == (600, 800, 3) and rgb.dtype == np.uint8
    assert lm.dtype == np.uint16 and (lm > 0).all()
    n = len(info["entities"])
    assert [e["id"] for e in info["entities"]] == list(range(1, n + 1))
    counts = np.bincount(lm.ravel(), minlength=n + 1)
    assert [e["area"] for e in info["entities"]] == counts[1:].tolist()
    kinds = {e["kind"] for e in info["entities"]}
    shapes = {e["shape"] for e in info["entities"]}
    assert kinds == {"stuff", "thing"} and {"band", "thin", "small"} <= shapes
    assert all(IS_THING[e["name"]] == (e["kind"] == "thing") for e in info["entities"])
    # entities are not flat colours: textures give several values inside one entity
    big = max(info["entities"], key=lambda e: e["area"])["id"]
    assert len(np.unique(rgb[lm == big].reshape(-1, 3), axis=0)) > 10


def test_void_entities_leave_unlabelled_pixels():
    _, lm, _ = make_scene(3, 300, 400, void_entities=2)
    assert 0 < (lm == 0).mean() < 0.5


@pytest.mark.slow
def test_high_resolution_detail_is_lost_at_800px():
    h, w = 3000, 4000
    _, lm, info = make_scene(1, h, w)
    thin = [e for e in info["entities"] if e["shape"] == "thin"]
    small = [e for e in info["entities"] if e["shape"] == "small"]
    assert thin and small
    assert all(e["area"] < 2000 for e in small)
    nh, nw = lr_size(h, w)
    lr = resize_label_map(lm, (nh, nw))
    back = resize_label_map(lr, (h, w))  # nearest up again: what lr can still represent
    # thin structures lose most of their pixels at lr (2-7 px wide -> under 2 px)
    lost = [1 - np.count_nonzero((back == e["id"]) & (lm == e["id"])) / e["area"] for e in thin]
    assert max(lost) > 0.3
    # the fine ripple of the stuff boundaries: many boundary pixels change
    changed = np.count_nonzero(back != lm) / lm.size
    assert changed > 0.003


def test_write_dataset(tmp_path):
    path = write_dataset(tmp_path, 2, seed=2, sizes=[(120, 160)], label_maps=True)
    data = json.loads(path.read_text())
    assert [im["file_name"] for im in data["images"]] == ["000001.jpg", "000002.jpg"]
    lm = np.asarray(Image.open(tmp_path / "label_maps" / "000001.png"))
    anns = [a for a in data["annotations"] if a["image_id"] == 1]
    for v, a in enumerate(anns, start=1):
        assert np.array_equal(rle_utils.decode(a["segmentation"]).astype(bool), lm == v)
        assert a["area"] == int((lm == v).sum())
    cats = {c["id"]: c for c in data["categories"]}
    assert all(cats[a["category_id"]]["name"] == a["name"] for a in data["annotations"])
    with pytest.raises(DataError):
        make_scene(0, 10, 10)
