"""The edit breakdown of a submission against its seed (issue 18): hand-built masks with known
edits give known counts, IoU bins and changed pixels."""

from __future__ import annotations

import numpy as np
import pytest

from entityseg_data.annotation.rounds import bin_of, edit_breakdown, match_entities
from entityseg_data.masks import rle
from entityseg_data.masks.store import Entity, ImageAnnotation

H, W = 40, 60


def _ann(masks: dict[str, np.ndarray], annotator: str = "model") -> ImageAnnotation:
    ents = tuple(Entity(id=k, rle=rle.encode(m.astype(np.uint8))) for k, m in masks.items())
    return ImageAnnotation(
        image_id=1, height=H, width=W, stage=1, annotator=annotator, entities=ents
    )


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _seed() -> dict[str, np.ndarray]:
    # five disjoint boxes of 200 px (10 x 20) and one of 100 px
    return {
        "s1": _box(0, 10, 0, 20),
        "s2": _box(0, 10, 20, 40),
        "s3": _box(10, 20, 0, 20),
        "s4": _box(10, 20, 20, 40),
        "s5": _box(20, 30, 0, 20),
        "s6": _box(30, 40, 40, 50),
    }


def test_known_edits_give_known_counts_bins_and_pixels():
    seed = _seed()
    final = {
        "s1": seed["s1"],  # accepted unchanged
        "new-id": seed["s2"],  # redrawn with a new id: still unchanged (matched by IoU)
        "s3": _box(10, 20, 0, 18),  # shrunk: 180/200 = IoU 0.90 -> bin 0.90-0.95
        "s4": _box(10, 20, 20, 32),  # cut to 120 px: IoU 0.60 -> bin 0.50-0.75
        # s5 deleted, s6 deleted (merged away)
        "a1": _box(30, 40, 0, 10),  # added, 100 px
    }
    b = edit_breakdown(_ann(seed), _ann(final, "alice"))
    assert (b.n_seed, b.n_final) == (6, 5)
    assert (b.unchanged, b.edited, b.deleted, b.added) == (2, 2, 2, 1)
    assert b.unchanged + b.edited + b.deleted == b.n_seed
    assert b.unchanged + b.edited + b.added == b.n_final
    assert b.iou_bins == {"0.50-0.75": 1, "0.75-0.90": 0, "0.90-0.95": 1, "0.95-1.00": 0}
    # changed: s3 lost 20 px, s4 lost 80 px, s5 200 px and s6 100 px gone, a1 100 px new
    assert b.pixels_changed == 20 + 80 + 200 + 100 + 100
    assert b.pixels_total == H * W
    assert b.accepted_fraction == pytest.approx(2 / 6)
    assert ("s2", "new-id", 1.0) in b.matches


def test_boundary_move_between_neighbours_counts_each_pixel_once():
    seed = _seed()
    final = dict(seed)
    # 2 columns of s2 given to s1: s1 grows to 220 px (IoU 200/220), s2 shrinks to 180 px
    final["s1"] = _box(0, 10, 0, 22)
    final["s2"] = _box(0, 10, 22, 40)
    b = edit_breakdown(_ann(seed), _ann(final, "bob"))
    assert (b.unchanged, b.edited, b.deleted, b.added) == (4, 2, 0, 0)
    assert b.iou_bins["0.90-0.95"] == 2  # 200/220 = 0.909 and 180/200 = 0.90
    assert b.pixels_changed == 20


def test_split_and_merge():
    seed = _seed()
    final = {k: v for k, v in seed.items() if k not in ("s1", "s3", "s4")}
    # s1 split into halves: each half IoU 0.5 with s1 -> one half matched (edited), one added
    final["h1"] = _box(0, 10, 0, 10)
    final["h2"] = _box(0, 10, 10, 20)
    # s3 + s4 merged: IoU 0.5 with each -> matched to one (the lower seed index), other deleted
    final["m"] = _box(10, 20, 0, 40)
    b = edit_breakdown(_ann(seed), _ann(final, "bob"))
    assert (b.unchanged, b.edited, b.deleted, b.added) == (3, 2, 1, 1)
    assert b.iou_bins["0.50-0.75"] == 2
    matched = {s: f for s, f, _ in b.matches}
    assert matched["s1"] == "h1" and matched["s3"] == "m" and "s4" not in matched
    # pixels: h2 (100) is not s1's match any more; s4's 200 px now belong to m (not its match)
    assert b.pixels_changed == 100 + 200


def test_no_seed_everything_added_and_empty_submission_everything_deleted():
    final = _ann({"a": _box(0, 10, 0, 10), "b": _box(20, 30, 0, 10)}, "alice")
    b = edit_breakdown(None, final)
    assert (b.n_seed, b.added, b.unchanged, b.pixels_changed) == (0, 2, 0, 200)
    assert b.accepted_fraction is None
    b = edit_breakdown(_ann(_seed()), _ann({}, "alice"))
    assert (b.deleted, b.added, b.pixels_changed) == (6, 0, 5 * 200 + 100)


def test_same_id_wins_a_tie_and_greedy_takes_the_best_iou():
    ious = np.array([[0.8, 0.8], [0.6, 0.0]])
    # seed 0 ties between submissions 0 and 1: the one with its own id (1) wins
    assert match_entities(ious, ["x", "y"], ["z", "x"]) == [(0, 1, 0.8), (1, 0, 0.6)]
    assert match_entities(ious, ["x", "y"], ["p", "q"]) == [(0, 0, 0.8)]
    assert match_entities(np.array([[0.49]]), ["x"], ["x"]) == []


def test_bins_edges():
    assert [bin_of(v) for v in (0.5, 0.74, 0.75, 0.9, 0.949, 0.95, 0.999)] == [0, 0, 1, 2, 2, 3, 3]


def test_size_mismatch_is_refused():
    other = ImageAnnotation(image_id=1, height=H + 1, width=W, stage=1, annotator="x")
    with pytest.raises(ValueError, match="41x60"):
        edit_breakdown(other, _ann({}))


def test_simulated_lead_time_follows_the_edits():
    from entityseg_data.api.simulation import LeadTimeModel, simulated_seconds
    from entityseg_data.masks.types import ImageMasks

    def masks(ms):
        return ImageMasks(
            image_id=1,
            height=H,
            width=W,
            entities=tuple(Entity(id=k, rle=rle.encode(m.astype(np.uint8))) for k, m in ms.items()),
        )

    seed = _seed()
    drawn = dict(seed)
    drawn["s3"] = _box(10, 20, 0, 18)  # edited
    drawn["a"] = _box(30, 40, 0, 10)  # added
    del drawn["s6"]  # deleted
    m = LeadTimeModel()
    want = m.base + 6 * m.per_seed_entity + m.per_edited + m.per_deleted + m.per_added
    assert simulated_seconds(masks(seed), masks(drawn)) == pytest.approx(want)
    # no seed: everything drawn from scratch; stage 2: a cost per name
    assert simulated_seconds(None, masks(drawn)) == pytest.approx(m.base + 6 * m.per_added)
    assert simulated_seconds(None, masks(drawn), stage=2) == pytest.approx(
        m.stage2_base + 6 * m.per_named
    )
