"""The ade20k: source turns both ADE20K layouts into pre-annotations (issue 16): fixtures in the
real formats (tests/ingest/ade20k_layouts.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ade20k_layouts import (
    H,
    W,
    expected_2021,
    scene_parsing_classes,
    write_2021,
    write_scene_parsing,
)

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.ade20k import (
    ADE150_NAMES,
    ADE150_STUFF,
    Ade20kSource,
    full_label_map,
    scene_parsing_label_map,
)
from entityseg_data.masks import rle as rle_utils


def _entities(item):
    pre = item.pre_annotation(H, W, 1)
    assert (pre.height, pre.width) == (H, W)
    assert rle_utils.overlap_pixels([e["segmentation"] for e in pre.entities]) == 0
    return [
        (e.get("name"), e.get("category_id"), e.get("kind"), rle_utils.decode(e["segmentation"]))
        for e in pre.entities
    ]


def _same(got, want):
    key = lambda t: (t[1], int(np.argmax(t[3].ravel())))  # noqa: E731
    got, want = sorted(got, key=key), sorted(want, key=key)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g[3].astype(bool), w[3])


def test_ade150_table():
    assert len(ADE150_NAMES) == 150 and len(ADE150_STUFF) == 35
    assert ADE150_NAMES[0] == "wall" and ADE150_NAMES[12] == "person"
    assert ADE150_NAMES[149] == "flag" and 1 in ADE150_STUFF and 13 not in ADE150_STUFF


def test_2021_layout_instances_from_seg_png(tmp_path):
    """One entity per visible object instance of ``_seg.png`` (class R//10*256+G, instance B),
    named from the JSON, kinds from the ADE150 table; parts are not entities."""
    write_2021(tmp_path)
    (item,) = Ade20kSource(root=tmp_path).items()
    assert item.source_id == "ADE_train_00000007" and "scene:street" in item.domain_tags
    assert item.pre_annotation_version == "source:ade20k"
    _same(_entities(item), expected_2021())


def test_2021_layout_without_seg_png_uses_the_instance_masks(tmp_path):
    """The instance PNGs' visible (255) pixels give the same entities; occluded (128) pixels of
    the amodal masks do not count."""
    image = write_2021(tmp_path, seg=False)
    lm, infos = full_label_map(image)
    got = [(i["name"], i["category_id"], i["kind"], lm == k + 1) for k, i in enumerate(infos)]
    _same(got, expected_2021())
    # an instance PNG of another size is named
    from PIL import Image

    bad = next(image.parent.glob("*/instance_002_*.png"))
    Image.fromarray(np.zeros((5, 7), np.uint8), "L").save(bad)
    with pytest.raises(DataError, match=rf"{bad.name} has shape \(5, 7\), expected"):
        full_label_map(image)


def test_scene_parsing_layout_components_for_things_whole_stuff(tmp_path):
    """SceneParsing has no instances: a thing class gives one entity per 8-connected component,
    a stuff class one entity with all its pixels."""
    write_scene_parsing(tmp_path)
    (item,) = Ade20kSource(root=tmp_path).items()
    assert "validation" in item.domain_tags and "scene:street" in item.domain_tags
    got = _entities(item)
    c = scene_parsing_classes()
    by_name: dict[str, list[np.ndarray]] = {}
    for name, cid, kind, m in got:
        assert ADE150_NAMES[cid - 1] == name
        assert kind == ("stuff" if cid in ADE150_STUFF else "thing")
        by_name.setdefault(name, []).append(m.astype(bool))
    assert sorted((n, len(v)) for n, v in by_name.items()) == [
        ("car", 1),
        ("person", 2),
        ("wall", 1),
    ]
    assert np.array_equal(by_name["wall"][0], c == 1)  # two pieces, one stuff entity
    persons = sorted(by_name["person"], key=lambda m: int(m.sum()))
    assert int(persons[0].sum()) == 60  # person A alone
    assert int(persons[1].sum()) == 121  # B + touching C + diagonal neighbour
    union = np.zeros_like(c, bool)
    for _, _, _, m in got:
        union |= m.astype(bool)
    assert np.array_equal(union, c > 0)  # label 0 stays unlabelled


def test_scene_parsing_min_area_and_bad_label_maps(tmp_path):
    write_scene_parsing(tmp_path)
    ann = tmp_path / "annotations" / "validation" / "ADE_val_00000003.png"
    _lm, infos = scene_parsing_label_map(ann, min_area=10)
    assert [i["name"] for i in infos].count("car") == 0 and len(infos) == 3
    from PIL import Image

    bad = np.full((4, 4), 151, np.uint8)
    Image.fromarray(bad, "L").save(ann)
    with pytest.raises(DataError, match="class index 151 is not in 0..150"):
        scene_parsing_label_map(ann)
    ann.write_bytes(b"not a png")
    with pytest.raises(DataError, match="ADE_val_00000003.png: cannot read the SceneParsing"):
        scene_parsing_label_map(ann)


def test_images_only_and_missing_annotations(tmp_path):
    write_scene_parsing(tmp_path)
    (tmp_path / "annotations" / "validation" / "ADE_val_00000003.png").unlink()
    (item,) = Ade20kSource(root=tmp_path).items()
    assert item.pre_annotation is None
    write_2021(tmp_path / "full")
    (item,) = Ade20kSource(root=tmp_path / "full", pre_annotations=False).items()
    assert item.pre_annotation is None


def test_ingest_ade20k_both_layouts_store_kinds(tmp_path):
    """Through the real ingest pipeline: the pre-annotation files carry names and kinds."""
    from entityseg_data.config.ingest import IngestConfig
    from entityseg_data.ingest import ingest
    from entityseg_data.ingest.sources import parse_source
    from entityseg_data.workspace import Workspace

    write_2021(tmp_path / "full")
    write_scene_parsing(tmp_path / "sp")
    ws = Workspace.create(tmp_path / "ws")
    srcs = [parse_source(f"ade20k:{tmp_path / 'full'}"), parse_source(f"ade20k:{tmp_path / 'sp'}")]
    report = ingest(ws, srcs, IngestConfig(nsfw_enabled=False, workers=1, phash_threshold=-1))
    assert report.totals().accepted == 2
    with ws.catalog() as cat:
        rows = cat.images()
    kinds = {}
    for row in rows:
        _rec, payload = ws.latest_prediction(row.id, "source:ade20k")
        kinds[row.source_id] = sorted({(e["name"], e.get("kind")) for e in payload["entities"]})
    assert ("wall", "stuff") in kinds["ADE_train_00000007"]
    assert ("sidewalk cafe", None) in kinds["ADE_train_00000007"]
    assert kinds["ADE_val_00000003"] == [("car", "thing"), ("person", "thing"), ("wall", "stuff")]


@pytest.mark.skipif(not os.environ.get("ADE20K_2021_SAMPLE"), reason="ADE20K_2021_SAMPLE not set")
def test_real_ade20k_2021_sample():
    """On real files: set ADE20K_2021_SAMPLE to the ``dataset/ADE20K_2021_17_01`` folder of the
    CSAILVision/ADE20K repository (3 street images, 1467-1650 x 2048-2200, with ``_seg.png``,
    JSON and instance PNGs; not bundled: ADE20K's terms, and shared/realdata holds COCO only). Each
    entity is one region of the official decoding (``utils_ade20k.loadAde20K``: class
    ``R / 10 * 256 + G``, instance = the index of ``B`` among its values), named like its JSON
    object; together they cover every object pixel, one entity per whole object."""
    import json

    from PIL import Image

    from entityseg_data.ingest.sources.ade20k import first_synonym

    root = Path(os.environ["ADE20K_2021_SAMPLE"])
    items = list(Ade20kSource(root=root).items())
    assert items
    kinds = {}
    for item in items:
        w, h = Image.open(item.path).size
        pre = item.pre_annotation(h, w, 1)
        seg = np.asarray(Image.open(Path(item.path).with_name(Path(item.path).stem + "_seg.png")))
        seg = seg.astype(np.int64)
        cls = seg[..., 0] // 10 * 256 + seg[..., 1]
        inst = np.unique(seg[..., 2], return_inverse=True)[1].reshape(cls.shape)
        ann = json.loads(Path(item.path).with_suffix(".json").read_bytes())["annotation"]
        whole = [o for o in ann["object"] if o["parts"]["part_level"] == 0]
        names = {o["name_ndx"]: first_synonym(o["name"]) for o in whole}
        assert len(pre.entities) == len(whole) == np.unique(inst[cls > 0]).size
        covered = np.zeros(cls.shape, bool)
        for e in pre.entities:
            m = rle_utils.decode(e["segmentation"]).astype(bool)
            assert not (covered & m).any()
            covered |= m
            (c,), (b,) = np.unique(cls[m]), np.unique(inst[m])
            assert np.array_equal(m, (cls == c) & (inst == b))
            assert (e["category_id"], e["name"]) == (c, names[c])
            kinds[e["name"]] = e.get("kind")
        assert np.array_equal(covered, cls > 0)
    # kinds from the ADE150 table where the name is an ADE150 class
    assert {kinds[n] for n in ("wall", "sky", "road") if n in kinds} == {"stuff"}
    assert {kinds[n] for n in ("person", "car") if n in kinds} == {"thing"}
