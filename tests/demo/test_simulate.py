from __future__ import annotations

import numpy as np

from entityseg_data.annotation.simulate import EditPlan, simulate_masks, simulate_name


def _grid(h=60, w=80):
    lm = np.zeros((h, w), np.uint16)
    k = 1
    for y in range(0, h, 20):
        for x in range(0, w, 20):
            lm[y : y + 20, x : x + 20] = k
            k += 1
    lm[0:4, 0:4] = k  # a small entity, missed first
    return lm


def test_no_edits_is_identity():
    lm = _grid()
    masks, _ = simulate_masks(lm, seed=0, plan=EditPlan(0, 0, 0, 0, 0, 0))
    assert len(masks) == len(np.unique(lm[lm > 0]))
    back = np.zeros_like(lm)
    for i, m in enumerate(masks, 1):
        back[m] = i
    assert (back > 0).all()


def test_edits_are_seeded_and_counted():
    lm = _grid()
    plan = EditPlan(moved_boundaries=0, merges=1, splits=1, missed=1, overlaps=0)
    a, log_a = simulate_masks(lm, seed=1, plan=plan)
    b, log_b = simulate_masks(lm, seed=1, plan=plan)
    assert all((x == y).all() for x, y in zip(a, b)) and log_a.merged == log_b.merged
    n = len(np.unique(lm[lm > 0]))
    # one merge (-1), one split (+1), one missed (-1)
    assert len(a) == n - 1
    assert log_a.missed == [int(lm[0, 0])]
    stack = np.stack(a).sum(0)
    assert stack.max() == 1  # still disjoint without planned overlaps


def test_overlap_is_planted():
    masks, log = simulate_masks(_grid(), seed=3, plan=EditPlan(0, 3, 0, 0, 0, overlaps=1))
    assert len(log.overlapped) == 1
    assert np.stack(masks).sum(0).max() >= 2


def test_names():
    rng = np.random.default_rng(0)
    names = {simulate_name("person", rng=rng) for _ in range(50)}
    assert len(names) > 3
    assert any(n in ("unknown", "blurred") or n.endswith("_other") for n in names)


def test_moved_boundary_grows_an_entity():
    lm = _grid()
    masks, log = simulate_masks(lm, seed=5, plan=EditPlan(1, 2, 0, 0, 0, 0))
    (k,) = log.moved
    assert max(m.sum() for m in masks) > (lm == k).sum()
    assert np.stack(masks).sum(0).max() == 1
