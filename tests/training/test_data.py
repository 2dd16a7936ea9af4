"""The CropFormer / LSJ training mappers, sampler and collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entityseg_data.errors import DataError
from entityseg_data.model.inference.views import crop_boxes, resize_shape
from entityseg_data.model.training.config import DataConfig
from entityseg_data.model.training.data import (
    EntityCropMapper,
    LSJMapper,
    StreamSampler,
    collate,
    load_records,
    sample_rng,
)


def test_records_drop_crowd_and_empty(stripes):
    recs = load_records(stripes, stripes.parent / "images")
    assert len(recs) == 4  # the unannotated 5th image is filtered
    assert all(len(r.segmentations) == 3 for r in recs)  # crowd dropped
    assert len(load_records(stripes, stripes.parent / "images", filter_empty=False)) == 5


def test_records_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_records(tmp_path / "nope.json", tmp_path)
    with pytest.raises(DataError, match="missing 'annotations'"):
        load_records({"images": []}, tmp_path)
    bad = {
        "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
        "annotations": [{"id": 3, "image_id": 1, "segmentation": [], "bbox": [0, 0, 1, 1]}],
    }
    with pytest.raises(DataError, match="id=3"):
        load_records(bad, tmp_path)


def test_entity_crop_mapper_geometry(stripes):
    rec = load_records(stripes, stripes.parent / "images")[0]
    cfg = DataConfig(min_sizes=(48, 64), max_size=200)
    mapper = EntityCropMapper(config=cfg)
    seen_flip = set()
    for pos in range(12):
        rng, seed = sample_rng(0, pos)
        s = mapper(rec, rng, seed)
        assert len(s.views) == 2 and len(s.masks) == 2
        short = min(s.views[0].shape[:2])
        assert short in (48, 64)
        assert s.views[0].shape[:2] == resize_shape(rec.height, rec.width, short, 200)
        (box,) = s.crop_boxes
        assert box in crop_boxes(rec.height, rec.width, 0.7, 0.6)
        x0, y0, x1, y1 = box
        assert s.views[1].shape[:2] == resize_shape(y1 - y0, x1 - x0, short, 200)
        # N identical in every view, same order, all valid (stripes span every crop)
        assert s.masks[0].shape[0] == s.masks[1].shape[0] == 3 and s.valid.all()
        # flip shared by the views: the leftmost stripe's colour in view 0 equals the crop's
        # leftmost colour when the crop is a left corner
        full_left = s.views[0][short // 2, 0]
        flipped = not np.array_equal(s.masks[0][0][:, 0], np.ones(s.views[0].shape[0], bool))
        seen_flip.add(flipped)
        if x0 == 0:
            assert np.abs(s.views[1][5, 0].astype(int) - full_left.astype(int)).max() < 10
        # masks carry identities: entity k has the same colour in both views
        for k in range(3):
            c0 = s.views[0][s.masks[0][k]].mean(0)
            c1 = s.views[1][s.masks[1][k]].mean(0)
            assert np.abs(c0 - c1).max() < 25
    assert seen_flip == {True, False}


def test_entity_crop_validity_flags(tmp_path):
    """An entity outside the chosen crop is kept (N equal) but flagged invalid there."""
    import json

    from PIL import Image

    from entityseg_data.masks import rle as rle_utils

    h, w = 60, 100
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "a.png")
    m1 = np.zeros((h, w), bool)
    m1[:10, :10] = True  # only in the top-left corner
    m2 = np.ones((h, w), bool)
    m2[:10, :10] = False
    anns = [
        {
            "id": i + 1,
            "image_id": 1,
            "segmentation": rle_utils.encode(m),
            "iscrowd": 0,
            "bbox": rle_utils.bbox(rle_utils.encode(m)),
        }
        for i, m in enumerate([m1, m2])
    ]
    js = {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}], "annotations": anns}
    (tmp_path / "a.json").write_text(json.dumps(js))
    rec = load_records(tmp_path / "a.json", tmp_path)[0]
    mapper = EntityCropMapper(config=DataConfig(min_sizes=(60,), max_size=1000))
    seen = {}
    for pos in range(40):
        s = mapper(rec, *sample_rng(1, pos))
        flipped = s.masks[0][0][:, -1].any()
        (x0, y0, x1, _) = s.crop_boxes[0]
        # in the flipped frame the square is top-right
        contains = (y0 == 0) and ((x1 == w) if flipped else (x0 == 0))
        assert s.valid[0, 1] == contains and s.valid[0, 0] and s.valid[1].all()
        assert s.masks[1][0].any() == contains
        seen[contains] = True
    assert seen == {True: True, False: True}


def test_lsj_mapper(stripes):
    rec = load_records(stripes, stripes.parent / "images")[0]
    mapper = LSJMapper(config=DataConfig(lsj_size=96))
    sizes = set()
    for pos in range(8):
        s = mapper(rec, *sample_rng(0, pos))
        assert s.views[0].shape == (96, 96, 3)
        assert s.masks[0].shape[1:] == (96, 96) and s.valid.shape == (s.masks[0].shape[0], 1)
        assert all(m.any() for m in s.masks[0])  # empty instances removed
        _, hw, _ = mapper.geometry(rec.height, rec.width, sample_rng(0, pos)[0])
        sizes.add(hw)
        if hw[0] < 96:  # padded with 128 below the image
            assert (s.views[0][hw[0] :] == 128).all()
    assert len(sizes) > 4  # scale jitter


def test_sampler_sharding_and_resume():
    full = StreamSampler(size=5, seed=3)
    it = iter(full)
    keys = [next(it) for _ in range(12)]
    assert [p for _, p in keys] == list(range(12))
    assert sorted(i for i, _ in keys[:5]) == list(range(5))  # one epoch = a permutation
    r0, r1 = (
        iter(StreamSampler(size=5, seed=3, rank=0, world_size=2)),
        iter(StreamSampler(size=5, seed=3, rank=1, world_size=2)),
    )
    assert [next(r0) for _ in range(3)] == keys[0:6:2]
    assert [next(r1) for _ in range(3)] == keys[1:6:2]
    resumed = iter(StreamSampler(size=5, seed=3, start=7))
    assert [next(resumed) for _ in range(5)] == keys[7:12]


def test_collate_shapes_and_normalisation(stripes):
    rec = load_records(stripes, stripes.parent / "images")[0]
    mapper = EntityCropMapper(config=DataConfig(min_sizes=(50,), max_size=1000))
    samples = [mapper(rec, *sample_rng(0, p)) for p in range(2)]
    b = collate(samples)
    h = samples[0].views[0].shape[0]
    assert b.images.shape[:3] == (2, 2, 3)
    assert b.images.shape[3] == -(-max(v.shape[0] for s in samples for v in s.views) // 32) * 32
    assert b.images.shape[3] % 32 == 0 and b.images.shape[4] % 32 == 0
    assert b.pad_hw == tuple(b.images.shape[3:])
    assert torch.all(b.images[0, 0, :, h:, :] == 0)  # zero padding after normalisation
    px = samples[0].views[0][0, 0].astype(np.float32)
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    np.testing.assert_allclose(b.images[0, 0, :, 0, 0].numpy(), (px - mean) / std, rtol=1e-5)
    t = b.targets[0]
    assert t.valid.shape == (3, 2) and t.masks[1].shape[1:] == samples[0].masks[1].shape[1:]


def test_workspace_records_approved_stage1_and_split(workspace):
    from PIL import Image

    from entityseg_data.masks import rle as rle_utils
    from entityseg_data.masks.store import Entity, ImageAnnotation, save_annotation
    from entityseg_data.model.training.data import records_from_config, workspace_records

    h, w = 40, 60
    ids = []
    with workspace.catalog() as cat:
        for k, (split, status) in enumerate(
            [("train", "approved"), ("val", "approved"), ("train", "submitted")]
        ):
            rel = f"images/{k}.png"
            (workspace.root / "images").mkdir(exist_ok=True)
            Image.fromarray(np.full((h, w, 3), 40 * k, np.uint8)).save(workspace.root / rel)
            iid = cat.add_image(
                sha256=f"{k}" * 64,
                source="folder",
                source_id=str(k),
                width=w,
                height=h,
                file_path=rel,
            )
            cat.update_image(iid, split=split)
            cat.set_annotation(iid, 1, "alice", status=status)
            ids.append(iid)
    for iid in ids:
        m = np.zeros((h, w), bool)
        m[:, : w // 2] = True
        ents = (
            Entity(id="a", rle=rle_utils.encode(m)),
            Entity(id="b", rle=rle_utils.encode(~m)),
        )
        save_annotation(
            workspace.root,
            ImageAnnotation(
                image_id=iid, height=h, width=w, stage=1, annotator="alice", entities=ents
            ),
        )
    recs = workspace_records(workspace.root, "train")
    assert [r.image_id for r in recs] == [ids[0]]  # val split and non-approved excluded
    assert len(recs[0].segmentations) == 2
    assert {r.image_id for r in workspace_records(workspace.root, "")} == set(ids[:2])
    cfg = DataConfig(workspace=str(workspace.root), workspace_split="val")
    (rec,) = records_from_config(cfg)
    s = EntityCropMapper(config=DataConfig(min_sizes=(40,), max_size=100))(rec, *sample_rng(0, 0))
    assert s.valid.shape == (2, 2) and s.views[0].shape == (40, 60, 3)
