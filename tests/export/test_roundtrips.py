"""Round trips of every import (``export convert``: the ingest importer in 'approved' mode) and
export: masks bit-exact, names, kinds and provenance kept."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from entityseg_data.export.entityseg import export_entityseg
from entityseg_data.export.hf import entity_rle, export_hf
from entityseg_data.export.subsets import panoptic_subset
from entityseg_data.ingest.importers import import_coco, import_label_maps
from entityseg_data.ingest.sources.coco import ImportPolicy
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import workspace_to_coco
from entityseg_data.stats.engine import named_workspace_coco
from entityseg_data.workspace import Workspace


def masks_by_source_file(coco, ws_root):
    """{original file name: [annotations]} of a workspace COCO (via the catalog)."""
    ws = Workspace.open(ws_root)
    with ws.catalog() as cat:
        src = {r.id: r.extra["file_name"] for r in cat.images(status=None)}
    out = {}
    for a in coco["annotations"]:
        out.setdefault(src[a["image_id"]], []).append(a)
    return out


def source_masks(coco):
    by = {im["id"]: im["file_name"] for im in coco["images"]}
    out = {}
    for a in coco["annotations"]:
        out.setdefault(by[a["image_id"]], []).append(a)
    return out


def same_masks(anns_a, anns_b):
    assert len(anns_a) == len(anns_b)
    for x, y in zip(anns_a, anns_b):
        assert np.array_equal(
            rle_utils.decode(x["segmentation"]), rle_utils.decode(y["segmentation"])
        )


def test_label_maps_to_workspace_and_entityseg_export(syn_set, tmp_path):
    root, _, coco = syn_set
    names = {}
    for e in coco["annotations"]:
        names.setdefault(e["image_id"], []).append(e["name"])
    ws = Workspace.create(tmp_path / "ws")
    res = import_label_maps(ws, root / "images", root / "label_maps")
    assert res.images == 4 and res.entities == len(coco["annotations"]) and not res.problems
    got = masks_by_source_file(workspace_to_coco(ws), ws.root)
    for file_name, anns in source_masks(coco).items():
        lm = np.asarray(Image.open(root / "label_maps" / file_name))
        for v, a in enumerate(got[file_name], start=1):
            assert np.array_equal(rle_utils.decode(a["segmentation"]).astype(bool), lm == v)
        same_masks(anns, got[file_name])
    # the workspace exports back to EntitySeg with the same masks and byte-identical images
    out = export_entityseg(ws, tmp_path / "release", lr=False, seed=1)
    assert set(out.annotation_files) <= {"train", "val"}
    merged = []
    for name in ("train", "val"):
        if name in out.annotation_files:
            d = json.loads(out.annotation_files[name].read_text())
            merged.extend(d["images"])
            for im in d["images"]:
                assert (tmp_path / "release" / "images" / im["file_name"]).is_file()
    assert len(merged) == 4
    with ws.catalog() as cat:
        assert {r.split for r in cat.images(status=None)} <= {"train", "val"}


@pytest.mark.slow
def test_instances_roundtrip_and_json_export(syn_set, tmp_path):
    root, path, coco = syn_set
    ws = Workspace.create(tmp_path / "ws")
    res = import_coco(ws, path, root / "images")
    assert res.images == 4 and res.entities == len(coco["annotations"])
    named = named_workspace_coco(ws)
    got = masks_by_source_file(named, ws.root)
    for file_name, anns in source_masks(coco).items():
        same_masks(anns, got[file_name])
        assert [a["name"] for a in got[file_name]] == [a["name"] for a in anns]
    # JSON -> EntitySeg export: fields, class-agnostic category, names, masks
    out = export_entityseg(path, tmp_path / "es", images_dir=root / "images", split=False, lr=True)
    d = json.loads(out.annotation_files["all"].read_text())
    assert d["categories"] == [{"id": 1, "name": "entity", "supercategory": "entity", "isthing": 1}]
    im = d["images"][0]
    for key in (
        "id",
        "file_name",
        "height",
        "width",
        "img_source",
        "url_flag",
        "url_dataset",
        "url_image",
    ):
        assert key in im
    a = d["annotations"][0]
    for key in (
        "id",
        "image_id",
        "bbox",
        "area",
        "segmentation",
        "category_id",
        "iscrowd",
        "category_id_ori",
    ):
        assert key in a
    assert isinstance(a["segmentation"]["counts"], str) and a["category_id"] == 1
    assert [x["category_id_ori"] for x in d["annotations"]] == [
        x["name"] for x in coco["annotations"]
    ]
    same_masks(coco["annotations"], d["annotations"])
    assert {v["name"] for v in d["vocabulary"]} == {x["name"] for x in coco["annotations"]}
    lr = json.loads(out.annotation_files["all_lr"].read_text())
    assert lr["images"][0]["height"] in (800, 1067) and out.counts["all_lr"]["images"] == 4
    aware = export_entityseg(
        path,
        tmp_path / "es2",
        images_dir=root / "images",
        split=False,
        lr=False,
        class_agnostic=False,
    )
    d2 = json.loads(aware.annotation_files["all"].read_text())
    cats = {c["id"]: c for c in d2["categories"]}
    assert all(cats[x["category_id"]]["name"] == x["name"] for x in d2["annotations"])
    assert {c["name"]: c["isthing"] for c in d2["categories"]}.get("sky", 0) == 0


def test_overlapping_instances_smaller_wins(tmp_path):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.new("RGB", (40, 30), (10, 20, 30)).save(img_dir / "x.png")
    big = np.zeros((30, 40), np.uint8)
    big[0:30, 0:30] = 1
    small = np.zeros((30, 40), np.uint8)
    small[5:10, 5:10] = 1
    inside = small.copy()  # same area, later: it wins and 'small' is left empty -> dropped
    coco = {
        "images": [{"id": 7, "file_name": "x.png", "height": 30, "width": 40}],
        "annotations": [
            {"id": 1, "image_id": 7, "segmentation": rle_utils.encode(small), "category_id": 1},
            {"id": 2, "image_id": 7, "segmentation": rle_utils.encode(big), "category_id": 2},
            {"id": 3, "image_id": 7, "segmentation": rle_utils.encode(inside), "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "table"}],
    }
    (tmp_path / "inst.json").write_text(json.dumps(coco))
    ws = Workspace.create(tmp_path / "ws")
    res = import_coco(ws, tmp_path / "inst.json", img_dir)
    assert res.images == 1 and res.entities == 2  # 'small' left without a pixel: dropped
    got = named_workspace_coco(ws)["annotations"]
    masks = [rle_utils.decode(a["segmentation"]).astype(bool) for a in got]
    assert [a["name"] for a in got] == ["table", "cup"]
    assert np.array_equal(masks[0], big.astype(bool) & ~small.astype(bool))
    assert np.array_equal(masks[1], small.astype(bool))


def test_panoptic_subset_converts_back(syn_set, tmp_path):
    root, _, coco = syn_set
    pan = panoptic_subset(coco, 1000, tmp_path / "pan")
    ws = Workspace.create(tmp_path / "ws")
    res = import_coco(
        ws,
        tmp_path / "pan" / "panoptic.json",
        root / "images",
        panoptic_dir=tmp_path / "pan" / "panoptic",
        policy=ImportPolicy(crowd="keep"),
    )
    assert res.images == 4 and not res.problems
    named = named_workspace_coco(ws)
    got = masks_by_source_file(named, ws.root)
    cats = {c["id"]: c["name"] for c in pan["categories"]}
    for ann in pan["annotations"]:
        file_name = next(im["file_name"] for im in coco["images"] if im["id"] == ann["image_id"])
        png = np.asarray(Image.open(tmp_path / "pan" / "panoptic" / ann["file_name"]), np.uint32)
        ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
        assert len(got[file_name]) == len(ann["segments_info"])
        for seg, a in zip(ann["segments_info"], got[file_name]):
            assert np.array_equal(
                rle_utils.decode(a["segmentation"]).astype(bool), ids == seg["id"]
            )
            assert a["name"] == cats[seg["category_id"]]
            assert a["area"] == seg["area"]
    # synthetic scenes cover every pixel and every class is kept: no void pixel
    assert all(a["area"] for a in named["annotations"])


@pytest.mark.slow
def test_hf_export_is_self_contained(syn_set, tmp_path):
    import datasets

    root, path, coco = syn_set
    work = tmp_path / "copy"
    shutil.copytree(root / "images", work)
    res = export_hf(path, tmp_path / "hf", images_dir=work)
    assert res["rows"] == {"train": 4}
    shutil.rmtree(work)  # everything must be embedded
    dd = datasets.load_from_disk(str(tmp_path / "hf" / "hf"))
    by_id = {a["id"]: a for a in coco["annotations"]}
    for split_ds in (
        dd["train"],
        datasets.Dataset.from_parquet(str(res["parquet"]["train"]), cache_dir=str(tmp_path / "c")),
    ):
        assert split_ds.num_rows == 4
        for row in split_ds:
            src = Image.open(root / "images" / row["file_name"]).convert("RGB")
            assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.asarray(src))
            assert row["source"] in ("web", "lab")
            for e in row["entities"]:
                ref = by_id[e["id"]]
                assert e["name"] == ref["name"]
                assert np.array_equal(
                    rle_utils.decode(entity_rle(e)), rle_utils.decode(ref["segmentation"])
                )


def test_hf_push_needs_a_token(syn_set, tmp_path, monkeypatch):
    from entityseg_data.errors import ConfigError

    root, path, _ = syn_set
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(ConfigError, match="token"):
        export_hf(path, tmp_path / "hf", images_dir=root / "images", push_to_hub="me/x")


def test_missing_images_are_skipped_and_reported(syn_set, tmp_path):
    root, path, coco = syn_set
    work = tmp_path / "imgs"
    shutil.copytree(root / "images", work)
    gone = coco["images"][1]
    (work / gone["file_name"]).unlink()
    out = export_entityseg(path, tmp_path / "es", images_dir=work, split=False, lr=False)
    assert [m["image_id"] for m in out.counts["skipped_images"]] == [gone["id"]]
    d = json.loads(out.annotation_files["all"].read_text())
    assert len(d["images"]) == 3 and all(a["image_id"] != gone["id"] for a in d["annotations"])
    res = export_hf(path, tmp_path / "hf", images_dir=work, save_to_disk=False)
    assert res["rows"] == {"train": 3} and res["skipped"][0]["image_id"] == gone["id"]


def test_workspace_export_uses_the_workspace_export_config(syn_set, tmp_path):
    """Without an explicit config, a workspace export takes its own `export` section."""
    from entityseg_data.config import WorkspaceConfig, apply_overrides

    root, _, _ = syn_set
    cfg = apply_overrides(
        WorkspaceConfig(), ["export.val_fraction=0.5", "export.stratify_by_source=false"]
    )
    ws = Workspace.create(tmp_path / "ws", cfg)
    import_label_maps(ws, root / "images", root / "label_maps")
    out = export_entityseg(ws, tmp_path / "release", lr=False, seed=0)
    assert out.counts["val"]["images"] == 2 and out.counts["train"]["images"] == 2
