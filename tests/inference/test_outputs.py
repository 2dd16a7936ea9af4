"""Result object, writers, path templates, input expansion and SAM conversion."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from entityseg_data.errors import ConfigError, DataError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.brush import decode_brush
from entityseg_data.model.inference.fusion import Painted
from entityseg_data.model.inference.inputs import (
    expand_inputs,
    parse_resize,
    parse_shard,
    select,
)
from entityseg_data.model.inference.outputs import (
    output_base,
    outputs_exist,
    read_label_png,
    save_result,
)
from entityseg_data.model.inference.postprocess import PostprocessOptions, finalize
from entityseg_data.model.inference.sam import load_sam_output, sam_to_result


def make_result(n=300, h=40, w=50, seed=0):
    """A result with many entities (ids beyond 255) from a random painted map."""
    rng = np.random.default_rng(seed)
    lm = rng.integers(0, n + 1, (h, w)).astype(np.uint16)
    areas = np.bincount(lm.ravel(), minlength=n + 1)[1:]
    boxes = np.zeros((n, 4), np.int64)
    for k in range(n):
        ys, xs = np.nonzero(lm == k + 1)
        if len(ys):
            boxes[k] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    painted = Painted(
        label_map=lm, areas=areas, sum_prob=areas * 0.8, sum_sig_prob=areas * 0.7, boxes=boxes
    )
    cls = rng.random(n).astype(np.float32)
    res = finalize(painted, cls, np.arange(n), PostprocessOptions(max_entities=None))
    return res.with_source("/data/scene1/color/frame_0001.jpg", "unit")


def test_result_records_masks_coco_and_label_studio():
    res = make_result()
    assert len(res) > 255 and res.label_map.max() == len(res)
    assert np.all(np.diff(res.scores) <= 0)
    np.testing.assert_allclose(res.scores, res.class_scores * 0.8, rtol=1e-6)
    assert len(res.masks) == len(res)
    np.testing.assert_array_equal(res.masks[3], res.label_map == 4)
    np.testing.assert_array_equal(res.masks[-1], res.label_map == len(res))
    coco = res.to_coco(image_id=7)
    for i in (0, 100, len(res) - 1):
        rec = coco[i]
        np.testing.assert_array_equal(rle_utils.decode(rec["segmentation"]), res.masks[i])
        assert rec["area"] == res.areas[i] == rle_utils.area(rec["segmentation"])
        assert rec["bbox"] == [int(v) for v in rle_utils.bbox(rec["segmentation"])]
        assert {"predicted_iou", "stability_score", "point_coords", "crop_box", "score"} <= set(rec)
        assert rec["image_id"] == 7
    ls = res.to_label_studio(from_name="mask", to_name="image", model_version="m1")
    assert ls["model_version"] == "m1" and len(ls["result"]) == len(res)
    for i in (0, len(res) - 1):
        r = ls["result"][i]
        assert (r["original_height"], r["original_width"]) == (40, 50)
        m = decode_brush(r["value"]["rle"], 40, 50)
        np.testing.assert_array_equal(m > 0, res.masks[i])


def test_save_formats_templates_and_completion(tmp_path):
    res = make_result(n=20)
    image = np.full((40, 50, 3), 100, np.uint8)
    template = str(tmp_path / "{parent}" / "mask" / "{stem}")
    paths = save_result(
        res, template, formats=("png", "json", "coco", "overlay", "cutouts", "npz"), image=image
    )
    base = tmp_path / "color" / "mask" / "frame_0001"
    assert paths[-1] == base.with_suffix(".json")  # the sidecar is written last
    np.testing.assert_array_equal(read_label_png(base.with_suffix(".png")), res.label_map)
    side = json.loads(base.with_suffix(".json").read_text())
    assert [e["id"] for e in side["entities"]] == list(range(1, len(res) + 1))
    assert side["entities"][0]["bbox"] == res.boxes[0].tolist()
    npz = np.load(str(base) + ".npz")
    np.testing.assert_array_equal(npz["label_map"], res.label_map)
    cut = np.asarray(Image.open(base.parent / "frame_0001.cutouts" / "0001.png"))
    x, y, w, h = res.boxes[0]
    assert cut.shape == (h, w, 4)
    np.testing.assert_array_equal(cut[..., 3] > 0, res.label_map[y : y + h, x : x + w] == 1)
    ov = np.asarray(Image.open(str(base) + ".overlay.png"))
    assert ov.shape == (40, 50, 3)
    assert outputs_exist(base, ("png", "json", "coco", "overlay", "cutouts", "npz"))
    base.with_suffix(".png").unlink()
    assert not outputs_exist(base, ("png", "json"))
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ConfigError):
        save_result(res, template, formats=("overlay",))  # needs the image
    with pytest.raises(ConfigError):
        save_result(res, str(tmp_path / "{nope}"), formats=("png",))


def test_output_base_fields(tmp_path):
    src = tmp_path / "data" / "scene" / "img.jpg"
    assert output_base("out/{parent}/{stem}", src) == tmp_path.__class__("out/scene/img")
    assert output_base("out", src, root=tmp_path / "data").as_posix() == "out/scene/img"
    assert output_base("o/{relpath}.png", src, root=tmp_path).as_posix() == "o/data/scene/img"
    assert output_base("o/{index:05d}_{name}", src, index=3).as_posix() == "o/00003_img.jpg"


def test_expand_inputs_select_and_parse(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for p in ("a/1.png", "a/sub/2.jpg", "a/notes.txt", "b.png"):
        (tmp_path / p).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# frames\nb.png\na/1.png\n\n")
    items = expand_inputs([tmp_path / "a"])
    assert [i.path.name for i in items] == ["1.png", "2.jpg"]
    assert all(i.root == tmp_path / "a" for i in items)
    items = expand_inputs([str(tmp_path / "**" / "*.png"), tmp_path / "list.txt"])
    assert [i.path.name for i in items] == ["1.png", "b.png"]  # de-duplicated, order kept
    with pytest.raises(DataError):
        expand_inputs([tmp_path / "missing.png"])
    with pytest.raises(DataError):
        expand_inputs([str(tmp_path / "*.gif")])
    seq = list(range(10))
    assert select(seq, stride=3) == [0, 3, 6, 9]
    assert select(seq, stride=1, shard=(1, 3)) == [1, 4, 7]
    parts = [select(seq, stride=2, shard=(i, 2)) for i in range(2)]
    assert sorted(parts[0] + parts[1]) == [0, 2, 4, 6, 8]
    assert parse_shard("2/4") == (2, 4)
    with pytest.raises(ConfigError):
        parse_shard("4/4")
    assert parse_resize("480x640") == (480, 640) and parse_resize("512") == 512
    with pytest.raises(ConfigError):
        parse_resize("axb")


def test_parse_shard_auto(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert parse_shard("auto") == (3, 8)


def _sam_records(h=30, w=40):
    big = np.zeros((h, w), np.uint8)
    big[5:25, 5:35] = 1
    small = np.zeros((h, w), np.uint8)
    small[10:20, 10:20] = 1
    inner = np.zeros((h, w), np.uint8)
    inner[12:14, 12:14] = 1
    masks = [big, small, inner]
    ious = [0.95, 0.90, 0.80]  # the big mask scores highest
    recs = []
    for m, iou in zip(masks, ious):
        r = rle_utils.encode(m)
        recs.append(
            {
                "segmentation": r,
                "area": int(m.sum()),
                "bbox": rle_utils.bbox(r),
                "predicted_iou": iou,
                "stability_score": 1.0 - iou,
                "point_coords": [[0, 0]],
                "crop_box": [0, 0, w, h],
            }
        )
    return masks, recs


def test_sam_json_higher_score_wins(tmp_path):
    masks, recs = _sam_records()
    path = tmp_path / "sam.json"
    path.write_text(json.dumps(recs))
    res = sam_to_result(path)
    # the big mask (highest predicted_iou) takes everything it covers: the others vanish
    assert len(res) == 1 and res.areas.tolist() == [masks[0].sum()]
    np.testing.assert_array_equal(res.label_map == 1, masks[0] == 1)
    # by stability score the order reverses: the smallest wins its pixels
    res = sam_to_result(path, score_key="stability_score")
    assert res.query_index.tolist() == [2, 1, 0]
    assert res.areas.tolist() == [4, 100 - 4, int(masks[0].sum()) - 100]
    assert rle_utils.overlap_pixels(res.rles) == 0
    assert res.boxes[0].tolist() == [12, 12, 2, 2]
    # min_area drops entities and leaves their pixels empty
    res = sam_to_result(path, score_key="stability_score", min_area=10)
    assert res.query_index.tolist() == [1, 0] and (res.label_map > 0).sum() == masks[0].sum() - 4


def test_sam_png_folder(tmp_path):
    masks, recs = _sam_records()
    folder = tmp_path / "img1"
    folder.mkdir()
    header = [
        "id",
        "area",
        "bbox_x0",
        "bbox_y0",
        "bbox_w",
        "bbox_h",
        "point_input_x",
        "point_input_y",
        "predicted_iou",
        "stability_score",
        "crop_box_x0",
        "crop_box_y0",
        "crop_box_w",
        "crop_box_h",
    ]
    with (folder / "metadata.csv").open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(header)
        for i, (m, r) in enumerate(zip(masks, recs)):
            Image.fromarray(m * 255).save(folder / f"{i}.png")
            wr.writerow(
                [
                    i,
                    r["area"],
                    *r["bbox"],
                    0,
                    0,
                    r["predicted_iou"],
                    r["stability_score"],
                    0,
                    0,
                    40,
                    30,
                ]
            )
    assert len(load_sam_output(folder)) == 3
    res = sam_to_result(folder, score_key="stability_score")
    assert res.areas.tolist() == [4, 96, int(masks[0].sum()) - 100]
    pre = res.to_label_studio()
    assert len(pre["result"]) == 3
    with pytest.raises(DataError):
        load_sam_output(tmp_path)  # no metadata.csv


def test_predict_from_sam_cli(tmp_path):
    from click.testing import CliRunner

    from entityseg_data.cli.main import cli

    _masks, recs = _sam_records()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "frame1.json").write_text(json.dumps(recs))
    (tmp_path / "in" / "broken.json").write_text("{not json")
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        [
            "predict",
            "--from-sam",
            str(tmp_path / "in" / "frame1.json"),
            str(tmp_path / "in" / "broken.json"),
            "-o",
            str(out / "{stem}"),
            "-f",
            "png",
            "-f",
            "json",
            "-f",
            "coco",
        ],
    )
    assert r.exit_code == 1 and "converted 1" in r.output and "broken.json" in r.output
    lm = read_label_png(out / "frame1.png")
    np.testing.assert_array_equal(lm, sam_to_result(recs).label_map)
    side = json.loads((out / "frame1.json").read_text())
    assert side["score_mode"] == "sam:predicted_iou" and len(side["entities"]) == 1
    assert len(json.loads((out / "frame1.coco.json").read_text())) == 1
    # writing next to the input would overwrite it: refused
    r = CliRunner().invoke(
        cli,
        [
            "predict",
            "--from-sam",
            str(tmp_path / "in" / "frame1.json"),
            "-o",
            str(tmp_path / "in" / "{stem}"),
        ],
    )
    assert r.exit_code != 0 and (tmp_path / "in" / "frame1.json").read_text() == json.dumps(recs)
