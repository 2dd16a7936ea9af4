"""End-to-end ingest into a real workspace/catalog (NSFW off here; see test_nsfw.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from entityseg_data.config.ingest import IngestConfig
from entityseg_data.ingest.pipeline import ingest
from entityseg_data.ingest.refilter import refilter
from entityseg_data.ingest.sources import (
    CocoSource,
    FolderSource,
    LaionSource,
    UrlListSource,
    parse_source,
)
from entityseg_data.masks import rle

CFG = IngestConfig(
    nsfw_enabled=False,
    min_side=200,
    workers=3,
    per_host_rps=0,
    timeout=10.0,  # loopback fetches on a busy machine; no route here is meant to time out
    retries=1,
    backoff=0.01,
)


@pytest.fixture()
def corpus(tmp_path, images, server):
    """A folder and a URL list that overlap, with faults in the URL list."""
    a = images.smooth_rgb(640, 480, seed=1)
    a_jpg = images.encode(a, "JPEG", quality=92)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    files = {
        "a.jpg": a_jpg,
        "sub/a_copy.jpg": a_jpg,  # exact duplicate under another name
        "a_q60.jpg": images.encode(a, "JPEG", quality=60),  # near duplicate (re-encoding)
        "b_rot.jpg": images.jpeg_with_orientation(images.smooth_rgb(400, 300, seed=2), 6),
        "c_small.jpg": images.jpeg(150, 100, seed=3),  # below min_side
        "d.png": images.encode(images.smooth_rgb(300, 300, seed=4), "PNG"),
        "broken.jpg": images.jpeg(300, 300, seed=5)[:2000],
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    urls = [
        server.route("/dup_a.jpg", "ok", a_jpg, "image/jpeg"),
        server.route("/a.png", "ok", images.encode(a, "PNG"), "image/png"),
        server.route("/e.jpg", "ok", images.jpeg(500, 400, seed=6), "image/jpeg"),
        server.url("/missing.jpg"),
        server.route("/bomb.png", "ok", images.png_bomb(20000), "image/png"),
        server.route("/trunc.jpg", "truncated", images.jpeg(300, 300, seed=7), "image/jpeg"),
        server.route("/page", "ok", b"<html>hi</html>", "text/html"),
        server.route("/err", "status", 500),
    ]
    url_file = tmp_path / "urls.csv"
    url_file.write_text(
        "url,license,author\n" + "".join(f"{u},CC-BY 4.0,Bob\n" for u in urls), encoding="utf-8"
    )
    return {"folder": folder, "files": files, "urls": url_file, "a_jpg": a_jpg}


def test_ingest_folder_and_urls(workspace, corpus):
    folder_src = FolderSource(root=corpus["folder"], license="CC0")
    url_src = UrlListSource(path=corpus["urls"])
    report = ingest(workspace, [folder_src, url_src], CFG)
    f = report.sources[folder_src.label].to_dict()
    u = report.sources[url_src.label].to_dict()
    assert f["seen"] == 7 and f["fetched"] == 6
    assert f["failed"] == {"truncated": 1}
    assert f["duplicates"] == {"exact": 1, "near": 1}
    assert f["filtered"] == {"resolution": 1}
    assert f["accepted"] == 3  # a, b_rot, d
    assert u["failed"] == {
        "content_type": 1,
        "http_404": 1,
        "http_500": 1,
        "too_many_pixels": 1,
        "truncated": 1,
    }
    assert u["duplicates"] == {"exact": 1, "near": 1}  # across sources, against the catalog
    assert u["accepted"] == 1
    with workspace.catalog() as cat:
        rows = {r.source_id.split("/")[-1]: r for r in cat.images(status=None)}
        assert set(rows) == {"a.jpg", "b_rot.jpg", "c_small.jpg", "d.png", "e.jpg"}
        assert rows["c_small.jpg"].status == "rejected"
        (res,) = [v for v in cat.verdicts(rows["c_small.jpg"].id) if v.filter == "resolution"]
        assert res.verdict == "reject" and "100 < min_side 200" in res.reason
        assert res.score == 100
        # byte-exact originals named by sha256, provenance recorded
        for r in rows.values():
            data = workspace.abspath(r.file_path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == r.sha256
            ext = ".png" if r.mime == "image/png" else ".jpg"
            assert r.file_path.endswith(r.sha256 + ext)
        assert workspace.abspath(rows["a.jpg"].file_path).read_bytes() == corpus["a_jpg"]
        assert rows["a.jpg"].license == "CC0" and rows["a.jpg"].norm_path is None
        e = rows["e.jpg"]
        assert e.source == "urls" and e.url.endswith("/e.jpg")
        assert (e.license, e.author) == ("CC-BY 4.0", "Bob")
        # EXIF-rotated: upright size, orientation recorded, upright normalised copy
        b = rows["b_rot.jpg"]
        assert (b.width, b.height, b.orig_orientation) == (400, 300, 6)
        assert b.norm_path.startswith("images_norm/")
        from PIL import Image

        with Image.open(workspace.abspath(b.norm_path)) as im:
            assert im.size == (400, 300) and im.mode == "RGB"
        assert rows["d.png"].norm_path is None  # already RGB
        dups = cat.duplicates()
        kinds = {(d.dropped_source_id.split("/")[-1], d.kind) for d in dups}
        assert kinds == {
            ("a_copy.jpg", "exact"),
            ("a_q60.jpg", "near"),
            ("dup_a.jpg", "exact"),
            ("a.png", "near"),
        }
        assert {d.kept_image_id for d in dups} == {rows["a.jpg"].id}
        items = cat.query("SELECT state, COUNT(*) AS n FROM items GROUP BY state")
        assert {r["state"]: r["n"] for r in items} == {
            "done": 4,
            "rejected": 1,
            "duplicate": 4,
            "failed": 6,
        }
        failed = cat.query("SELECT error_kind FROM items WHERE state = 'failed'")
        assert sorted(r["error_kind"] for r in failed) == sorted(
            ["truncated", "content_type", "http_404", "http_500", "too_many_pixels", "truncated"]
        )
    from entityseg_data.ingest.report import failures_by_kind

    with workspace.catalog() as cat:
        fails = failures_by_kind(cat)
    assert {k: v["count"] for k, v in fails.items()} == {
        "truncated": 2,
        "content_type": 1,
        "http_404": 1,
        "http_500": 1,
        "too_many_pixels": 1,
    }
    assert fails["http_404"]["examples"][0]["url"].endswith("/missing.jpg")
    # a rerun skips everything final; the transient failures (500, truncated) are retried
    again = ingest(workspace, [folder_src, url_src], CFG)
    total = again.totals()
    assert total.accepted == 0 and sum(total.duplicates.values()) == 0
    assert total.skipped == 15 - 3
    assert sorted(total.failed.elements()) == ["http_500", "truncated", "truncated"]
    with workspace.catalog() as cat:
        assert cat.scalar("SELECT COUNT(*) FROM images") == 5
        assert cat.scalar("SELECT COUNT(*) FROM duplicates") == 4


def test_transient_failure_recovers_on_rerun(workspace, server, images):
    body = images.jpeg(300, 300, seed=9)
    url = server.route("/flaky.jpg", "flaky", 2, 503, body, "image/jpeg")
    path = workspace.root.parent / "u.txt"
    path.write_text(url + "\n")
    first = ingest(workspace, [UrlListSource(path=path)], CFG)  # 1 try + 1 retry: both 503
    assert dict(first.totals().failed) == {"http_503": 1}
    second = ingest(workspace, [UrlListSource(path=path)], CFG)
    assert second.totals().accepted == 1
    with workspace.catalog() as cat:
        (item,) = cat.query("SELECT * FROM items")
        assert item["state"] == "done" and item["attempts"] == 3


def test_near_duplicate_keep_largest(workspace, tmp_path, images):
    from PIL import Image

    big = images.smooth_rgb(800, 600, seed=12)
    small = np.asarray(Image.fromarray(big).resize((400, 300), Image.LANCZOS))
    (tmp_path / "s").mkdir()
    (tmp_path / "l").mkdir()
    (tmp_path / "s" / "small.jpg").write_bytes(images.encode(small, "JPEG", quality=85))
    (tmp_path / "l" / "large.jpg").write_bytes(images.encode(big, "JPEG", quality=85))
    cfg = IngestConfig(nsfw_enabled=False, near_duplicate_keep="largest", workers=1)
    ingest(workspace, [FolderSource(root=tmp_path / "s")], cfg)
    rep = ingest(workspace, [FolderSource(root=tmp_path / "l")], cfg)
    assert rep.totals().duplicates["replaced"] == 1
    with workspace.catalog() as cat:
        (acc,) = cat.images()
        assert acc.source_id.endswith("large.jpg") and acc.width == 800
        (dup,) = cat.images(status="duplicate")
        assert dup.source_id.endswith("small.jpg")
        (d,) = cat.duplicates()
        assert d.kept_image_id == acc.id and d.dropped_source_id.endswith("small.jpg")


def test_coco_preannotations_follow_exif(workspace, tmp_path, images):
    """A COCO image stored rotated (EXIF 6) with masks in the stored pixel geometry: the
    pre-annotation must come out upright, like the stored image."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    upright = images.smooth_rgb(400, 300, seed=21)  # upright W=400, H=300
    (root / "val2017" / "1.jpg").write_bytes(images.jpeg_with_orientation(upright, 6))
    (root / "val2017" / "2.jpg").write_bytes(images.jpeg(320, 240, seed=22))
    # stored pixels are 300 wide, 400 high; a box in the stored top-left corner
    box = [[0, 0, 100, 0, 100, 50, 0, 50]]
    data = {
        "images": [
            {"id": 1, "file_name": "1.jpg", "height": 400, "width": 300},
            {"id": 2, "file_name": "2.jpg", "height": 240, "width": 320},
        ],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": box},
            {
                "id": 2,
                "image_id": 2,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": [[0, 0, 320, 0, 320, 240, 0, 240]],
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": [[10, 10, 50, 10, 50, 50, 10, 50]],
            },
        ],
    }
    ann = root / "annotations" / "instances_val2017.json"
    ann.write_text(json.dumps(data))
    report = ingest(workspace, [CocoSource(annotations=ann)], IngestConfig(nsfw_enabled=False))
    assert report.totals().accepted == 2
    with workspace.catalog() as cat:
        preds = {
            r["image_id"]: r
            for r in cat.query("SELECT * FROM predictions WHERE model_version = 'source:coco'")
        }
        imgs = {r.source_id: r for r in cat.images()}
        one = imgs["instances_val2017:1"]
        assert (one.width, one.height, one.orig_orientation) == (400, 300, 6)
        payload = json.loads(workspace.abspath(preds[one.id]["path"]).read_text())
        assert payload["image_id"] == one.id
        assert (payload["height"], payload["width"]) == (300, 400)
        (ent,) = payload["entities"]
        mask = rle.decode(ent["segmentation"])
        assert mask.shape == (300, 400) and ent["name"] == "car"
        expected = np.zeros((400, 300), np.uint8)
        expected[:50, :100] = 1
        expected = np.rot90(expected, k=-1)  # EXIF 6: rotate 90 degrees clockwise
        assert (mask != expected).sum() <= 400  # polygon rasterisation edges only
        # overlapping instances become non-overlapping; the small one wins
        two = imgs["instances_val2017:2"]
        p2 = json.loads(workspace.abspath(preds[two.id]["path"]).read_text())
        areas = sorted(rle.area(e["segmentation"]) for e in p2["entities"])
        assert rle.overlap_pixels([e["segmentation"] for e in p2["entities"]]) == 0
        assert sum(areas) == 320 * 240 and areas[0] == 40 * 40
        assert preds[two.id]["n_entities"] == 2


def test_refilter_changes_thresholds_without_refetch(workspace, corpus):
    src = FolderSource(root=corpus["folder"])
    ingest(workspace, [src], CFG)
    rep = refilter(workspace, IngestConfig(nsfw_enabled=False, min_side=350))
    assert rep.changes["accepted->rejected"] == 2  # b_rot (300 px) and d (300 px)
    rep = refilter(workspace, IngestConfig(nsfw_enabled=False, min_side=0))
    assert rep.changes["rejected->accepted"] == 3  # c_small comes back too
    with workspace.catalog() as cat:
        assert cat.scalar("SELECT COUNT(*) FROM images WHERE status = 'accepted'") == 4
        v = cat.query("SELECT * FROM verdicts WHERE filter = 'resolution' AND verdict = 'reject'")
        assert v == []


def test_laion_prefilter_and_limit(workspace, tmp_path, server, images):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ok = server.route("/ok.jpg", "ok", images.jpeg(300, 300, seed=31), "image/jpeg")
    ok2 = server.route("/ok2.jpg", "ok", images.jpeg(300, 300, seed=32), "image/jpeg")
    path = tmp_path / "laion.parquet"
    pq.write_table(
        pa.table(
            {
                "SAMPLE_ID": [1, 2, 3, 4],
                "URL": [ok, server.url("/nsfw.jpg"), server.url("/tiny.jpg"), ok2],
                "TEXT": ["a", "b", "c", "d"],
                "WIDTH": [300.0, 300.0, 50.0, 300.0],
                "HEIGHT": [300.0, 300.0, 40.0, 300.0],
                "NSFW": ["UNLIKELY", "NSFW", "UNLIKELY", "UNLIKELY"],
            }
        ),
        path,
    )
    rep = ingest(workspace, [LaionSource(path=path)], dataclasses.replace(CFG, limit=3))
    t = rep.totals()
    assert dict(t.filtered) == {"prefilter:laion_nsfw": 1, "prefilter:resolution": 1}
    assert t.accepted == 1 and t.seen == 3
    assert "/nsfw.jpg" not in server.state.hits and "/tiny.jpg" not in server.state.hits
    assert "/ok2.jpg" not in server.state.hits  # beyond the limit
    rep = ingest(workspace, [parse_source(f"laion:{path}")], CFG)
    assert rep.totals().accepted == 1  # the 4th row now
    with workspace.catalog() as cat:
        rows = cat.images()
        assert [r.source_id for r in rows] == ["1", "4"]
        assert rows[0].extra["caption"] == "a"
        reasons = cat.query("SELECT error_kind, error FROM items WHERE state = 'rejected'")
        kinds = {r["error_kind"] for r in reasons}
        assert kinds == {"prefilter:laion_nsfw", "prefilter:resolution"}


def test_iconic_heuristic(workspace, tmp_path, images):
    """A single object on a plain background is flagged; a busy scene is not."""
    from entityseg_data.ingest.filters.iconic import border_uniformity

    product = np.full((300, 400, 3), 250, np.uint8)
    product[80:220, 120:280] = images.smooth_rgb(160, 140, seed=41)
    scene = images.smooth_rgb(400, 300, seed=42)
    assert border_uniformity(product) > 0.95 and border_uniformity(scene) < 0.5
    d = tmp_path / "iconic"
    d.mkdir()
    (d / "product.jpg").write_bytes(images.encode(product, "JPEG", quality=90))
    (d / "scene.jpg").write_bytes(images.encode(scene, "JPEG", quality=90))
    cfg = IngestConfig(nsfw_enabled=False, iconic_enabled=True, iconic_threshold=0.6)
    rep = ingest(workspace, [FolderSource(root=d)], cfg)
    assert dict(rep.totals().filtered) == {"iconic": 1}
    with workspace.catalog() as cat:
        (acc,) = cat.images()
        assert acc.source_id.endswith("scene.jpg")
        (rej,) = cat.images(status="rejected")
        (v,) = [v for v in cat.verdicts(rej.id) if v.filter == "iconic"]
        assert v.verdict == "reject" and v.score > 0.95
    # turning the heuristic off in a re-filter brings the product shot back
    rep2 = refilter(workspace, IngestConfig(nsfw_enabled=False))
    assert rep2.changes["rejected->accepted"] == 1


def test_img2dataset_shard_via_folder_source(workspace, tmp_path, images):
    """img2dataset's ``files`` output (sidecar JSON as it writes it, checked with img2dataset
    1.47): provenance is kept, and the HTML body it reports as 'success' under
    --disable_all_reencoding is caught."""
    shard = tmp_path / "out" / "00000"
    shard.mkdir(parents=True)
    rows = [
        ("000000000", images.jpeg(300, 200, seed=51), "a cat", "CC-BY", 11),
        ("000000001", b"<html>x</html>", "page", "?", 12),
    ]
    for key, body, caption, lic, sid in rows:
        (shard / f"{key}.jpg").write_bytes(body)
        (shard / f"{key}.txt").write_text(caption)
        side = {
            "LICENSE": lic,
            "SAMPLE_ID": sid,
            "caption": caption,
            "url": f"http://example.org/{key}.jpg",
            "key": key,
            "status": "success",
            "error_message": None,
            "width": None,
            "height": None,
            "original_width": None,
            "original_height": None,
            "exif": "{}",
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        (shard / f"{key}.json").write_text(json.dumps(side))
    rep = ingest(workspace, [parse_source(f"folder:{tmp_path / 'out'}")], CFG)
    t = rep.totals()
    assert t.accepted == 1 and dict(t.failed) == {"not_image": 1}
    with workspace.catalog() as cat:
        (img,) = cat.images()
        assert img.url == "http://example.org/000000000.jpg" and img.license == "CC-BY"
        assert img.extra["caption"] == "a cat" and img.extra["sample_id"] == 11
