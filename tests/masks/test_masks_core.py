"""The mask core against pycocotools (seeded random property tests of every path), and the
strict decoder on corrupt input."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mu

from entityseg_data.errors import DataError, OverlapError, RLEError
from entityseg_data.masks import brush, rle
from entityseg_data.masks import runs as R
from entityseg_data.masks.types import Entity, ImageMasks, Segmenter


def _coco(m: np.ndarray) -> dict:
    """pycocotools' RLE of a mask, with text counts."""
    r = mu.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}


def _b(r: dict) -> dict:
    return {"size": r["size"], "counts": r["counts"].encode()}


def _random_masks(rng, n_cases=250, max_side=40):
    for _ in range(n_cases):
        h, w = (int(v) for v in rng.integers(0, max_side, 2))
        kind = rng.integers(0, 4)
        if kind == 0:
            m = rng.random((h, w)) < rng.random()
        elif kind == 1:
            m = np.full((h, w), bool(rng.integers(0, 2)))
        elif kind == 2:  # a few rectangles: long runs that cross columns
            m = np.zeros((h, w), bool)
            for _ in range(3):
                if h and w:
                    y, x = rng.integers(0, h), rng.integers(0, w)
                    m[y : y + rng.integers(1, h + 1), x : x + rng.integers(1, w + 1)] = True
        else:  # sparse single pixels
            m = rng.random((h, w)) < 0.03
        yield m.astype(np.uint8)


def test_single_mask_paths_equal_pycocotools():
    """encode, decode, counts <-> string, area, bbox agree with pycocotools bit for bit."""
    rng = np.random.default_rng(11)
    for m in _random_masks(rng):
        ref = _coco(m)
        assert rle.encode(m) == ref
        assert rle.encode(m.astype(bool)) == ref
        assert rle.encode_fortran_view(np.ascontiguousarray(m.T)) == ref
        np.testing.assert_array_equal(rle.decode(ref), m)
        assert rle.area(ref) == int(mu.area(_b(ref)))
        assert rle.bbox(ref) == [float(v) for v in mu.toBbox(_b(ref))]
        counts = rle.counts(ref)
        assert R.encode_string(counts) == ref["counts"]
        h, w = ref["size"]
        uncompressed = mu.frPyObjects({"size": [h, w], "counts": counts.tolist()}, h, w)
        assert uncompressed["counts"].decode() == ref["counts"]
        assert rle.to_compressed({"size": [h, w], "counts": counts.tolist()}) == ref
        assert rle.runs(ref).area == int(m.sum())


def test_string_codec_equals_pycocotools_on_random_counts():
    """Counts with large values and zero runs (non-canonical) round-trip like pycocotools."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        k = int(rng.integers(1, 30))
        counts = rng.integers(0, rng.choice([3, 40, 5000, 3_000_000]), k)
        n = int(counts.sum())
        ref = mu.frPyObjects({"size": [n, 1], "counts": counts.tolist()}, n, 1)["counts"]
        assert R.encode_string(counts) == ref.decode()
        np.testing.assert_array_equal(R.decode_string(ref), counts)
    # many strings at once: offsets split them back
    strings = [R.encode_string(rng.integers(0, 99, int(rng.integers(0, 9)))) for _ in range(50)]
    flat, off = R.decode_strings(strings)
    for i, s in enumerate(strings):
        np.testing.assert_array_equal(flat[off[i] : off[i + 1]], R.decode_string(s))


def _outcome(strings, where):
    try:
        return R.decode_strings(strings, where=where)[0].tolist()
    except RLEError as e:
        return str(e)


def test_short_string_path_equals_the_vectorised_pass_on_good_and_corrupt_strings():
    """One short string is decoded in plain Python: same counts, same first error, as the
    vectorised pass over a batch (where a second, empty string forces the numpy path)."""
    rng = np.random.default_rng(11)
    alphabet = [chr(c) for c in range(48, 112)]
    cases = ["", "0", "o", "0`", "ooooooo0", "oooooooo0", "0`T1" + "\x7f", "0`T1é", "é"]
    for _ in range(400):
        counts = rng.integers(0, rng.choice([3, 40, 5000, 3_000_000]), int(rng.integers(1, 40)))
        cases.append(R.encode_string(counts))
        cases.append("".join(rng.choice(alphabet, int(rng.integers(1, 20)))))  # often corrupt
    seen = set()
    for s in cases:
        small = _outcome([s], "r")
        batch = _outcome([s, ""], ["r", "other"])
        assert small == batch, s
        seen.add(type(small) is str and small.split("RLE ")[1][:12])
    assert {"counts strin", "count has 8 "} <= seen  # alphabet/truncated and groups errors hit
    assert len(R.encode_string(rng.integers(0, 9, 400))) > R.SMALL_STRING  # long: numpy path


@pytest.mark.slow
def test_multi_mask_paths_equal_pycocotools():
    """areas, merge (union / intersection), iou, overlap pixels, label maps under each policy."""
    rng = np.random.default_rng(7)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 25, 2))
        n = int(rng.integers(1, 8))
        ms = [(rng.random((h, w)) < rng.random() * 0.5).astype(np.uint8) for _ in range(n)]
        rl = [_coco(m) for m in ms]
        bl = [_b(r) for r in rl]
        np.testing.assert_array_equal(rle.areas(rl), mu.area(bl).astype(np.int64))
        assert rle.merge(rl) == {"size": [h, w], "counts": mu.merge(bl)["counts"].decode()}
        inter = mu.merge(bl, intersect=True)["counts"].decode()
        assert rle.merge(rl, intersect=True)["counts"] == inter
        np.testing.assert_allclose(rle.iou_matrix(rl, rl), mu.iou(bl, bl, [0] * n))
        a = np.array([m.sum() for m in ms])
        assert rle.overlap_pixels(rl) == int(a.sum() - np.any(ms, axis=0).sum())
        later = np.zeros((h, w), np.uint16)
        for i, m in enumerate(ms):
            later[m > 0] = i + 1
        np.testing.assert_array_equal(rle.rles_to_label_map(rl, h, w), later)
        smaller = np.zeros((h, w), np.uint16)
        for i in np.argsort(-a, kind="stable"):
            smaller[ms[i] > 0] = i + 1
        got = rle.rles_to_label_map(rl, h, w, policy="smaller_wins")
        np.testing.assert_array_equal(got, smaller)
        earlier = np.zeros((h, w), np.uint16)
        for i, m in enumerate(ms):
            earlier[(m > 0) & (earlier == 0)] = i + 1
        got = rle.rles_to_label_map(rl, h, w, policy="earlier_wins")
        np.testing.assert_array_equal(got, earlier)
        for policy, want in (("later_wins", later), ("earlier_wins", earlier)):
            np.testing.assert_array_equal(R.paint_masks(ms, policy=policy), want)
        rs = rle.runs_many(rl)
        for i in range(n):
            for j in range(n):
                d = R.difference(rs[i], rs[j])
                exp = ((ms[i] > 0) & ~(ms[j] > 0)).T.reshape(-1)
                np.testing.assert_array_equal(R.mask_of_runs(d, h * w), exp)
        pairs = R.overlap_pairs(rle.runs_many(rl))
        for i in range(n):
            for j in range(i + 1, n):
                assert pairs.get((i, j), 0) == int(((ms[i] > 0) & (ms[j] > 0)).sum())
        if pairs:
            with pytest.raises(OverlapError) as exc:
                rle.rles_to_label_map(rl, h, w, policy="reject")
            assert exc.value.pairs == pairs
        else:
            np.testing.assert_array_equal(rle.rles_to_label_map(rl, h, w, policy="reject"), later)


def test_label_map_round_trip_with_many_ids():
    """label map -> RLEs (one pass) equals per-id pycocotools; RLEs -> label map returns it;
    works with more ids than a uint8 holds."""
    rng = np.random.default_rng(3)
    for n, dtype in ((5, np.uint8), (300, np.uint16), (70000, np.uint32)):
        h, w = 23, 31
        lm = rng.integers(0, n + 1, (h, w)).astype(dtype)
        out = rle.label_map_to_rles(lm)
        present = [int(k) for k in np.unique(lm) if k]
        assert list(out) == present
        for k in present[:: max(1, len(present) // 50)]:
            assert out[k] == _coco(lm == k)
        back = rle.rles_to_label_map(list(out.values()), h, w, ids=list(out), policy="reject")
        np.testing.assert_array_equal(back, lm)
        assert back.dtype == (np.uint16 if n < 65536 else np.uint32)
        np.testing.assert_array_equal(
            rle.areas(list(out.values())), [int((lm == k).sum()) for k in present]
        )
    empty = rle.label_map_to_rles(np.zeros((3, 4), np.uint16), ids=[7])
    assert rle.area(empty[7]) == 0 and rle.size(empty[7]) == (3, 4)


def test_polygons_equal_pycocotools():
    rng = np.random.default_rng(2)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(5, 40, 2))
        polys = [
            list(rng.uniform(-2, max(h, w) + 2, 2 * int(rng.integers(3, 7)))) for _ in range(2)
        ]
        ref = mu.merge(mu.frPyObjects(polys, h, w))
        assert rle.to_compressed(polys, h, w)["counts"] == ref["counts"].decode()
    with pytest.raises(DataError, match="finite"):
        rle.to_compressed([[0, 0, 1, float("nan"), 2, 2]], 5, 5)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ("0::", "cover 20 pixels, image has 600"),  # wrong sum (the probe's '0::')
        ("garbage~~", "outside the COCO alphabet"),
        ("0`T1" + "\x7f", "outside the COCO alphabet"),
        ("0`", "truncated"),  # ends inside a count (continuation bit set)
        ("Q`" * 3 + "o", "truncated"),
        ("ooooooooooooooo0", "groups"),
        ("", "cover 0 pixels"),
        ([1, 2, -3, 600], "negative"),
        ("12Mfb0", "negative"),  # the same counts as a string (a count with the sign bit)
        ("0" * 300, "cover 0 pixels"),  # longer than runs.SMALL_STRING: the vectorised pass
        ([1, 2.5, 597], "not a list of integers"),
        ([100, 100], "cover 200 pixels"),
    ],
)
def test_strict_decoder_rejects_corrupt_counts_naming_the_record(counts, message):
    bad = {"size": [20, 30], "counts": counts}
    where = rle.record_name("gt.json", 2, 17)
    for fn in (rle.decode, rle.area, rle.bbox, rle.runs, rle.validate):
        with pytest.raises(RLEError, match=message) as exc:
            fn(bad, where=where)
        assert str(exc.value).startswith("gt.json: image 2, annotation 17: ")
    good = _coco(np.ones((20, 30), np.uint8))
    for fn in (rle.areas, rle.merge, rle.overlap_pixels):
        with pytest.raises(RLEError, match=message):
            fn([good, bad], where=["a", "gt.json: image 2, annotation 17"])
    with pytest.raises(RLEError, match=message):
        rle.rles_to_label_map([good, bad], 20, 30)
    with pytest.raises(RLEError, match=message):
        rle.iou_matrix([good], [bad])


@pytest.mark.parametrize(
    "size", [[20], "20x30", [20, "30"], [-1, 30], [20.5, 30], [True, 30], None]
)
def test_strict_decoder_rejects_bad_sizes(size):
    with pytest.raises(RLEError, match="size"):
        rle.area({"size": size, "counts": "0"}, where="x")


def test_size_mismatch_is_named():
    r = _coco(np.ones((40, 60), np.uint8))
    with pytest.raises(RLEError, match="x.json: image 1, annotation 1: RLE size 40x60 differs"):
        rle.counts(r, 20, 30, where=rle.record_name("x.json", 1, 1))
    with pytest.raises(RLEError, match="differs"):
        rle.rles_to_label_map([r], 20, 30)


def test_decoding_is_deterministic_and_never_reads_past_the_string():
    """A truncated string fails the same way every time (pycocotools reads beyond it)."""
    msgs = set()
    for _ in range(5):
        with pytest.raises(RLEError) as exc:
            rle.decode({"size": [20, 30], "counts": "0`"})
        msgs.add(str(exc.value))
    assert len(msgs) == 1


def test_paint_with_a_custom_rule_and_overlap_reports():
    """The OverlapRule extension point: pieces with priorities (here: region 0's first run
    beats everyone, the rest later-wins)."""
    a = R.Runs(np.array([0, 10]), np.array([5, 15]))
    b = R.Runs(np.array([3]), np.array([12]))

    class FirstRunOfAWins:
        def pieces(self, regions):
            r0 = regions[0]
            return [
                [
                    (R.Runs(r0.starts[:1], r0.ends[:1]), 2.0),
                    (R.Runs(r0.starts[1:], r0.ends[1:]), 0.0),
                ],
                [(regions[1], 1.0)],
            ]

    assert isinstance(FirstRunOfAWins(), R.OverlapRule)
    flat = R.paint([a, b], 16, policy=FirstRunOfAWins())
    np.testing.assert_array_equal(flat, [1] * 5 + [2] * 7 + [1] * 3 + [0])
    np.testing.assert_array_equal(
        R.paint([a, b], 16, policy="later_wins"), [1] * 3 + [2] * 9 + [1] * 3 + [0]
    )
    np.testing.assert_array_equal(
        R.paint([a, b], 16, policy="smaller_wins"), [1] * 3 + [2] * 9 + [1] * 3 + [0]
    )
    assert R.overlap_pairs([a, b]) == {(0, 1): 4}
    assert R.conflicts([a, b, R.Runs(np.array([15]), np.array([16]))]).tolist() == [
        True,
        True,
        False,
    ]
    with pytest.raises(OverlapError, match="1&2 \\(4 px\\)"):
        R.paint([a, b], 16)
    np.testing.assert_array_equal(
        R.paint([a, b], 16, policy="earlier_wins"), [1] * 5 + [2] * 5 + [1] * 5 + [0]
    )
    with pytest.raises(ValueError, match="unknown overlap policy"):
        R.paint([a, b], 16, policy="bigger_wins")  # type: ignore[arg-type]


def test_paint_masks_checks_shapes_and_names_the_mask():
    """Dense masks -> label map (row-major): every mask the same shape, the one that differs
    named; no masks needs a size."""
    a = np.zeros((3, 4), bool)
    a[0] = True
    lm = R.paint_masks([a, np.ones((3, 4))], policy="earlier_wins", dtype=np.int32)
    assert lm.dtype == np.int32 and lm[0].tolist() == [1] * 4 and (lm[1:] == 2).all()
    with pytest.raises(DataError, match=r"rec \[b\] has shape \(2, 4\), expected \(3, 4\)"):
        R.paint_masks([a, np.ones((2, 4))], where=["rec [a]", "rec [b]"])
    with pytest.raises(DataError, match="no masks"):
        R.paint_masks([])
    assert R.paint_masks([], shape=(2, 3)).shape == (2, 3)


def test_brush_builders_equal_the_dense_encoder():
    rng = np.random.default_rng(4)
    lm = rng.integers(0, 6, (30, 40)).astype(np.uint16)
    rl = rle.label_map_to_rles(lm)
    assert brush.brush_rles_of_rles(list(rl.values()), 30, 40) == [
        brush.encode_brush(lm == k) for k in rl
    ]
    assert brush.brush_rles_of_label_map(lm) == {k: brush.encode_brush(lm == k) for k in rl}
    # overlapping masks: each as drawn
    ov = [_coco(lm > 0), _coco(lm == 2)]
    assert brush.brush_rles_of_rles(ov, 30, 40) == [
        brush.encode_brush(lm > 0),
        brush.encode_brush(lm == 2),
    ]
    regions = []
    for b in brush.brush_rles_of_rles(list(rl.values()), 30, 40):
        s, n = brush.brush_pixel_runs(b, 30, 40)
        regions.append(R.Runs(s, s + n))
    assert brush.rles_of_brush_runs(regions, 30, 40) == list(rl.values())
    assert brush.rles_of_brush_runs([regions[0], R.union(regions[:2])], 30, 40) == [
        rl[1],
        _coco((lm == 1) | (lm == 2)),
    ]
    res = brush.brush_result([1, 2], region_id="r1", height=30, width=40, score=0.5)
    assert res["value"] == {"format": "rle", "rle": [1, 2], "brushlabels": ["entity"]}
    assert (res["from_name"], res["to_name"], res["original_height"], res["score"]) == (
        "mask",
        "image",
        30,
        0.5,
    )


def test_entity_and_image_masks_round_trip_through_coco():
    rng = np.random.default_rng(8)
    lm = rng.integers(0, 4, (12, 17)).astype(np.uint16)
    im = ImageMasks.from_label_map(lm, image_id=5, scores=[0.9, 0.8, 0.7], names=["a", None, "c"])
    assert [e.id for e in im] == [1, 2, 3]
    np.testing.assert_array_equal(im.label_map(), lm)
    e = im.entities[0]
    assert e.area == int((lm == 1).sum())
    assert e.bbox == tuple(int(v) for v in mu.toBbox(_b(e.rle)))
    coco = im.to_coco(first_id=10)
    assert [a["id"] for a in coco] == [10, 11, 12] and coco[0]["score"] == 0.9
    back = ImageMasks.from_coco({"id": 5, "height": 12, "width": 17}, im.to_coco())
    assert back == im
    crowd = Entity.from_coco(
        {"id": 4, "segmentation": e.rle, "iscrowd": 1, "isthing": 0, "predicted_iou": 0.3}, 12, 17
    )
    assert (
        crowd.flags == ("crowd",)
        and crowd.kind == "stuff"
        and crowd.extra == {"predicted_iou": 0.3}
    )
    assert crowd.to_coco(5)["iscrowd"] == 1 and crowd.to_coco(5)["predicted_iou"] == 0.3


def test_image_masks_from_coco_names_bad_annotations_or_collects_them():
    good = _coco(np.ones((20, 30), np.uint8))
    anns = [
        {"id": 1, "segmentation": good},
        {"id": 2, "segmentation": {"size": [40, 60], "counts": good["counts"]}},
        {"id": 3, "segmentation": {"size": [20, 30], "counts": "0`"}},
    ]
    img = {"id": 9, "height": 20, "width": 30}
    with pytest.raises(RLEError, match="^gt.json: image 9, annotation 2: RLE size 40x60 differs"):
        ImageMasks.from_coco(img, anns, file="gt.json")
    errors: list = []
    im = ImageMasks.from_coco(img, anns, file="gt.json", errors=errors)
    assert [e.id for e in im] == [1]
    assert [str(x).split(": RLE")[0] for x in errors] == [
        "gt.json: image 9, annotation 2",
        "gt.json: image 9, annotation 3",
    ]
    with pytest.raises(DataError, match="'height' and 'width'"):
        ImageMasks.from_coco({"id": 9, "height": "20", "width": 30}, [])


def test_segmenter_protocol_is_structural():
    class Fake:
        model_version = "fake-1"

        def segment(self, image: np.ndarray) -> ImageMasks:
            h, w = image.shape[:2]
            return ImageMasks.from_label_map(np.ones((h, w), np.uint16), scores=[1.0])

    seg = Fake()
    assert isinstance(seg, Segmenter)
    out = seg.segment(np.zeros((4, 5, 3), np.uint8))
    assert (out.height, out.width, len(out)) == (4, 5, 1)
