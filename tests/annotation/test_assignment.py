"""The assignment convention (unit tier): balanced primaries, the overlap sample with its cap,
determinism and stability when images are added; the labeling configs and image URLs."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from entityseg_data.annotation.labelstudio import configs
from entityseg_data.annotation.labelstudio.backend import image_url
from entityseg_data.annotation.workflow import assign_images, flag_choices
from entityseg_data.errors import ConfigError

KW = dict(overlap_fraction=0.015, overlap_images=500, overlap_annotators=2, seed=3)


def primaries(assignment) -> Counter:
    return Counter(v[0] for v in assignment.values())


def within_one_of_the_mean(counts: Counter, team) -> bool:
    mean = sum(counts.values()) / len(team)
    return all(abs(counts.get(a, 0) - mean) <= 1 for a in team)


def test_overlap_fraction_cap_and_determinism():
    ids = list(range(1, 2001))
    team = ["ann", "bob", "cid"]
    a = assign_images(ids, team, **KW)
    assert a == assign_images(list(reversed(ids)), team, **KW)  # order of the ids is irrelevant
    n_overlap = sum(len(v) > 1 for v in a.values())
    assert 15 <= n_overlap <= 50  # ~1.5% of 2000
    for v in a.values():
        assert len(set(v)) == len(v) and len(v) in (1, 2)
    capped = assign_images(
        ids, ["ann", "bob"], **{**KW, "overlap_fraction": 1.0, "overlap_images": 7}
    )
    assert sum(len(v) > 1 for v in capped.values()) == 7


@pytest.mark.parametrize("n_images", [1, 2, 7, 8, 9, 31, 500])
@pytest.mark.parametrize("team", [["alice", "bob"], ["a", "b", "c"], list("abcdefg")])
def test_primaries_are_balanced(n_images, team):
    """Each annotator within one image of the mean (issue 13: one got 7 of 8 images)."""
    a = assign_images(range(100, 100 + n_images), team, **{**KW, "overlap_fraction": 0.3})
    assert within_one_of_the_mean(primaries(a), team)
    second = Counter(x for v in a.values() for x in v[1:])  # the overlap role: spread <= 2
    assert max(second.values(), default=0) - min(second.get(t, 0) for t in team) <= 2


def test_adding_images_keeps_old_assignments_and_stays_balanced():
    team = ["alice", "bob", "carol"]
    first = assign_images(range(1, 11), team, **KW)
    more = assign_images(range(1, 26), team, existing=first, **KW)
    assert set(more) == set(range(11, 26))  # old images are not returned (nor moved)
    assert within_one_of_the_mean(primaries({**first, **more}), team)
    # the same calls give the same result (deterministic)
    assert more == assign_images(range(1, 26), team, existing=first, **KW)
    # a new annotator joins: they take new images until they catch up
    late = assign_images(range(26, 36), [*team, "dave"], existing={**first, **more}, **KW)
    assert primaries(late)["dave"] >= 8


def test_incremental_assignment_counts_the_cap():
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


def hotkeys(xml: str) -> list[str]:
    return re.findall(r'hotkey="([^"]*)"', xml)


def test_labeling_configs_palette_hotkeys_and_urls():
    s1 = configs.label_config(1, polygon=True)
    assert 'BrushLabels name="mask"' in s1 and "PolygonLabels" in s1
    for label in (*configs.BRUSH_LABELS, *configs.POLYGON_LABELS, configs.FIX_LABEL):
        assert f'value="{label}"' in s1
    assert "PolygonLabels" not in configs.label_config(1, polygon=False)
    s2 = configs.label_config(2, supercategories=["animal", "sky"])
    assert 'perRegion="true"' in s2 and 'value="animal_other"' in s2 and 'value="blurred"' in s2
    assert 'displayMode="region-list"' in s2  # names in the region list
    assert "<Taxonomy" in s2 and "<Choices" not in s2  # flags: a dropdown without hotkeys
    for xml in (s1, s2):
        keys = hotkeys(xml)
        # every label has an explicit hotkey (Label Studio would hand out e, v, b... otherwise),
        # none is a tool key, and none is used twice
        assert len(keys) == xml.count("<Label ") and len(set(keys)) == len(keys)
        assert not set(keys) & configs.TOOL_KEYS
        assert "$qa_note" in xml
        assert xml.index("Labels name=") < xml.index("<Image")  # controls above the image
    assert flag_choices(["x"]) == ["unknown", "blurred", "x_other"]
    assert image_url("images/a b.jpg") == "/data/local-files/?d=images/a%20b.jpg"
    assert image_url("images/a.jpg", "http://h:1/ws/") == "http://h:1/ws/images/a.jpg"


@pytest.mark.parametrize("stage", [1, 2])
def test_palette_gives_touching_regions_different_colours(stage):
    import numpy as np

    from entityseg_data.annotation.labelstudio.format import display_labels
    from entityseg_data.masks import rle as rle_utils

    h, w = 30, 40
    lm = np.zeros((h, w), np.int64)
    for i in range(4):  # a 4x5 grid of cells: every cell touches up to 4 others
        for j in range(5):
            lm[i * 7 : (i + 1) * 7 + 2, j * 8 : (j + 1) * 8] = i * 5 + j + 1
    rles = [rle_utils.encode((lm == k).astype(np.uint8)) for k in range(1, 21)]
    labels = display_labels(rles, h, w, stage=stage)
    palette = configs.BRUSH_LABELS if stage == 1 else configs.MASK_LABELS
    assert set(labels) <= set(palette) and len(set(labels)) >= 4
    for k in range(1, 21):
        m = lm == k
        grown = np.zeros_like(m)
        grown[:-1] |= m[1:]
        grown[1:] |= m[:-1]
        grown[:, :-1] |= m[:, 1:]
        grown[:, 1:] |= m[:, :-1]
        for other in set(np.unique(lm[grown & ~m]).tolist()) - {0, k}:
            assert labels[k - 1] != labels[other - 1], (k, other)
