"""Seeded stratified splits; class-aware subsets on a hand-made set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from entityseg_data.errors import ConfigError
from entityseg_data.export.splits import assign_splits, split_coco
from entityseg_data.export.subsets import (
    export_subsets,
    instance_subset,
    panoptic_subset,
    rank_classes,
    semantic_subset,
)
from entityseg_data.io.coco import CocoAnnotation, CocoDataset, CocoImage
from entityseg_data.masks import rle as rle_utils


def test_splits_seeded_and_stratified():
    images = [{"id": i, "img_source": "web" if i % 4 else "lab"} for i in range(1, 201)]
    s1 = assign_splits(images, val_fraction=0.2, seed=5)
    assert s1 == assign_splits(list(reversed(images)), val_fraction=0.2, seed=5)
    assert s1 != assign_splits(images, val_fraction=0.2, seed=6)
    for src, n in (("web", 150), ("lab", 50)):
        ids = [im["id"] for im in images if im["img_source"] == src]
        assert sum(s1[i] == "val" for i in ids) == round(n * 0.2)
    # adding images of one source does not move the other source's images
    more = images + [{"id": i, "img_source": "web"} for i in range(201, 241)]
    s2 = assign_splits(more, val_fraction=0.2, seed=5)
    assert all(s2[im["id"]] == s1[im["id"]] for im in images if im["img_source"] == "lab")
    kept = assign_splits(images, val_fraction=0.2, seed=5, existing={1: "val", 2: "train"})
    assert kept[1] == "val" and kept[2] == "train"
    with pytest.raises(ConfigError):
        assign_splits(images, val_fraction=1.5)
    coco = CocoDataset(
        source="split test",
        images=tuple(CocoImage(id=im["id"], file_name="", height=1, width=1) for im in images[:4]),
        annotations=(
            CocoAnnotation(image_id=2, segmentation={"size": [1, 1], "counts": "01"}, id=1),
        ),
    )
    parts = split_coco(coco, {1: "train", 2: "val", 3: "train", 4: "train"})
    assert [im.id for im in parts["val"].images] == [2]
    assert parts["val"].annotations == coco.annotations


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


@pytest.fixture()
def hand():
    """One 20x20 image: 'sky' (stuff, top half, two entities), three small 'cup's, one 'dog',
    one 'unknown' (never a class)."""
    h = w = 20
    masks = [
        ("sky", _box(h, w, 0, 10, 0, 10), 0),
        ("sky", _box(h, w, 0, 10, 10, 20), 0),
        ("cup", _box(h, w, 12, 14, 0, 2), 1),
        ("cup", _box(h, w, 12, 14, 4, 6), 1),
        ("cup", _box(h, w, 12, 14, 8, 10), 1),
        ("dog", _box(h, w, 15, 20, 10, 20), 1),
        ("unknown", _box(h, w, 16, 18, 0, 3), 1),
    ]
    anns = [
        {
            "id": i + 1,
            "image_id": 1,
            "segmentation": rle_utils.encode(m),
            "category_id": 1,
            "iscrowd": 0,
            "name": n,
        }
        for i, (n, m, _) in enumerate(masks)
    ]
    cats = [{"id": 1, "name": "entity"}]
    coco = {
        "images": [{"id": 1, "file_name": "a/x.jpg", "height": h, "width": w}],
        "annotations": anns,
        "categories": cats,
    }
    flags = {n: bool(t) for n, _, t in masks}
    return coco, masks, flags


def test_rankings(hand):
    coco, _, _ = hand
    assert rank_classes(coco, by="entities") == [("cup", 3), ("sky", 2), ("dog", 1)]
    assert rank_classes(coco, by="pixels") == [("sky", 200), ("dog", 50), ("cup", 12)]


def test_instance_subset(hand):
    coco, _, flags = hand
    sub = instance_subset(coco, 2, is_thing=flags.get).to_dict()  # instance.json
    assert [c["name"] for c in sub["categories"]] == ["cup", "sky"]
    assert [c["isthing"] for c in sub["categories"]] == [1, 0]
    assert [a["id"] for a in sub["annotations"]] == [1, 2, 3, 4, 5]
    assert {a["category_id"] for a in sub["annotations"] if a["name"] == "cup"} == {1}


def test_semantic_subset(hand, tmp_path):
    coco, masks, _ = hand
    meta = semantic_subset(coco, 2, tmp_path)
    assert [c["name"] for c in meta["classes"]] == ["sky", "dog"]
    sem = np.asarray(Image.open(tmp_path / meta["files"][1]))
    expected = np.full((20, 20), 255, np.uint8)
    for n, m, _ in masks:
        if n == "sky":
            expected[m > 0] = 0
        elif n == "dog":
            expected[m > 0] = 1
    assert np.array_equal(sem, expected)
    assert json.loads((tmp_path / "semantic_categories.json").read_text())["ignore_value"] == 255


def test_panoptic_subset_merges_stuff(hand, tmp_path):
    coco, masks, flags = hand
    pan = panoptic_subset(coco, 3, tmp_path, is_thing=flags.get)
    cats = {c["id"]: c for c in pan["categories"]}
    assert {c["name"]: c["isthing"] for c in cats.values()} == {"cup": 1, "sky": 0, "dog": 1}
    (ann,) = pan["annotations"]
    infos = ann["segments_info"]
    names = [cats[s["category_id"]]["name"] for s in infos]
    assert sorted(names) == ["cup", "cup", "cup", "dog", "sky"]  # the two sky entities merged
    png = np.asarray(Image.open(tmp_path / "panoptic" / ann["file_name"]), np.uint32)
    ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
    sky = next(s for s in infos if cats[s["category_id"]]["name"] == "sky")
    top_half = np.zeros((20, 20), bool)
    top_half[:10] = True
    assert sky["area"] == 200 and np.array_equal(ids == sky["id"], top_half)
    unknown = masks[-1][1] > 0
    assert (ids[unknown] == 0).all()  # not a class: void
    for s in infos:
        assert s["area"] == int((ids == s["id"]).sum())


def test_export_subsets_writes_all(hand, tmp_path):
    coco, _, _ = hand
    paths = export_subsets(coco, tmp_path, k_instance=1, k_semantic=1, k_panoptic=1)
    assert set(paths) == {"instance", "semantic", "panoptic"}
    assert json.loads(paths["instance"].read_text())["categories"][0]["name"] == "cup"
    assert (tmp_path / "semantic" / "a__x.png").is_file()
    assert (tmp_path / "panoptic" / "a__x.png").is_file()


def test_entity_kinds_decide_thing_stuff_without_is_thing(hand, tmp_path):
    """A workspace's COCO view has one class-agnostic category and each entity's own ``kind``
    (carried in from COCO panoptic / ADE20K): the subsets and the class-aware EntitySeg export
    take thing/stuff from it (issue 16: every class was a thing there)."""
    from entityseg_data.export.entityseg import release_json, thing_flags, to_entityseg

    coco, masks, flags = hand
    for a, (n, _, t) in zip(coco["annotations"], masks, strict=True):
        if n != "unknown":
            a["kind"] = "thing" if t else "stuff"
    assert thing_flags(coco) == {"sky": False, "cup": True, "dog": True, "unknown": None}
    # is_thing (the vocabulary) still comes first
    assert thing_flags(coco, {"sky": True}.get)["sky"] is True
    pan = panoptic_subset(coco, 3, tmp_path)
    assert {c["name"]: c["isthing"] for c in pan["categories"]} == {"cup": 1, "sky": 0, "dog": 1}
    names = {c["id"]: c["name"] for c in pan["categories"]}
    (ann,) = pan["annotations"]
    assert sorted(names[s["category_id"]] for s in ann["segments_info"]) == [
        "cup",
        "cup",
        "cup",
        "dog",
        "sky",  # the two stuff entities merged
    ]
    inst = instance_subset(coco, 3).to_dict()
    assert {c["name"]: c["isthing"] for c in inst["categories"]} == {"cup": 1, "sky": 0, "dog": 1}
    out = release_json(to_entityseg(coco, class_agnostic=False))
    assert {c["name"]: c["isthing"] for c in out["categories"]} == {
        "cup": 1,
        "sky": 0,
        "dog": 1,
        "unknown": 1,
    }
    assert {v["name"]: v["isthing"] for v in out["vocabulary"]} == {
        "cup": True,
        "sky": False,
        "dog": True,
        "unknown": None,
    }
    # the stored masks do not depend on the flags
    assert not flags["sky"]
