"""Views: crop geometry, resize rule, PIL view images and the padded input batch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from entityseg_data.errors import DataError
from entityseg_data.model.inference.preprocess import padded_size, stack_views
from entityseg_data.model.inference.views import (
    build_views,
    crop_boxes,
    resize_rgb,
    resize_shape,
    view_geometry,
)


def test_crop_boxes_reference_example():
    # REFERENCE.md 2.3: W=400, H=300
    assert crop_boxes(300, 400) == [
        (0, 0, 280, 210),
        (120, 0, 400, 210),
        (0, 90, 280, 300),
        (120, 90, 400, 300),
    ]


def test_crop_boxes_cover_every_pixel_and_stay_inside():
    for h, w in [(480, 640), (600, 400), (3000, 4000), (7, 5), (1, 1), (2, 1000)]:
        boxes = crop_boxes(h, w)
        cover = np.zeros((h, w), np.int32)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            cover[y0:y1, x0:x1] += 1
        assert cover.min() >= 1, (h, w)


def test_crop_boxes_other_grids():
    boxes = crop_boxes(300, 1000, (0.7, 0.4), (0.6, 0.25))
    assert len(boxes) == 8
    assert len(set(boxes)) == 8
    # a grid whose border shift repeats a box: duplicates are dropped unless asked for
    dup = crop_boxes(100, 100, 0.5, 0.25, dedupe=False)
    assert len(dup) == 16 and len(set(dup)) == 9
    assert crop_boxes(100, 100, 0.5, 0.25) == list(dict.fromkeys(dup))
    with pytest.raises(DataError):
        crop_boxes(10, 10, 1.5)


def test_resize_shape_rule():
    assert resize_shape(480, 640, 800, 1333) == (800, 1067)
    assert resize_shape(480, 640, 320, 512) == (320, 427)
    assert resize_shape(600, 400, 320, 512) == (480, 320)
    assert resize_shape(3000, 4000, 800, 1333) == (800, 1067)
    assert resize_shape(1000, 5000, 800, 1333) == (267, 1333)  # long side capped
    assert resize_shape(1, 100000, 800, 1333) == (1, 1333)  # never 0
    assert resize_shape(1, 1, 800, 1333) == (800, 800)


def test_views_equal_the_oracle_inputs(oracle_pair, oracle_dir):
    d = oracle_pair
    h, w = (int(x) for x in d["original_hw"])
    image = np.asarray(Image.open(oracle_dir / d["meta"]["image"]).convert("RGB"))
    geo = view_geometry(h, w, min_size=320, max_size=512)
    assert [list(b) for b in geo.regions[1:]] == d["crop_regions_xyxy"].tolist()
    assert [list(s) for s in geo.resized_hw] == d["view_resized_hw"].tolist()
    views = build_views(image, geo)
    np.testing.assert_array_equal(views[0], d["input_full_rgb_u8"].transpose(1, 2, 0))
    for k in range(4):
        np.testing.assert_array_equal(views[k + 1], d["input_crops_rgb_u8"][k].transpose(1, 2, 0))
    x, (hp, wp) = stack_views([views])
    assert (hp, wp) == tuple(d["padded_hw"].tolist())
    assert x.shape == (1, 5, 3, hp, wp)


def test_default_size_geometry(oracle_dir):
    d = np.load(oracle_dir / "tiny" / "default_size_img_a_480x640.npz")
    geo = view_geometry(480, 640)
    assert [list(s) for s in geo.resized_hw] == d["view_resized_hw"].tolist()
    assert padded_size(geo.resized_hw) == tuple(d["padded_hw"].tolist())


def test_stack_views_normalises_and_pads_across_the_batch():
    a = [np.full((5, 7, 3), 200, np.uint8), np.zeros((3, 40, 3), np.uint8)]
    b = [np.full((33, 2, 3), 10, np.uint8), np.zeros((1, 1, 3), np.uint8)]
    x, (hp, wp) = stack_views([a, b])
    assert (hp, wp) == (64, 64)
    assert x.shape == (2, 2, 3, 64, 64)
    np.testing.assert_allclose(x[0, 0, 0, :5, :7].numpy(), (200 - 123.675) / 58.395, rtol=1e-6)
    assert float(x[0, 0, :, 5:, :].abs().max()) == 0.0
    assert float(x[0, 0, :, :, 7:].abs().max()) == 0.0
    np.testing.assert_allclose(x[1, 0, 2, :33, :2].numpy(), (10 - 103.53) / 57.375, rtol=1e-6)
    with pytest.raises(DataError):
        stack_views([a, a[:1]])


def test_threaded_views_equal_serial_views_and_the_cut_then_resized_image():
    """Views resized in threads (largest first) are the same pixels, in the same order, as the
    serial path and as cutting each region and resizing it (the official crop-then-resize)."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (301, 457, 3), dtype=np.uint8)
    geo = view_geometry(
        301, 457, min_size=200, max_size=333, side_ratio=(0.7, 0.4), stride_ratio=(0.6, 0.25)
    )
    serial = build_views(image, geo)
    threaded = build_views(image, geo, workers=3)
    assert len(serial) == len(threaded) == geo.num_views > 5
    for v, ((x0, y0, x1, y1), hw) in enumerate(zip(geo.regions, geo.resized_hw)):
        expected = resize_rgb(image[y0:y1, x0:x1], hw)
        np.testing.assert_array_equal(serial[v], expected)
        np.testing.assert_array_equal(threaded[v], expected)
    # a full view at its own size is the image itself (no resampling)
    same = view_geometry(200, 300, min_size=200, max_size=333, crops=False)
    img2 = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    np.testing.assert_array_equal(build_views(img2, same, workers=2)[0], img2)


def test_stack_views_is_bitwise_the_reference_formula_and_pads_with_zeros(monkeypatch):
    """In-place normalisation into an uninitialised tensor: every view pixel equals
    ``(float32(x) - mean) / std`` exactly and every padding value is 0 (the uninitialised
    memory is made NaN here, so a value left unwritten would show)."""
    import torch

    empty = torch.empty

    def nan_empty(*args, **kwargs):
        return empty(*args, **kwargs).fill_(float("nan"))

    monkeypatch.setattr(torch, "empty", nan_empty)
    rng = np.random.default_rng(4)
    views = [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in ((5, 7), (9, 3), (1, 1))]
    x, (hp, wp) = stack_views([views], size_divisibility=8)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    for j, view in enumerate(views):
        h, w = view.shape[:2]
        ref = (torch.from_numpy(view).permute(2, 0, 1).float() - mean) / std
        assert torch.equal(x[0, j, :, :h, :w], ref)
        pad = x[0, j].clone()
        pad[:, :h, :w] = 0
        assert torch.count_nonzero(pad) == 0
    assert (hp, wp) == (16, 8)


def _apply_axis(x, axis, start, stop, offset, dim):
    """Step-by-step reference of a linear axis: outputs ``[start, stop)`` of dim ``dim`` of
    ``x`` (source entry ``k + offset`` is index ``k``), two taps each."""
    import torch

    i0 = torch.from_numpy(axis.i0[start:stop] - offset)
    i1 = torch.from_numpy(axis.i1[start:stop] - offset)
    shape = [1] * x.dim()
    shape[dim] = stop - start
    w0 = torch.from_numpy(axis.w0[start:stop]).view(shape)
    w1 = torch.from_numpy(axis.w1[start:stop]).view(shape)
    return x.index_select(dim, i0) * w0 + x.index_select(dim, i1) * w1


def test_separable_interpolation_equals_f_interpolate():
    import torch
    import torch.nn.functional as F

    from entityseg_data.model.inference.interp import linear_axis

    g = torch.Generator().manual_seed(0)
    for (h, w), (oh, ow) in [
        ((5, 7), (13, 3)),
        ((8, 8), (32, 32)),
        ((9, 4), (9, 4)),
        ((1, 6), (4, 11)),
        ((20, 27), (7, 5)),
        # sizes where the source index needs PyTorch's fused multiply-add: rounding
        # scale * (i + 0.5) before subtracting 0.5 is off by up to 6e-5 here
        ((180, 260), (126, 182)),
        ((200, 266), (750, 1000)),
        ((200, 271), (199, 272)),
    ]:
        x = torch.randn((3, h, w), generator=g)
        ref = F.interpolate(x[:, None], size=(oh, ow), mode="bilinear", align_corners=False)[:, 0]
        ax_r, ax_c = linear_axis(h, oh), linear_axis(w, ow)
        full = _apply_axis(_apply_axis(x, ax_c, 0, ow, 0, -1), ax_r, 0, oh, 0, -2)
        # the same two source cells and weights as PyTorch's kernel; the blend's rounding may
        # differ by an ulp or two, nothing more
        assert float((full - ref).abs().max()) <= 2e-6 * max(1.0, float(ref.abs().max()))
        # any window of the output from the matching window of the input
        a, b, c, d = oh // 3, oh, ow // 2, max(ow // 2 + 1, ow - 1)
        ra, rb = ax_r.window(a, b)
        ca, cb = ax_c.window(c, d)
        part = _apply_axis(_apply_axis(x[:, ra:rb, ca:cb], ax_c, c, d, ca, -1), ax_r, a, b, ra, -2)
        assert torch.equal(part, full[:, a:b, c:d])  # windows are bitwise the full map


def test_composed_axes_equal_the_two_resizes_on_any_window():
    """``compose_axes``: the x4 upsampling then a resize (down, up, identity) of one axis as one
    matrix over a source window; applied to a map it gives F.interpolate's x4 map resized step
    by step, within float32 rounding, on any output window."""
    import torch
    import torch.nn.functional as F

    from entityseg_data.model.inference.interp import compose_axes, linear_axis

    g = torch.Generator().manual_seed(0)
    low = torch.randn((3, 50, 68), generator=g)
    up = F.interpolate(low[:, None], size=(200, 272), mode="bilinear", align_corners=False)[:, 0]
    s1r, s1c = linear_axis(50, 200), linear_axis(68, 272)
    for (hv, wv), (oh, ow) in [
        ((200, 272), (200, 272)),
        ((180, 260), (126, 182)),
        ((200, 266), (750, 1000)),
        ((200, 271), (199, 272)),
    ]:
        s2r, s2c = linear_axis(hv, oh), linear_axis(wv, ow)
        # the reference is PyTorch's own two resizes (what the official post-processing runs)
        ref = F.interpolate(
            up[:, None, :hv, :wv], size=(oh, ow), mode="bilinear", align_corners=False
        )[:, 0]
        for a, b, c, d in [
            (0, oh, 0, ow),
            (oh // 3, oh // 3 + 17, ow // 2, ow),
            (oh - 1, oh, 0, 1),
        ]:
            rmat, ra = compose_axes(s2r, s1r, a, b)
            cmat, ca = compose_axes(s2c, s1c, c, d)
            assert rmat.dtype == np.float32 and rmat.shape[0] == b - a
            assert np.all(np.count_nonzero(rmat, axis=1) <= 4)
            assert np.allclose(rmat.sum(1), 1.0, atol=1e-6)  # convex weights
            win = low[:, ra : ra + rmat.shape[1], ca : ca + cmat.shape[1]]
            got = torch.from_numpy(rmat) @ win @ torch.from_numpy(cmat).t()
            assert got.shape == (3, b - a, d - c)
            assert float((got - ref[:, a:b, c:d]).abs().max()) <= 2e-6


def test_first_true_is_the_argmax_over_queries():
    import torch

    from entityseg_data.model.inference.fusion import _first_true

    g = torch.Generator().manual_seed(2)
    for n in (1, 2, 7, 24):
        inside = torch.rand((n, 33, 17), generator=g) < 0.15  # many pixels with none true
        ref = inside.to(torch.uint8).argmax(0)
        assert torch.equal(_first_true(inside), ref)


def test_views_input_is_bitwise_the_views_stacked(monkeypatch):
    """One pass per view (cut, resized, normalised into its slot in threads) gives bitwise the
    tensor of build_views + stack_views, padding included (uninitialised memory made NaN), for
    a batch of two images of different sizes and any number of workers."""
    import torch

    from entityseg_data.model.inference.preprocess import views_input

    rng = np.random.default_rng(5)
    images = [
        rng.integers(0, 256, (301, 457, 3), dtype=np.uint8),
        rng.integers(0, 256, (260, 190, 3), dtype=np.uint8),
    ]
    kw = dict(min_size=200, max_size=333, side_ratio=(0.7, 0.4), stride_ratio=(0.6, 0.25))
    geos = [view_geometry(*im.shape[:2], **kw) for im in images]
    assert geos[0].num_views == geos[1].num_views
    ref, ref_hw = stack_views([build_views(im, g) for im, g in zip(images, geos)])
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: empty(*a, **k).fill_(float("nan")))
    for workers in (1, 2, 5):
        x, hw = views_input(images, geos, workers=workers)
        assert hw == ref_hw
        assert torch.equal(x, ref)  # NaN anywhere would fail the comparison
    with pytest.raises(DataError, match="geometry was built for"):
        views_input(images[::-1], geos)
