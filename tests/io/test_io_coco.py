"""io.coco: the strict COCO reader/validator (probe rows 5.7, 5.10, 5.12, 5.15, 5.16, 5.21) and
real COCO files (instances with polygons and a crowd RLE, panoptic with thing/stuff)."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from entityseg_data.errors import DataError
from entityseg_data.io.coco import read_coco, read_panoptic, read_panoptic_png, read_results

REAL = Path(os.environ.get("ENTITYSEG_SHARED", Path(__file__).resolve().parents[3] / "shared"))
REAL = REAL / "realdata"


def _rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def probe_gt() -> dict:
    """The probe's gt.json: 2 images 20x30, 4 RLE masks (2 per image, disjoint)."""
    anns = []
    for iid in (1, 2):
        for k in range(2):
            m = np.zeros((20, 30), bool)
            m[2 + 8 * k : 8 + 8 * k, 3 : 10 + 5 * iid] = True
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": _rle(m),
                    "area": int(m.sum()),
                }
            )
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "height": 20, "width": 30} for i in (1, 2)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "entity"}],
    }


def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_valid_file_gives_typed_records(tmp_path):
    ds = read_coco(_write(tmp_path, "gt.json", probe_gt()))
    assert [im.id for im in ds.images] == [1, 2] and len(ds.annotations) == 4
    a = ds.annotations[0]
    assert a.segmentation["size"] == [20, 30] and isinstance(a.segmentation["counts"], str)
    assert a.format == "rle" and a.category_id == 1 and not a.iscrowd
    assert ds.categories[0].name == "entity" and ds.categories[0].isthing is None
    assert ds.to_dict()["annotations"][0]["segmentation"] == a.segmentation


def test_probe_5_7_deep_json(tmp_path):
    with pytest.raises(DataError, match="deep.json: malformed JSON"):
        read_coco(_write(tmp_path, "deep.json", "[" * 100_000))


def test_probe_5_12_a_json_list_is_not_a_coco_file(tmp_path):
    """Probe 5.12: a JSON list gave TypeError in consistency."""
    with pytest.raises(DataError, match=r"list.json: not a COCO file \(a JSON list"):
        read_coco(_write(tmp_path, "list.json", [{"image_id": 1}]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["images"][0].update(height="20"), r"images\[0\] \(id 1\): 'height' must be"),
        (lambda d: d["images"][0].pop("height"), r"images\[0\] \(id 1\): missing 'height'"),
        (lambda d: d["images"][1].update(id=1), r"images\[1\]: duplicate image id 1"),
        (lambda d: d["images"][0].update(width=-5), "non-positive size 20x-5"),
        (lambda d: d["annotations"][0].update(image_id=9), r"\(id 1\): unknown image id 9"),
        (lambda d: d["annotations"][1].update(id=1), "duplicate annotation id 1"),
        (lambda d: d["annotations"][0].update(category_id=5), "category id 5 is not in"),
        (lambda d: d["annotations"][0].update(area=float("nan")), "'area' must be a finite"),
        (lambda d: d["annotations"][0].update(iscrowd=2), "'iscrowd' must be 0 or 1"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2]), "'bbox' must be 4 finite numbers"),
        (lambda d: d["annotations"][0].update(segmentation=None), "unsupported segmentation"),
        (
            lambda d: d["annotations"][0]["segmentation"].update(size=[40, 60]),
            "RLE size 40x60 differs from the image size 20x30",
        ),
        (
            lambda d: d["annotations"][0]["segmentation"].update(counts="0::"),
            "RLE counts",
        ),
        (
            lambda d: d["annotations"][0]["segmentation"].update(counts="a b"),
            "outside the COCO alphabet",
        ),
        (
            lambda d: d["annotations"][0].update(
                segmentation={"size": [20, 30], "counts": [10, 5, 3]}
            ),
            "RLE counts cover 18 pixels",
        ),
        (lambda d: d["categories"][0].update(isthing="yes"), "'isthing' must be 0 or 1"),
    ],
)
def test_bad_records_are_one_error_naming_file_and_record(tmp_path, change, message):
    """Probes 5.10 ("height": "20"), 5.15 (corrupt RLE), 5.16 (duplicate image id), 5.21
    (missing height): each is one DataError naming the file and the record."""
    data = probe_gt()
    change(data)
    path = _write(tmp_path, "bad.json", data)
    with pytest.raises(DataError, match=message) as info:
        read_coco(path)
    assert str(info.value).startswith(f"{path}: ")
    # the lenient policy drops the bad record and reports the same problem
    ds = read_coco(path, strict=False)
    assert ds.problems and re.search(message, str(ds.problems[0]))


def test_lenient_read_keeps_the_good_records(tmp_path):
    data = probe_gt()
    data["annotations"][0]["segmentation"]["counts"] = "0::"
    data["annotations"][3]["image_id"] = 7
    ds = read_coco(data, strict=False)
    assert sorted(a.id for a in ds.annotations) == [2, 3]
    assert sorted((p.issue, p.annotation_id, p.image_id) for p in ds.problems) == [
        ("malformed_segmentation", 1, 1),
        ("unknown_image", 4, 7),
    ]
    assert ds.source == "<COCO annotations>"


def test_missing_size_read_from_the_image_when_a_root_is_given(tmp_path):
    from PIL import Image

    Image.new("RGB", (30, 20)).save(tmp_path / "1.png")
    data = probe_gt()
    data["images"][0].pop("height")
    data["images"] = data["images"][:1]
    data["annotations"] = data["annotations"][:2]
    ds = read_coco(data, image_root=tmp_path)
    assert (ds.images[0].height, ds.images[0].width) == (20, 30)


def test_real_coco_instances_polygons_and_crowd_rle():
    path = REAL / "icevision_coco2017_6img" / "annotations.json"
    if not path.exists():
        pytest.skip("realdata not found")
    ds = read_coco(path)
    raw = json.loads(path.read_text())
    assert len(ds.images) == 6 and len(ds.annotations) == 36 and len(ds.categories) == 80
    assert {a.format for a in ds.annotations} == {"polygon", "uncompressed_rle"}
    crowd = [a for a in ds.annotations if a.iscrowd]
    assert len(crowd) == 1 and crowd[0].format == "uncompressed_rle"
    sizes = {im["id"]: (im["height"], im["width"]) for im in raw["images"]}
    for a, r in zip(ds.annotations, raw["annotations"], strict=True):
        h, w = sizes[r["image_id"]]
        seg = r["segmentation"]
        ref = (
            mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            if isinstance(seg, list)
            else mask_utils.frPyObjects(seg, h, w)
        )
        assert np.array_equal(
            mask_utils.decode(ref),
            mask_utils.decode(
                {"size": a.segmentation["size"], "counts": a.segmentation["counts"].encode()}
            ),
        )
    assert ds.images[0].license and ds.images[0].url.startswith("http://images.cocodataset")
    assert ds.categories[0].supercategory == "person" and ds.categories[0].isthing is None


def test_real_coco_panoptic_thing_stuff_and_pngs():
    root = REAL / "coco_panoptic_train100"
    if not root.exists():
        pytest.skip("realdata not found")
    ds = read_coco(root / "panoptic_train2017.json")
    assert ds.is_panoptic and len(ds.images) == 100 and len(ds.panoptic) == 100
    assert len(ds.categories) == 133
    kinds = [c.kind for c in ds.categories]
    assert kinds.count("thing") == 80 and kinds.count("stuff") == 53
    assert sum(len(p.segments) for p in ds.panoptic) == 1111
    assert sum(s.iscrowd for p in ds.panoptic for s in p.segments) == 6
    p = ds.panoptic[0]
    im = ds.image_by_id()[p.image_id]
    ids = read_panoptic_png(root / "panoptic_train2017" / p.file_name, im.height, im.width)
    for s in p.segments:
        assert int((ids == s.id).sum()) == s.area
    present = set(np.unique(ids).tolist()) - {0}
    assert present == {s.id for s in p.segments}


def test_panoptic_records_are_checked(tmp_path):
    root = REAL / "coco_panoptic_train100"
    if not root.exists():
        pytest.skip("realdata not found")
    data = json.loads((root / "panoptic_train2017.json").read_text())
    bad = copy.deepcopy(data)
    bad["annotations"][3]["segments_info"][1]["category_id"] = 999
    with pytest.raises(DataError, match=r"annotations\[3\].*segments_info\[1\].*category id 999"):
        read_coco(bad)
    bad = copy.deepcopy(data)
    bad["annotations"][0]["segments_info"].append(bad["annotations"][0]["segments_info"][0])
    with pytest.raises(DataError, match="duplicate segment id"):
        read_coco(bad)


def test_results_are_typed_and_checked_against_the_ground_truth(tmp_path):
    """A COCO results file: one reader for the class-agnostic and class-aware evaluations; every
    problem one DataError naming the file and the result."""
    gt = probe_gt()
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    res = [dict(a, score=0.5 + 0.1 * k) for k, a in enumerate(gt["annotations"])]
    for a in res:
        a.pop("id")
    path = _write(tmp_path, "res.json", res)
    got = read_results(path, sizes)
    assert [r.image_id for r in got] == [1, 1, 2, 2]
    assert [r.segmentation for r in got] == [a["segmentation"] for a in gt["annotations"]]
    assert [r.score for r in got] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert read_results({"annotations": res}, sizes, categories={1}) == got
    unknown = [dict(res[0], image_id=7)]
    with pytest.raises(DataError, match=r"res.json: prediction \[0\] \(image_id 7\): unknown"):
        read_results(_write(tmp_path, "res.json", unknown), sizes)
    with pytest.raises(DataError, match=r"prediction \[1\] \(image_id 1\): category id 5"):
        read_results([res[0], dict(res[1], category_id=5)], sizes, categories={1})
    with pytest.raises(DataError, match="missing category_id \\(a result needs 'image_id', 'cat"):
        read_results(
            [{k: v for k, v in res[0].items() if k != "category_id"}], sizes, categories={1}
        )
    with pytest.raises(DataError, match="'image_id' must be an integer, got '1'"):
        read_results([dict(res[0], image_id="1")], sizes)
    with pytest.raises(DataError, match=r"\(image_id 2\): RLE size 20x30 differs.* 21x30"):
        read_results([res[2]], {1: (20, 30), 2: (21, 30)})
    with pytest.raises(DataError, match="COCO results format"):
        read_results({"images": []}, sizes)


def test_panoptic_predictions_need_only_their_annotations(tmp_path):
    seg = {"id": 5, "category_id": 1, "iscrowd": 0}
    pred = {"annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": [seg]}]}
    ds = read_panoptic(_write(tmp_path, "pred.json", pred))
    (p,) = ds.panoptic
    assert (p.image_id, p.file_name, [s.id for s in p.segments]) == (1, "1.png", [5])
    pred["annotations"].append(pred["annotations"][0])
    with pytest.raises(DataError, match=r"pred.json: annotations\[1\].*a second panoptic"):
        read_panoptic(_write(tmp_path, "pred.json", pred))
    with_images = {
        "images": [{"id": 2, "height": 4, "width": 4}],
        "annotations": pred["annotations"][:1],
    }
    with pytest.raises(DataError, match=r"annotations\[0\] \(image_id 1\): unknown image id 1"):
        read_panoptic(with_images)
    with pytest.raises(DataError, match="needs an 'annotations' list"):
        read_panoptic({"images": []})


def test_rle_decoding_passes_are_bounded_by_characters(monkeypatch):
    """The strict decoder runs in passes of at most ``_CHUNK_CHARS`` counts characters (a pass
    costs ~64 bytes per character, so a whole file of 12 MP masks in one pass grew with the
    file: 48 such images of 19 masks, 500 MB, now 145 MB); the records are the same, corrupt
    RLEs are still found, uncompressed RLEs still become compressed."""
    from entityseg_data.io import coco as coco_io
    from entityseg_data.io.coco import checked_rles
    from entityseg_data.masks import rle as rle_ops

    rng = np.random.default_rng(0)
    masks = [rng.random((40, 50)) < 0.3 for _ in range(30)]
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 50}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": _rle(m), "iscrowd": 0}
            for i, m in enumerate(masks)
        ],
        "categories": [{"id": 1, "name": "entity"}],
    }
    # one uncompressed RLE (list counts)
    coco["annotations"][7]["segmentation"] = {
        "size": [40, 50],
        "counts": rle_ops.counts(coco["annotations"][7]["segmentation"]).tolist(),
    }
    longest = max(len(a["segmentation"]["counts"]) for a in coco["annotations"][:7])
    limit = 3 * longest
    monkeypatch.setattr(coco_io, "_CHUNK_CHARS", limit)
    passes: list[int] = []
    real = rle_ops.counts_many

    def spy(rles, *args, **kwargs):
        passes.append(sum(len(r["counts"]) for r in rles if isinstance(r["counts"], str)))
        return real(rles, *args, **kwargs)

    monkeypatch.setattr(rle_ops, "counts_many", spy)
    ds = read_coco(copy.deepcopy(coco))
    assert len(passes) >= 30 * longest // (limit + longest) and max(passes) < limit + longest
    for a, m in zip(ds.annotations, masks, strict=True):
        assert isinstance(a.segmentation["counts"], str)
        assert np.array_equal(mask_utils.decode(a.segmentation).astype(bool), m)
    passes.clear()
    out = checked_rles([(a["segmentation"], 40, 50) for a in coco["annotations"]])
    assert len(passes) > 1 and max(passes) < limit + longest
    assert [r["counts"] for r in out] == [a.segmentation["counts"] for a in ds.annotations]
    # a corrupt RLE in a later pass is still found (lenient: that record alone is dropped)
    bad = copy.deepcopy(coco)
    bad["annotations"][25]["segmentation"]["counts"] = "}}}"  # outside the COCO alphabet
    lenient = read_coco(bad, strict=False)
    assert [a.id for a in lenient.annotations] == [i + 1 for i in range(30) if i != 25]
    assert len(lenient.problems) == 1
