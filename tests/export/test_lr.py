"""The lr copy: the official size rule, PIL bilinear images, PIL nearest masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from entityseg_data.export.lr import lr_size, make_lr, resize_rles
from entityseg_data.masks import rle as rle_utils


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((3000, 4000), (800, 1067)),  # 4000 * 800 / 3000 = 1066.67
        ((4000, 3000), (1067, 800)),
        ((2000, 6000), (444, 1333)),  # long side capped: 2000 * 1333 / 6000 = 444.33
        ((1333, 800), (1333, 800)),
        ((600, 700), (800, 933)),  # enlarged like the official rule
        ((1000, 1000), (800, 800)),
        ((3024, 4032), (800, 1067)),
    ],
)
def test_lr_size_rule(hw, expected):
    assert lr_size(*hw) == expected


@pytest.mark.slow
def test_lr_copy_equals_reference_resize(syn_set, tmp_path):
    root, _, coco = syn_set
    lr_records, counts = make_lr(coco, root / "images", tmp_path / "lr")
    lr = lr_records.to_dict()
    assert counts["images"] == 4 and counts["skipped_images"] == 0
    by_id = {a["id"]: a for a in lr["annotations"]}
    n_ref_kept = 0
    for im, im_lr in zip(coco["images"], lr["images"]):
        h, w = im["height"], im["width"]
        nh, nw = lr_size(h, w)
        assert (im_lr["height"], im_lr["width"]) == (nh, nw)
        src = Image.open(root / "images" / im["file_name"]).convert("RGB")
        ref = np.asarray(src.resize((nw, nh), Image.BILINEAR))
        got = np.asarray(Image.open(tmp_path / "lr" / im["file_name"]))
        assert np.array_equal(got, ref)
        for a in coco["annotations"]:
            if a["image_id"] != im["id"]:
                continue
            m = rle_utils.decode(a["segmentation"]) * 255
            ref_m = np.asarray(Image.fromarray(m).resize((nw, nh), Image.NEAREST)) > 0
            if not ref_m.any():
                assert a["id"] not in by_id
                continue
            n_ref_kept += 1
            out = by_id[a["id"]]
            assert out["segmentation"]["size"] == [nh, nw]
            assert np.array_equal(rle_utils.decode(out["segmentation"]).astype(bool), ref_m)
            assert out["area"] == int(ref_m.sum())
    assert n_ref_kept == counts["annotations"]
    assert counts["dropped_empty"] == len(coco["annotations"]) - n_ref_kept


def test_overlapping_masks_resize_one_by_one():
    a = np.zeros((300, 400), np.uint8)
    a[10:200, 10:300] = 1
    b = np.zeros((300, 400), np.uint8)
    b[100:290, 150:390] = 1
    rles = [rle_utils.encode(a), rle_utils.encode(b)]
    size = lr_size(300, 400)
    out = resize_rles(rles, 300, 400, size)
    for m, r in zip((a, b), out):
        ref = np.asarray(Image.fromarray(m * 255).resize(size[::-1], Image.NEAREST)) > 0
        assert np.array_equal(rle_utils.decode(r).astype(bool), ref)
