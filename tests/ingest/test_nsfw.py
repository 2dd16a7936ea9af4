"""The CLIP NSFW filter with a tiny open_clip model built without weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from entityseg_data.catalog.embeddings import EmbeddingCache
from entityseg_data.config.ingest import IngestConfig
from entityseg_data.errors import ConfigError, DataError, OfflineError
from entityseg_data.ingest.filters import clip as clip_mod
from entityseg_data.ingest.filters.nsfw import probe_scores, zero_shot_scores
from entityseg_data.ingest.pipeline import ingest
from entityseg_data.ingest.refilter import refilter
from entityseg_data.ingest.sources import FolderSource


@pytest.fixture()
def photo_dir(tmp_path, images):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(6):
        (d / f"{i}.jpg").write_bytes(images.jpeg(96, 64, seed=200 + i))
    return d


def _cfg(tiny_clip: str, **kw) -> IngestConfig:
    base = IngestConfig(
        clip_model=tiny_clip,
        clip_pretrained="",
        allow_random_clip=True,
        workers=2,
        clip_batch_size=4,
    )
    return dataclasses.replace(base, **kw)


def test_offline_tag_fails_fast_with_instructions(monkeypatch):
    import open_clip.pretrained

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted (huggingface_hub would retry ~47 s)")

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", no_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as exc:
        clip_mod.load_clip("ViT-B-32", "laion2b_s34b_b79k")
    msg = str(exc.value)
    assert "ingest.clip_pretrained=" in msg and "local-dir:" in msg
    assert "nsfw_enabled=false" in msg
    # without the offline flag: the unreachable hub is detected by a quick probe
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(clip_mod, "HUB_HOST", ("127.0.0.1", 1))
    with pytest.raises(OfflineError):
        clip_mod.resolve_pretrained("ViT-B-32", "laion2b_s34b_b79k", allow_random=False)


def test_weight_choices_are_validated(tmp_path, tiny_clip):
    with pytest.raises(ConfigError, match="allow_random_clip"):
        clip_mod.resolve_pretrained(tiny_clip, "", allow_random=False)
    assert clip_mod.resolve_pretrained(tiny_clip, "", allow_random=True) is None
    with pytest.raises(ConfigError, match="unknown CLIP weights"):
        clip_mod.resolve_pretrained("ViT-B-32", "no_such_tag", allow_random=False)
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    assert clip_mod.resolve_pretrained("ViT-B-32", str(weights), allow_random=False) == str(weights)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "open_clip_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no weights file"):
        clip_mod.resolve_pretrained(f"local-dir:{empty}", "", allow_random=False)


def test_zero_shot_and_probe_math():
    d = 8
    eye = np.eye(d, dtype=np.float32)
    nsfw_text, safe_text = eye[:2], eye[2:5]
    imgs = np.stack([eye[0], eye[3], (eye[1] + eye[4]) / np.sqrt(2)])
    s = zero_shot_scores(imgs, nsfw_text, safe_text, scale=100.0)
    assert s[0] > 0.99 and s[1] < 0.01 and 0.45 < s[2] < 0.55
    w = np.zeros(d, np.float32)
    w[0] = 4.0
    p = probe_scores(imgs, w, -2.0)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(imgs @ w - 2.0))), rtol=1e-6)
    with pytest.raises(DataError, match="expects 4-d"):
        probe_scores(imgs, np.zeros(4, np.float32), 0.0)


def test_nsfw_filter_in_pipeline_and_cached_refilter(workspace, photo_dir, tiny_clip):
    events = []
    report = ingest(
        workspace,
        [FolderSource(root=photo_dir)],
        _cfg(tiny_clip, nsfw_threshold=1.0),
        progress=events.append,
    )
    assert report.nsfw_scored == 6 and report.totals().accepted == 6
    assert sum(e.n for e in events if e.stage == "nsfw") == 6
    assert [e.outcome for e in events if e.stage == "item"] == ["accepted"] * 6
    key = clip_mod.cache_key(tiny_clip, "")
    assert report.nsfw_model == key
    with workspace.catalog() as cat:
        rows = cat.verdicts(filter_name="nsfw")
        assert len(rows) == 6 and all(r.passed for r in rows)
        assert all("UNTRAINED CLIP, meaningless" in (r.reason or "") for r in rows)
        scores = [r.score for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    cache_path = workspace.cache_dir / "clip" / f"{key}.sqlite"
    with EmbeddingCache(cache_path) as cache:
        assert cache.count_images() == 6
    # re-filter at the median score: no image is read again (we delete them all first)
    for p in (workspace.root / "images").rglob("*.jpg"):
        p.unlink()
    threshold = float(np.median(scores))
    rep = refilter(workspace, _cfg(tiny_clip, nsfw_threshold=threshold))
    expected_rejects = sum(s >= threshold for s in scores)
    assert 1 <= expected_rejects <= 5
    assert rep.rejected_by["nsfw"] == expected_rejects
    assert rep.status["rejected"] == expected_rejects
    with workspace.catalog() as cat:
        again = cat.verdicts(filter_name="nsfw")
        assert [r.score for r in again] == pytest.approx(scores, abs=1e-6)
        for r in again:
            status = cat.image(r.image_id).status
            assert status == ("accepted" if r.passed else "rejected")
    with EmbeddingCache(cache_path) as cache:
        assert cache.count_images() == 6


def test_linear_probe_over_cached_embeddings(workspace, photo_dir, tiny_clip, tmp_path):
    ingest(workspace, [FolderSource(root=photo_dir)], _cfg(tiny_clip, nsfw_threshold=1.0))
    rng = np.random.default_rng(0)
    weight = rng.normal(size=32).astype(np.float32)
    probe = tmp_path / "probe.npz"
    np.savez(probe, weight=weight, bias=np.float32(0.1))
    cfg = _cfg(tiny_clip, nsfw_method="probe", nsfw_probe=str(probe), nsfw_threshold=0.5)
    refilter(workspace, cfg)
    key = clip_mod.cache_key(tiny_clip, "")
    cache_path = workspace.cache_dir / "clip" / f"{key}.sqlite"
    with workspace.catalog() as cat, EmbeddingCache(cache_path) as cache:
        rows = cat.query(
            "SELECT v.score, v.verdict, i.sha256 FROM verdicts v JOIN images i ON i.id = "
            "v.image_id WHERE v.filter = 'nsfw'"
        )
        emb = cache.get_images([r["sha256"] for r in rows])
        for r in rows:
            expected = 1 / (1 + np.exp(-(emb[r["sha256"]] @ weight + 0.1)))
            assert r["score"] == pytest.approx(float(expected), abs=1e-5)
            assert r["verdict"] == ("reject" if expected >= 0.5 else "pass")


def test_local_dir_weights_load_without_allow_random(tiny_clip_dir):
    clip = clip_mod.load_clip(f"local-dir:{tiny_clip_dir}", "")
    assert clip.random is False and clip.key.startswith("localdir-")
    import torch

    with torch.inference_mode():
        out = clip.model.encode_image(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 32)


def test_default_config_offline_fails_before_fetching(workspace, photo_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="not cached"):
        ingest(workspace, [FolderSource(root=photo_dir)], IngestConfig())
    with workspace.catalog() as cat:
        assert cat.scalar("SELECT COUNT(*) FROM items") == 0
