"""The API the ``export`` commands stand on: the EntitySeg layout, the Hugging Face Parquet files
and the class-aware subsets, of a workspace or of a COCO JSON with its images."""

from __future__ import annotations

import json

import pytest

import entityseg_data as esd
from entityseg_data.synthetic import write_dataset


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ann = write_dataset(root / "src", 4, seed=5, sizes=((48, 64), (64, 48)), image_format="png")
    ws = esd.Workspace.create(root / "ws")
    ws.import_coco(ann, ann.parent / "images")
    return ws, ann


def _split_ids(out):
    return {
        name: sorted(
            im["id"]
            for im in json.loads((out / "annotations" / f"entityseg_{name}.json").read_text())[
                "images"
            ]
        )
        for name in ("train", "val")
    }


def test_export_entityseg_of_a_workspace_follows_its_config_and_overrides(made, tmp_path):
    ws, _ = made
    steps: list[int] = []
    res = esd.export_entityseg(
        ws,
        tmp_path / "a",
        lr=False,
        overrides=["export.val_fraction=0.5", "export.stratify_by_source=false"],
        progress=steps.append,
    )
    assert isinstance(res, esd.ExportResult)
    assert res.counts["val"]["images"] == 2 and res.counts["train"]["images"] == 2
    assert sum(steps) >= 4
    assert not (tmp_path / "a" / "lr").exists()
    # the verb and the function are one export: same seed, same splits
    again = ws.export_entityseg(
        tmp_path / "b", lr=False, overrides=["export.val_fraction=0.5"], seed=ws.config().seed
    )
    assert again.splits == res.splits


def test_export_entityseg_of_a_json_uses_the_defaults_and_the_seed(made, tmp_path):
    _, ann = made
    images = ann.parent / "images"
    one = esd.export_entityseg(ann, tmp_path / "one", images_dir=images, split=False, lr=False)
    data = json.loads((tmp_path / "one" / "annotations" / "entityseg_all.json").read_text())
    assert one.counts["all"]["images"] == 4 and [c["name"] for c in data["categories"]] == [
        "entity"
    ]
    aware = esd.export_entityseg(
        ann, tmp_path / "aware", images_dir=images, split=False, lr=False, class_agnostic=False
    )
    cats = json.loads((tmp_path / "aware" / "annotations" / "entityseg_all.json").read_text())[
        "categories"
    ]
    assert aware.counts["all"]["annotations"] == one.counts["all"]["annotations"]
    assert len(cats) > 1 and "entity" not in {c["name"] for c in cats}
    # a seed given as an override and as an argument: the same split
    kw = {"images_dir": images, "lr": False, "overrides": ["export.val_fraction=0.5"]}
    a = esd.export_entityseg(ann, tmp_path / "s1", **kw, seed=11)
    b = esd.export_entityseg(
        ann, tmp_path / "s2", **{**kw, "overrides": [*kw["overrides"], "seed=11"]}
    )
    assert a.splits == b.splits and _split_ids(tmp_path / "s1") == _split_ids(tmp_path / "s2")
    others = [esd.export_entityseg(ann, tmp_path / f"o{s}", **kw, seed=s).splits for s in range(6)]
    assert any(o != a.splits for o in others)  # the seed is used
    with pytest.raises(esd.DataError, match="images_dir"):
        esd.export_entityseg(ann, tmp_path / "x")


def test_export_subsets_and_hf(made, tmp_path):
    ws, ann = made
    paths = esd.export_subsets(ws, tmp_path / "sub", k_instance=2, k_semantic=0, k_panoptic=0)
    assert set(paths) == {"instance"}
    inst = json.loads(paths["instance"].read_text())
    assert len(inst["categories"]) == 2
    assert {a["category_id"] for a in inst["annotations"]} == {1, 2}
    assert ws.export_subsets(tmp_path / "sub2", k_instance=2, k_semantic=0, k_panoptic=0) == {
        "instance": tmp_path / "sub2" / "instance.json"
    }
    hf = esd.export_hf(ann, tmp_path / "hf", images_dir=ann.parent / "images", save_to_disk=False)
    assert hf["hf"] is None and sum(hf["rows"].values()) == 4
    assert all(p.is_file() for p in hf["parquet"].values())
