"""Pure functions: pHash index, EXIF orientation of arrays, filters, pre-download filters."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from entityseg_data.config.ingest import IngestConfig
from entityseg_data.ingest.dedupe import PhashIndex, hamming
from entityseg_data.ingest.filters import check_aspect, check_resolution
from entityseg_data.ingest.preannotations import build, orient_array
from entityseg_data.ingest.sources.base import Item
from entityseg_data.ingest.worker import prefilter


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_array_matches_pil(orientation):
    """orient_array against Pillow's own EXIF handling (ImageOps.exif_transpose)."""
    a = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5)
    im = Image.fromarray(a)
    im.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(orient_array(a, orientation), expected)


def test_build_rejects_mismatched_annotation_size():
    lm = np.zeros((4, 6), np.uint16)
    lm[1:3, 1:3] = 1
    ok = build(
        lm,
        ["a"],
        ann_height=4,
        ann_width=6,
        raw_height=4,
        raw_width=6,
        orientation=6,
        model_version="source:test",
    )
    assert (ok.height, ok.width) == (6, 4)  # rotated into the upright geometry
    from entityseg_data.errors import DataError

    with pytest.raises(DataError, match="does not match"):
        build(
            lm,
            ["a"],
            ann_height=5,
            ann_width=6,
            raw_height=4,
            raw_width=6,
            orientation=1,
            model_version="source:test",
        )


def test_phash_index_nearest_and_remove():
    idx = PhashIndex(capacity=1)
    idx.add(1, "ffffffffffffffff")
    idx.add(2, "0000000000000000")
    idx.add(3, "000000000000000f")  # 4 bits from id 2
    assert len(idx) == 3
    assert idx.nearest("0000000000000001", 6) == (2, 1)
    assert idx.nearest("00000000000000ff", 6) == (3, 4)
    assert idx.nearest("00000000ffffff00", 6) is None
    assert idx.nearest("0000000000000000", -1) is None
    idx.remove(2)
    assert idx.nearest("0000000000000000", 6) == (3, 4)
    assert hamming("ff00000000000000", "0f00000000000000") == 4


def test_stale_temp_files_removed(workspace):
    import os
    import time

    from entityseg_data.ingest.storage import remove_stale_temp_files

    d = workspace.path("images", "ab")
    d.mkdir(parents=True)
    old, fresh, real = d / ".abc.jpg.x1.tmp", d / ".abd.jpg.x2.tmp", d / "abc.jpg"
    for p in (old, fresh, real):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    os.utime(real, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_temp_files(workspace) == 1
    assert not old.exists() and fresh.exists() and real.exists()


def test_resolution_and_aspect_verdicts():
    v = check_resolution(3000, 999, 1000)
    assert not v.passed and v.score == 999 and v.verdict == "reject"
    assert check_resolution(3000, 1000, 1000).passed
    assert check_resolution(10, 10, 0).passed
    a = check_aspect(3000, 1000, 2.5)
    assert not a.passed and a.score == pytest.approx(3.0)
    assert check_aspect(3000, 1000, 0).passed


def test_prefilter_uses_declared_metadata_only():
    cfg = IngestConfig(min_side=1000, max_aspect=3.0)
    item = Item(source="laion", source_id="1", url="http://h/x.jpg")
    assert prefilter(item, cfg) is None  # nothing declared: decide after download
    small = Item(source="laion", source_id="2", url="u", declared_width=800, declared_height=600)
    assert prefilter(small, cfg).filter == "prefilter:resolution"
    wide = Item(source="laion", source_id="3", url="u", declared_width=5000, declared_height=1000)
    assert prefilter(wide, cfg).filter == "prefilter:aspect"
    tagged = Item(source="laion", source_id="4", url="u", declared_flags={"NSFW": "nsfw"})
    assert prefilter(tagged, cfg).filter == "prefilter:laion_nsfw"
    assert prefilter(tagged, IngestConfig(prefilter=False)) is None
    unsure = Item(source="laion", source_id="5", url="u", declared_flags={"NSFW": "UNSURE"})
    assert prefilter(unsure, cfg) is None
    strict = IngestConfig(laion_reject_tags=("NSFW", "UNSURE"))
    assert prefilter(unsure, strict).filter == "prefilter:laion_nsfw"
    risky = Item(source="laion", source_id="6", url="u", declared_flags={"punsafe": 0.7})
    assert prefilter(risky, cfg) is None  # off by default
    v = prefilter(risky, IngestConfig(laion_max_punsafe=0.5))
    assert v.filter == "prefilter:laion_nsfw" and v.score == pytest.approx(0.7)
    assert prefilter(risky, IngestConfig(laion_max_punsafe=0.8)) is None
