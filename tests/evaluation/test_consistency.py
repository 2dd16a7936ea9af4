"""Consistency on crafted annotator files with hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from entityseg_data.evaluation.consistency import consistency, match_pairs, to_csv, to_markdown
from entityseg_data.masks import rle as rle_utils

H, W = 20, 30


def _m(y0, y1, x0, x1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return rle_utils.encode(m)


A1, A2, A3 = _m(0, 10, 0, 15), _m(10, 20, 0, 15), _m(0, 20, 0, 30)
SPURIOUS = _m(0, 5, 20, 30)


def _coco(entries, use_categories=False):
    images = [{"id": i, "height": H, "width": W, "file_name": f"im{i}.jpg"} for i in (1, 2)]
    anns, cats = [], {}
    for k, (iid, rle, name) in enumerate(entries):
        a = {"id": k + 1, "image_id": iid, "segmentation": rle, "area": rle_utils.area(rle)}
        if use_categories and name is not None:
            cats.setdefault(name, len(cats) + 1)
            a["category_id"] = cats[name]
        else:
            a["category_id"] = 1
            a["name"] = name
        anns.append(a)
    categories = [{"id": v, "name": k} for k, v in cats.items()] or [{"id": 1, "name": "entity"}]
    return {"images": images, "annotations": anns, "categories": categories}


@pytest.fixture()
def files(tmp_path):
    a = _coco([(1, A1, "Dog"), (1, A2, "tree"), (2, A3, "sky")])
    b = _coco([(1, SPURIOUS, "car"), (1, A1, "dog "), (1, A2, "Car"), (2, A3, "Sky")], True)
    c = _coco([(1, A1, None), (1, A2, None), (2, A3, None)])
    paths = []
    for name, d in (("alice", a), ("bob", b), ("carol", c)):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(d))
        paths.append(str(p))
    return paths


def test_hand_computed_table(files):
    rep = consistency(files, canonical=lambda s: s.strip().lower())
    assert rep["annotators"] == ["alice", "bob", "carol"] and rep["num_images"] == 2
    mm = rep["mask_map"]
    # alice as GT (3 masks), bob's 4 masks with score 1 in file order: FP, TP, TP, TP
    # -> precision envelope 3/4 at every recall: AP = 0.75 at every IoU threshold
    assert mm["alice"]["bob"] == pytest.approx(0.75, abs=1e-12)
    # bob as GT (4 masks), alice's 3 all TP: precision 1 up to recall 3/4: 76 of 101 points
    assert mm["bob"]["alice"] == pytest.approx(76 / 101, abs=1e-12)
    assert mm["alice"]["carol"] == mm["carol"]["alice"] == pytest.approx(1.0)
    assert mm["carol"]["bob"] == pytest.approx(0.75) and mm["bob"]["carol"] == pytest.approx(
        76 / 101
    )
    ca = rep["category_accuracy"]
    # matched pairs: Dog/dog (agree), tree/Car (disagree), sky/Sky (agree)
    assert ca["alice"]["bob"] == ca["bob"]["alice"] == pytest.approx(2 / 3)
    assert ca["alice"]["carol"] is None  # carol named nothing
    assert rep["matched_pairs"]["alice"]["bob"] == 3
    per = {(r["image"], r["gt"], r["pred"]): r for r in rep["per_image"]}
    assert per[(1, "alice", "bob")]["ap"] == pytest.approx(2 / 3)  # FP, TP, TP of 2 GT
    assert per[(2, "alice", "bob")]["ap"] == pytest.approx(1.0)
    assert per[(1, "alice", "bob")]["category_accuracy"] == pytest.approx(0.5)
    md = to_markdown(rep)
    assert "| alice |  | 75.0 | 100.0 |" in md
    assert "66.7" in md
    csv_text = to_csv(rep["pairs"])
    assert csv_text.splitlines()[0].startswith("gt,pred,mask_map")
    assert len(csv_text.splitlines()) == 1 + 6


def test_match_pairs_one_to_one():
    ious = np.array([[0.9, 0.6], [0.7, 0.5], [0.2, 0.55]])
    assert match_pairs(ious, 0.5) == [(0, 0, 0.9), (2, 1, 0.55)]


def test_by_file_name_when_ids_differ(tmp_path, files):
    d = json.loads(Path(files[1]).read_text())
    for im in d["images"]:
        im["id"] += 100
    for a in d["annotations"]:
        a["image_id"] += 100
    p = tmp_path / "bob2.json"
    p.write_text(json.dumps(d))
    rep = consistency([files[0], str(p)], canonical=str.lower)
    assert rep["image_key"] == "file_name" and rep["num_images"] == 2
    assert rep["images_not_shared"] == {"alice": 0, "bob2": 0}
    assert rep["mask_map"]["alice"]["bob2"] == pytest.approx(0.75)


def test_workspace_annotators(workspace):
    from entityseg_data.masks.store import Entity, ImageAnnotation, save_annotation

    for ann, ents in (("ann1", [(A1, "dog"), (A2, "tree")]), ("ann2", [(A1, "Dog"), (A2, "bush")])):
        save_annotation(
            workspace.root,
            ImageAnnotation(
                image_id=1,
                height=H,
                width=W,
                stage=2,
                annotator=ann,
                entities=tuple(Entity(id=str(i), rle=r, name=n) for i, (r, n) in enumerate(ents)),
            ),
        )
    rep = consistency(["ws:ann1", "ws:ann2"], workspace=workspace, stage=2, canonical=str.lower)
    assert rep["mask_map"]["ann1"]["ann2"] == pytest.approx(1.0)
    assert rep["category_accuracy"]["ann1"]["ann2"] == pytest.approx(0.5)


def test_needs_two(files):
    from entityseg_data.errors import DataError

    with pytest.raises(DataError, match="at least two"):
        consistency(files[:1])


def test_probe_5_12_json_list_and_bad_files_are_one_line_errors(files, tmp_path):
    """Probe 5.12: a JSON list given to consistency gave ``TypeError: int() argument ...``."""
    from entityseg_data.errors import DataError

    gt = json.loads(Path(files[0]).read_text())
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([gt]))
    with pytest.raises(DataError, match=r"list.json: neither a COCO.*got a JSON list"):
        consistency([files[0], str(listed)], canonical=str.lower)
    bad = tmp_path / "trunc.json"
    gt["annotations"][0]["segmentation"] = {"size": [H, W], "counts": "0::"}
    bad.write_text(json.dumps(gt))
    with pytest.raises(DataError, match=r"trunc.json: annotations\[0\] \(id 1\): RLE counts"):
        consistency([files[0], str(bad)], canonical=str.lower)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(DataError, match="deep.json: malformed JSON"):
        consistency([files[0], str(deep)], canonical=str.lower)


@pytest.mark.slow
def test_vocabulary_synonyms_count_as_agreement(tmp_path):
    """Default normaliser = the vocabulary (WordNet load: ~30 s on a busy 2-core machine)."""
    a = _coco([(1, A1, "couch"), (1, A2, "Trees"), (2, A3, "sky")])
    b = _coco([(1, A1, "sofa"), (1, A2, "tree"), (2, A3, "car")])
    rep = consistency([a, b])
    x, y = rep["annotators"]
    assert rep["category_accuracy"][x][y] == pytest.approx(2 / 3)


def test_label_studio_export_two_annotators(tmp_path):
    """One LS export holding two annotators' stage-2 work (brush RLE + names)."""
    from entityseg_data.annotation.labelstudio.format import annotation_to_results
    from entityseg_data.masks.store import Entity, ImageAnnotation

    def ann(uid, email, ents, image_id):
        ia = ImageAnnotation(
            image_id=image_id,
            height=H,
            width=W,
            stage=2,
            annotator=email,
            entities=tuple(Entity(id=f"r{uid}{i}", rle=r, name=n) for i, (r, n) in enumerate(ents)),
        )
        return {
            "id": uid * 10 + image_id,
            "completed_by": {"id": uid, "email": f"{email}@x.org"},
            "updated_at": "2026-01-01T00:00:00Z",
            "result": annotation_to_results(ia, with_names=True),
        }

    tasks = [
        {
            "id": 1,
            "data": {"image_id": 1, "height": H, "width": W},
            "annotations": [
                ann(1, "ann", [(A1, "dog"), (A2, "tree")], 1),
                ann(2, "ben", [(SPURIOUS, "car"), (A1, "Dog"), (A2, "bush")], 1),
            ],
        },
        {
            "id": 2,
            "data": {"image_id": 2, "height": H, "width": W},
            "annotations": [ann(1, "ann", [(A3, "sky")], 2), ann(2, "ben", [(A3, "sky")], 2)],
        },
    ]
    p = tmp_path / "export.json"
    p.write_text(json.dumps(tasks))
    rep = consistency([str(p)], stage=2, canonical=str.lower)
    assert rep["annotators"] == ["export:ann", "export:ben"]
    assert rep["mask_map"]["export:ann"]["export:ben"] == pytest.approx(0.75)
    assert rep["category_accuracy"]["export:ann"]["export:ben"] == pytest.approx(2 / 3)


def test_class_agnostic_files_have_no_category_accuracy():
    """Stage-1 (unnamed) masks: the single 'entity' category is not a name -> n/a, not 100 %."""
    import numpy as np

    from entityseg_data.evaluation.consistency import consistency
    from entityseg_data.masks import rle

    m = np.zeros((8, 8), np.uint8)
    m[:4] = 1

    def coco():
        return {
            "images": [{"id": 1, "height": 8, "width": 8, "file_name": "a.png"}],
            "annotations": [
                {
                    "id": 1,
                    "image_id": 1,
                    "segmentation": rle.encode(m),
                    "category_id": 1,
                    "iscrowd": 0,
                    "area": 32,
                }
            ],
            "categories": [{"id": 1, "name": "entity"}],
        }

    rep = consistency([coco(), coco()], canonical=str.lower)
    assert rep["mean_mask_map"] == pytest.approx(1.0)
    assert rep["mean_category_accuracy"] is None
