"""The assignment convention: primary annotator, overlap sample with its cap, determinism."""

from __future__ import annotations

import pytest

from entityseg_data.annotation.configs import flag_choices, label_config
from entityseg_data.annotation.push import assign_images, image_url
from entityseg_data.errors import ConfigError


def test_overlap_fraction_cap_and_determinism():
    ids = list(range(1, 2001))
    kw = dict(overlap_fraction=0.015, overlap_images=500, overlap_annotators=2, seed=3)
    a = assign_images(ids, ["ann", "bob", "cid"], **kw)
    b = assign_images(ids, ["ann", "bob", "cid"], **kw)
    assert a == b
    n_overlap = sum(len(v) > 1 for v in a.values())
    assert 15 <= n_overlap <= 50  # ~1.5% of 2000
    for v in a.values():
        assert len(set(v)) == len(v) and len(v) in (1, 2)
    primaries = [v[0] for v in a.values()]
    assert all(primaries.count(x) > 500 for x in ("ann", "bob", "cid"))  # balanced
    capped = assign_images(
        ids, ["ann", "bob"], **{**kw, "overlap_fraction": 1.0, "overlap_images": 7}
    )
    assert sum(len(v) > 1 for v in capped.values()) == 7


def test_incremental_assignment_keeps_old_and_counts_the_cap():
    kw = dict(overlap_fraction=1.0, overlap_images=3, overlap_annotators=2, seed=0)
    first = assign_images([1, 2], ["a", "b"], **kw)
    more = assign_images([1, 2, 3, 4, 5], ["a", "b"], existing=first, **kw)
    assert set(more) == {3, 4, 5}
    assert sum(len(v) > 1 for v in {**first, **more}.values()) == 3


def test_single_annotator_and_bad_lists():
    out = assign_images(
        [1, 2, 3], ["solo"], overlap_fraction=1.0, overlap_images=10, overlap_annotators=2
    )
    assert out == {1: ["solo"], 2: ["solo"], 3: ["solo"]}
    with pytest.raises(ConfigError):
        assign_images([1], [], overlap_fraction=0, overlap_images=0, overlap_annotators=1)
    with pytest.raises(ConfigError):
        assign_images([1], ["a", "a"], overlap_fraction=0, overlap_images=0, overlap_annotators=1)


def test_labeling_configs_and_urls():
    s1 = label_config(1, polygon=True)
    assert 'BrushLabels name="mask"' in s1 and "PolygonLabels" in s1 and 'value="entity"' in s1
    assert "PolygonLabels" not in label_config(1, polygon=False)
    s2 = label_config(2, supercategories=["animal", "sky"])
    assert 'perRegion="true"' in s2 and 'value="animal_other"' in s2 and 'value="blurred"' in s2
    assert flag_choices(["x"]) == ["unknown", "blurred", "x_other"]
    assert image_url("images/a b.jpg") == "/data/local-files/?d=images/a%20b.jpg"
    assert image_url("images/a.jpg", "http://h:1/ws/") == "http://h:1/ws/images/a.jpg"
