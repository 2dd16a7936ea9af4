"""Selection reads the CLIP embeddings the ingest NSFW stage cached (no image is read again),
and computes the missing ones with the same CLIP when the NSFW filter was off (issue 18; a tiny
open_clip built without weights)."""

from __future__ import annotations

import pytest

import entityseg_data as esd
from entityseg_data.catalog.embeddings import EmbeddingCache, cache_key, cache_path
from entityseg_data.config import WorkspaceConfig, apply_overrides
from entityseg_data.errors import DataError


@pytest.fixture()
def photo_dir(tmp_path, images):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(6):
        (d / f"{i}.jpg").write_bytes(images.jpeg(96, 64, seed=300 + i))
    return d


def _ws(root, tiny_clip, *extra):
    cfg = apply_overrides(
        WorkspaceConfig(),
        [
            f"ingest.clip_model={tiny_clip}",
            "ingest.clip_pretrained=",
            "ingest.allow_random_clip=true",
            "ingest.nsfw_threshold=1.0",
            "ingest.workers=1",
            "ingest.clip_batch_size=4",
            *extra,
        ],
    )
    return esd.Workspace.create(root, cfg)


def test_select_uses_the_ingest_cache(tmp_path, photo_dir, tiny_clip):
    ws = _ws(tmp_path / "ws", tiny_clip)
    rep = ws.ingest([f"folder:{photo_dir}"])
    assert rep.nsfw_scored == 6
    path = cache_path(ws.cache_dir, cache_key(tiny_clip, ""))
    with EmbeddingCache(path) as cache:
        assert cache.count_images() == 6
    for p in ws.images_dir.rglob("*.jpg"):  # nothing may be read again
        p.unlink()
    res = ws.select(3)
    assert len(res.items) == 3 and res.skipped == ()
    assert res.record.params["embedding_key"] == path.stem
    assert all(it.distance is None or it.distance > 0 for it in res.items)


def test_select_embeds_what_the_cache_lacks(tmp_path, photo_dir, tiny_clip):
    ws = _ws(tmp_path / "ws", tiny_clip, "ingest.nsfw_enabled=false")
    ws.ingest([f"folder:{photo_dir}"])
    path = cache_path(ws.cache_dir, cache_key(tiny_clip, ""))
    assert not path.exists()
    with pytest.raises(DataError, match="has a CLIP embedding"):
        ws.select(2, overrides=["selection.embed_missing=false"])
    seen = []
    res = ws.select(2, progress=lambda step, done, total: seen.append((step, done, total)))
    assert len(res.items) == 2
    assert seen[-1] == ("score", 6, 6) and ("embed", 6, 6) in seen  # progress of both steps
    with EmbeddingCache(path) as cache:
        assert cache.count_images() == 6
