"""The API the ``eval`` and ``consistency`` commands stand on: each task's evaluation of files
(perfect predictions score 1, damaged ones less) and agreement between annotator files."""

from __future__ import annotations

import copy
import json

import pytest

import entityseg_data as esd
from entityseg_data.synthetic import write_dataset


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    gt = write_dataset(root / "set", 3, seed=7, sizes=((40, 56),), write_images=False)
    subsets = esd.export_subsets(gt, root / "subsets", k_instance=5, k_semantic=5, k_panoptic=5)
    return gt, subsets


def _results(coco, *, drop_every=0, category=None):
    out = []
    for k, a in enumerate(coco["annotations"]):
        if drop_every and k % drop_every == 0:
            continue
        out.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"] if category is None else category,
                "segmentation": a["segmentation"],
                "score": 1.0 - 0.001 * k,
            }
        )
    return out


def test_evaluate_entity_and_its_table(files):
    gt, _ = files
    coco = json.loads(gt.read_text())
    perfect = esd.evaluate_entity(gt, _results(coco, category=1), boundary=True)
    assert perfect["segm"]["AP"] == pytest.approx(1.0)
    assert perfect["boundary"]["AP"] == pytest.approx(1.0)
    assert perfect["info"]["num_gt"] == len(coco["annotations"])
    rows = esd.entity_metrics_table(perfect)
    ap = next(r for r in rows if r["metric"] == "AP")
    assert ap["segm"] == "100.000" and ap["boundary"] == "100.000"
    missing = esd.evaluate_entity(gt, _results(coco, drop_every=2), max_dets=(1, 100))
    assert 0.0 < missing["segm"]["AP"] < 1.0
    assert "AR1" in missing["segm"] and "AR10" not in missing["segm"]


def test_evaluate_instance_panoptic_semantic_on_the_subsets(files):
    _, sub = files
    inst = json.loads(sub["instance"].read_text())
    perfect = esd.evaluate_instance(sub["instance"], _results(inst))
    assert perfect["segm"]["AP"] == pytest.approx(1.0)
    assert set(perfect["per_category"]) == {c["name"] for c in inst["categories"]}
    wrong = _results(inst)
    for r in wrong:  # every prediction in the next category
        r["category_id"] = r["category_id"] % len(inst["categories"]) + 1
    assert esd.evaluate_instance(sub["instance"], wrong)["segm"]["AP"] < 0.5

    pan = esd.evaluate_panoptic(sub["panoptic"], sub["panoptic"])
    assert pan["All"]["PQ"] == pytest.approx(1.0) and pan["info"]["num_images"] == 3

    sem_gt = sub["semantic"]
    sem_dir = sem_gt.parent / "semantic"
    sem = esd.evaluate_semantic(sem_gt, sem_dir)
    assert sem["mIoU"] == pytest.approx(1.0) and sem["pAcc"] == pytest.approx(1.0)
    with pytest.raises(esd.DataError, match="folder"):
        esd.evaluate_semantic(sem_gt, sem_gt)


def test_agreement_of_annotator_files(files, tmp_path):
    gt, _ = files
    coco = json.loads(gt.read_text())
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(coco))
    other = copy.deepcopy(coco)
    other["annotations"] = other["annotations"][::2]  # b drew half the entities
    b.write_text(json.dumps(other))
    same = esd.agreement([a, a], plain_names=True)
    assert isinstance(same, esd.Agreement)
    assert same.mean_mask_map == pytest.approx(1.0) and same.num_images == 3
    half = esd.agreement([str(a), str(b)], plain_names=True, iou_threshold=0.75)
    assert half.mean_mask_map < 1.0 and len(half.pairs) == 2
    assert half.report["iou_threshold"] == 0.75
    header, *lines = half.to_csv().splitlines()
    assert header.split(",")[:2] == ["gt", "pred"] and len(lines) == 2
    per_image = half.to_csv("per_image").splitlines()
    assert len(per_image) == 1 + len(half.per_image) and "image" in per_image[0]
    with pytest.raises(ValueError):
        half.to_csv("images")
    with pytest.raises(esd.ConfigError):
        esd.agreement([a, b], iou_threshold=0.0)
