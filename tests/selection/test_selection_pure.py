"""The pure parts of choosing what to annotate next (annotation/selection.py): uncertainty
signals of a prediction, quotas, greedy k-center with duplicates and quotas, the seeded random
baseline, and coverage measured on synthetic clusters (k-center covers better than random)."""

from __future__ import annotations

import numpy as np
import pytest

from entityseg_data.annotation.selection import (
    ImageSignals,
    UncertaintyWeights,
    coverage,
    k_center_greedy,
    parse_quotas,
    prediction_signals,
    random_pick,
    uncertainty,
)
from entityseg_data.errors import ConfigError
from entityseg_data.masks.types import ImageMasks


def _masks(scores, *, h=10, w=10, rows=None, extra=None):
    """Entities as horizontal bands: entity k covers rows[k] rows (default 2 each)."""
    lm = np.zeros((h, w), np.int32)
    r = 0
    for k, _ in enumerate(scores):
        n = 2 if rows is None else rows[k]
        lm[r : r + n] = k + 1
        r += n
    m = ImageMasks.from_label_map(lm, image_id=1, scores=scores)
    if extra is not None:
        from dataclasses import replace

        m = replace(m, entities=tuple(replace(e, extra=x) for e, x in zip(m.entities, extra)))
    return m


def test_prediction_signals_score_area_and_views():
    sig = prediction_signals(
        _masks(
            [0.9, 0.5],
            rows=[2, 6],
            extra=[{"view_disagreement": 0.1}, {"view_disagreement": 0.6}],
        )
    )
    assert sig.n_entities == 2
    assert sig.mean_score == pytest.approx(0.7)
    assert sig.covered == pytest.approx(0.8)  # 80 of 100 pixels
    # area-weighted: (0.1 * 20 + 0.6 * 60) / 80
    assert sig.view_disagreement == pytest.approx(0.475)
    none = prediction_signals(ImageMasks(image_id=1, height=4, width=4))
    assert none == ImageSignals(None, 0.0, None, 0)
    # not recorded by the model: unknown, not zero
    assert prediction_signals(_masks([0.9])).view_disagreement is None


def test_uncertainty_is_the_weighted_mean_of_known_terms():
    sig = ImageSignals(mean_score=0.8, covered=0.5, view_disagreement=None, n_entities=3)
    u, why = uncertainty(sig)
    assert u == pytest.approx(((1 - 0.8) + (1 - 0.5)) / 2)
    assert any("mean entity score 0.80" in w for w in why)
    assert any("covered area 50%" in w for w in why)
    u2, _ = uncertainty(sig, UncertaintyWeights(score=3, area=1, views=1))
    assert u2 == pytest.approx((3 * 0.2 + 0.5) / 4)
    sig3 = ImageSignals(0.8, 0.5, 0.9, 3)
    assert uncertainty(sig3)[0] == pytest.approx((0.2 + 0.5 + 0.9) / 3)
    assert uncertainty(None, missing=0.7) == (0.7, ("no prediction (uncertainty 0.70 assumed)",))
    # lower confidence or smaller cover -> more uncertain
    assert uncertainty(ImageSignals(0.3, 0.5, None, 3))[0] > u
    assert uncertainty(ImageSignals(0.8, 0.2, None, 3))[0] > u
    with pytest.raises(ConfigError):
        UncertaintyWeights(score=-1)


def test_quotas_parse_counts_and_fractions():
    assert parse_quotas(["coco=10", "unsplash=0.25", "ade20k=0"], 40) == {
        "coco": 10,
        "unsplash": 10,
        "ade20k": 0,
    }
    for bad in ("coco", "=3", "coco=x", "coco=-1", "coco=2.5"):
        with pytest.raises(ConfigError, match="quota"):
            parse_quotas([bad], 10)
    with pytest.raises(ConfigError, match="twice"):
        parse_quotas(["a=1", "a=2"], 10)


def _clusters(seed=0, sizes=(60, 25, 10, 5, 3, 2), dim=8, spread=0.05):
    """Unequal Gaussian clusters (a big one and small ones), returned shuffled."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim))
    pts, labels = [], []
    for c, n in enumerate(sizes):
        pts.append(centers[c] + spread * rng.normal(size=(n, dim)))
        labels += [c] * n
    pts = np.concatenate(pts)
    perm = rng.permutation(len(pts))
    return pts[perm], np.asarray(labels)[perm]


def test_k_center_covers_synthetic_clusters_better_than_random():
    """Measured over 20 draws of 6 unequal clusters, 6 picks: k-center hits every cluster and
    its worst distance is a fraction of random's."""
    kc_hits, rnd_hits, kc_max, rnd_max = [], [], [], []
    for seed in range(20):
        pts, labels = _clusters(seed)
        ids = list(range(100, 100 + len(pts)))
        res = k_center_greedy(pts, 6, ids=ids)
        cov = coverage(pts, [p.index for p in res.picks], labels)
        chosen = random_pick(ids, 6, seed=seed)
        rcov = coverage(pts, [i - 100 for i in chosen], labels)
        kc_hits.append(cov.clusters_hit)
        rnd_hits.append(rcov.clusters_hit)
        kc_max.append(cov.max_distance)
        rnd_max.append(rcov.max_distance)
    assert min(kc_hits) == 6  # every cluster, every time
    assert np.mean(rnd_hits) < 5  # random mostly samples the big clusters
    assert np.mean(kc_max) < 0.5 * np.mean(rnd_max)


def test_k_center_is_deterministic_and_ties_go_to_the_smaller_id():
    pts, _ = _clusters(3)
    ids = list(range(len(pts)))
    a = k_center_greedy(
        pts, 10, ids=ids, uncertainty=np.linspace(0, 1, len(pts)), uncertainty_weight=0.3
    )
    # same candidates given in another order: same picks
    perm = np.random.default_rng(0).permutation(len(pts))
    b = k_center_greedy(
        pts[perm],
        10,
        ids=[ids[i] for i in perm],
        uncertainty=np.linspace(0, 1, len(pts))[perm],
        uncertainty_weight=0.3,
    )
    assert [p.image_id for p in a.picks] == [p.image_id for p in b.picks]
    # four identical points, nothing else: the smallest id first
    same = np.ones((4, 3))
    res = k_center_greedy(same, 2, ids=[9, 4, 7, 5])
    assert [p.image_id for p in res.picks] == [4, 5]


def test_k_center_starts_away_from_annotated_and_blends_uncertainty():
    pts = np.array([[0.0, 0], [0.1, 0], [5, 0], [5.1, 0], [10, 0]])
    ids = [1, 2, 3, 4, 5]
    # image 99 annotated at x=10: the first pick is the farthest from it
    res = k_center_greedy(pts, 2, ids=ids, centers=np.array([[10.0, 0]]), center_ids=[99])
    assert res.picks[0].image_id == 1
    assert res.picks[0].distance == pytest.approx(10.0)
    # w = 1: uncertainty alone
    u = np.array([0.1, 0.9, 0.2, 0.3, 0.4])
    res = k_center_greedy(pts, 3, ids=ids, uncertainty=u, uncertainty_weight=1.0)
    assert [p.image_id for p in res.picks] == [2, 5, 4]
    # w = 0.5: the uncertain one first (no center yet: distances tie), then far ones
    res = k_center_greedy(pts, 3, ids=ids, uncertainty=u, uncertainty_weight=0.5)
    assert res.picks[0].image_id == 2
    assert 5 in [p.image_id for p in res.picks]


def test_k_center_drops_near_duplicates_and_honours_quotas():
    pts = np.array([[0.0, 0], [0.01, 0], [5, 0], [5.01, 0], [10, 0], [20, 0]])
    ids = [1, 2, 3, 4, 5, 6]
    res = k_center_greedy(
        pts, 6, ids=ids, min_distance=0.1, centers=np.array([[20.0, 0.001]]), center_ids=[50]
    )
    chosen = [p.image_id for p in res.picks]
    dropped = {(d.image_id, d.of) for d in res.duplicates}
    assert (6, 50) in dropped  # a duplicate of an annotated image
    assert len(chosen) == 3 and len(dropped) == 3
    for a, b in ((1, 2), (3, 4)):
        assert (a in chosen) != (b in chosen)  # one of each near-identical pair
    groups = ["coco", "coco", "coco", "ade", "ade", "ade"]
    res = k_center_greedy(pts, 5, ids=ids, groups=groups, quotas={"coco": 1, "ade": 2})
    got = [groups[p.index] for p in res.picks]
    assert got.count("coco") == 1 and got.count("ade") == 2 and len(got) == 3
    assert set(res.quota_full) == {"coco", "ade"}


def test_random_pick_is_seeded_and_honours_quotas():
    ids = list(range(50))
    a = random_pick(ids, 10, seed=1)
    assert a == random_pick(list(reversed(ids)), 10, seed=1)  # input order does not matter
    assert a != random_pick(ids, 10, seed=2)
    assert len(set(a)) == 10
    groups = ["x" if i < 40 else "y" for i in ids]
    b = random_pick(ids, 20, seed=0, groups=groups, quotas={"x": 5})
    assert sum(1 for i in b if i < 40) == 5 and len(b) == 15  # only 10 'y' exist


def test_coverage_measures():
    pts = np.array([[0.0], [1.0], [3.0]])
    cov = coverage(pts, [0], labels=[0, 0, 1])
    assert cov.max_distance == 3.0 and cov.mean_distance == pytest.approx(4 / 3)
    assert (cov.clusters_hit, cov.clusters) == (1, 2)


def test_payload_signals_equal_the_decoded_ones():
    from entityseg_data.annotation.selection import payload_signals
    from entityseg_data.catalog.predictions import masks_payload

    m = _masks(
        [0.9, 0.5, 0.2],
        rows=[2, 5, 1],
        extra=[{"view_disagreement": 0.1}, {"view_disagreement": 0.6}, {}],
    )
    payload = masks_payload(m, "v")
    assert payload_signals(payload) == prediction_signals(m)
    # no stored area (or a wrong one): no fast path, the caller decodes the masks
    for bad in ({"area": None}, {"area": -1}, {"area": 10**6}, {"area": True}):
        broken = {**payload, "entities": [{**payload["entities"][0], **bad}]}
        assert payload_signals(broken) is None
    assert payload_signals({**payload, "height": "16"}) is None
    empty = payload_signals({**payload, "entities": []})
    assert empty is not None and empty.n_entities == 0 and empty.covered == 0.0


def test_k_center_drops_phash_twins():
    """Embeddings far apart (an untrained CLIP) but the same picture by pHash: dropped."""
    pts = np.eye(4)
    ids = [1, 2, 3, 4]
    hashes = [0b1111, 0b1110, 0xF0F0F0F0, None]  # 1 and 2 differ by one bit
    res = k_center_greedy(pts, 4, ids=ids, hashes=hashes, max_hash_distance=2)
    assert len(res.picks) == 3
    ((dup),) = res.duplicates
    assert dup.kind == "phash" and dup.distance == 1.0 and {dup.image_id, dup.of} == {1, 2}
    # a twin of an annotated image is dropped before anything is chosen
    res = k_center_greedy(
        pts,
        4,
        ids=ids,
        hashes=hashes,
        max_hash_distance=2,
        centers=np.ones((1, 4)),
        center_ids=[99],
        center_hashes=[0xF0F0F0F1],
    )
    assert (3, 99, "phash") in {(d.image_id, d.of, d.kind) for d in res.duplicates}
    # off
    assert len(k_center_greedy(pts, 4, ids=ids, hashes=hashes).picks) == 4
