"""Each source adapter on small fixture files in its real format."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources import (
    Ade20kSource,
    CocoSource,
    FolderSource,
    LaionSource,
    UnsplashSource,
    UrlListSource,
    parse_source,
)

UNSPLASH_COLUMNS = [
    "photo_id",
    "photo_url",
    "photo_image_url",
    "photo_submitted_at",
    "photo_featured",
    "photo_width",
    "photo_height",
    "photo_aspect_ratio",
    "photo_description",
    "photographer_username",
    "photographer_first_name",
    "photographer_last_name",
    "exif_camera_make",
    "ai_description",
]


def write_unsplash_tsv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=UNSPLASH_COLUMNS, delimiter="\t")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in UNSPLASH_COLUMNS})


def write_laion_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ["SAMPLE_ID", "URL", "TEXT", "HEIGHT", "WIDTH", "LICENSE", "NSFW", "similarity"]
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    pq.write_table(table, path)


def test_folder_recursive_glob_and_sidecar(tmp_path, images):
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    (root / "x.jpg").write_bytes(images.jpeg(16, 16, 1))
    (root / "a" / "y.PNG").write_bytes(images.encode(images.smooth_rgb(16, 16, 2), "PNG"))
    (root / "a" / "b" / "z.jpeg").write_bytes(images.jpeg(16, 16, 3))
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / "b" / "z.json").write_text(
        json.dumps({"url": "https://example.org/z.jpeg", "caption": "a zebra", "license": "CC0"})
    )
    items = list(FolderSource(root=root).items())
    names = [i.path.split("/")[-1] for i in items]
    assert names == ["x.jpg", "y.PNG", "z.jpeg"]
    assert len(items) == 3 and all(i.source == "folder" for i in items)
    z = next(i for i in items if i.path.endswith("z.jpeg"))
    assert z.url == "https://example.org/z.jpeg" and z.license == "CC0"
    assert z.extra["caption"] == "a zebra"
    globbed = list(parse_source(f"folder:{root}/**/*.jp*g").items())
    assert sorted(i.path.split("/")[-1] for i in globbed) == ["x.jpg", "z.jpeg"]
    with pytest.raises(DataError, match="does not exist"):
        FolderSource(root=tmp_path / "missing")


def test_url_lists_txt_csv_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    txt = tmp_path / "urls.txt"
    txt.write_text("# comment\nhttp://h/a.jpg\n\n  http://h/b.jpg \n")
    assert [i.url for i in UrlListSource(path=txt).items()] == ["http://h/a.jpg", "http://h/b.jpg"]
    assert [i.source_id for i in UrlListSource(path=txt).items()] == [
        "http://h/a.jpg",
        "http://h/b.jpg",
    ]
    csv_path = tmp_path / "urls.csv"
    csv_path.write_text("id,url,license,author\nk1,http://h/c.jpg,CC-BY 4.0,Ann\n")
    (item,) = UrlListSource(path=csv_path).items()
    assert (item.source_id, item.url, item.license, item.author) == (
        "k1",
        "http://h/c.jpg",
        "CC-BY 4.0",
        "Ann",
    )
    bom = tmp_path / "bom.csv"
    bom.write_text("url\nhttp://h/f.jpg\n", encoding="utf-8-sig")  # as Excel saves it
    assert [i.url for i in UrlListSource(path=bom).items()] == ["http://h/f.jpg"]
    pq_path = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": ["http://h/d.jpg"], "caption": ["a dog"]}), pq_path)
    (item,) = UrlListSource(path=pq_path).items()
    assert item.url == "http://h/d.jpg" and item.extra == {"caption": "a dog"}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,link\n1,http://h/e.jpg\n")
    with pytest.raises(DataError, match="row 1 has no 'url'"):
        list(UrlListSource(path=bad).items())


def test_unsplash_tsv(tmp_path):
    path = tmp_path / "photos.tsv000"
    write_unsplash_tsv(
        path,
        [
            {
                "photo_id": "XyZ123",
                "photo_url": "https://unsplash.com/photos/XyZ123",
                "photo_image_url": "https://images.unsplash.com/photo-1",
                "photo_width": "6000",
                "photo_height": "4000",
                "photographer_username": "ann",
                "photographer_first_name": "Ann",
                "photographer_last_name": "Lee",
                "ai_description": "a lake in the mountains",
            }
        ],
    )
    (item,) = UnsplashSource(path=path, max_width=3000).items()
    assert item.source == "unsplash" and item.source_id == "XyZ123"
    assert item.url == "https://images.unsplash.com/photo-1?w=3000"
    assert (item.declared_width, item.declared_height) == (6000, 4000)
    assert item.author == "Ann Lee"
    assert "Photo by Ann Lee on Unsplash" in item.attribution
    assert "Unsplash License" in item.license
    assert item.extra["caption"] == "a lake in the mountains"
    assert parse_source(f"unsplash:{path}").kind == "unsplash"


def test_laion_parquet(tmp_path):
    path = tmp_path / "part-00000.parquet"
    write_laion_parquet(
        path,
        [
            {
                "SAMPLE_ID": 42,
                "URL": "http://h/1.jpg",
                "TEXT": "a cat",
                "HEIGHT": 1200.0,
                "WIDTH": 1600.0,
                "LICENSE": "?",
                "NSFW": "UNLIKELY",
                "similarity": 0.33,
            },
            {"SAMPLE_ID": 43, "URL": "http://h/2.jpg", "TEXT": "x", "NSFW": "NSFW"},
        ],
    )
    a, b = LaionSource(path=path).items()
    assert (a.source, a.source_id, a.url) == ("laion", "42", "http://h/1.jpg")
    assert (a.declared_width, a.declared_height) == (1600, 1200)
    assert a.declared_flags == {"NSFW": "UNLIKELY"}
    assert a.extra["caption"] == "a cat" and a.extra["clip_similarity"] == pytest.approx(0.33)
    assert b.declared_flags["NSFW"] == "NSFW" and b.declared_width is None


def _coco_fixture(tmp_path, images):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    (root / "val2017" / "000000000001.jpg").write_bytes(images.jpeg(40, 30, seed=11))
    data = {
        "licenses": [{"id": 4, "name": "Attribution License", "url": "http://cc/by/2.0/"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
        "images": [
            {
                "id": 1,
                "file_name": "000000000001.jpg",
                "height": 30,
                "width": 40,
                "license": 4,
                "flickr_url": "http://flickr/1",
                "coco_url": "http://images.cocodataset.org/val2017/000000000001.jpg",
            },
            {
                "id": 2,
                "file_name": "000000000002.jpg",
                "height": 30,
                "width": 40,
                "coco_url": "http://127.0.0.1:9/remote.jpg",
            },
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[0, 0, 20, 0, 20, 30, 0, 30]],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 2,
                "iscrowd": 1,
                "segmentation": {"size": [30, 40], "counts": [600, 600]},
            },
        ],
    }
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_instances(tmp_path, images):
    path = _coco_fixture(tmp_path, images)
    a, b = CocoSource(annotations=path).items()
    assert a.source_id == "instances_val2017:1" and a.path.endswith("val2017/000000000001.jpg")
    assert a.license == "Attribution License http://cc/by/2.0/"
    assert "Flickr" in a.attribution and a.pre_annotation is not None
    assert b.path is None and b.url == "http://127.0.0.1:9/remote.jpg"  # falls back to coco_url
    pre = a.pre_annotation(30, 40, 1)
    assert pre.model_version == "source:coco" and (pre.height, pre.width) == (30, 40)
    assert len(pre.entities) == 1  # the crowd region is not an entity
    assert pre.entities[0]["name"] == "person" and pre.entities[0]["score"] == 1.0
    spec = parse_source(f"coco:{path}:{tmp_path / 'coco' / 'val2017'}")
    assert isinstance(spec, CocoSource) and spec.image_root == tmp_path / "coco" / "val2017"


def test_coco_panoptic(tmp_path, images):
    root = tmp_path / "coco"
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
    (root / "val2017").mkdir()
    (root / "val2017" / "7.jpg").write_bytes(images.jpeg(8, 6, seed=1))
    png = np.zeros((6, 8, 3), np.uint8)
    png[:, :4] = (5, 0, 0)  # segment id 5
    png[:, 4:] = (1, 1, 0)  # segment id 257
    Image.fromarray(png).save(root / "annotations" / "panoptic_val2017" / "7.png")
    data = {
        "images": [{"id": 7, "file_name": "7.jpg", "height": 6, "width": 8}],
        "categories": [{"id": 1, "name": "person"}, {"id": 184, "name": "sky"}],
        "annotations": [
            {
                "image_id": 7,
                "file_name": "7.png",
                "segments_info": [
                    {"id": 5, "category_id": 1, "iscrowd": 0},
                    {"id": 257, "category_id": 184, "iscrowd": 0},
                ],
            }
        ],
    }
    path = root / "annotations" / "panoptic_val2017.json"
    path.write_text(json.dumps(data))
    (item,) = CocoSource(annotations=path).items()
    pre = item.pre_annotation(6, 8, 1)
    assert [e["name"] for e in pre.entities] == ["person", "sky"]
    from entityseg_data.masks import rle

    assert [rle.area(e["segmentation"]) for e in pre.entities] == [24, 24]


def test_ade20k_both_layouts(tmp_path, images):
    challenge = tmp_path / "ADEChallengeData2016"
    (challenge / "images" / "training").mkdir(parents=True)
    (challenge / "annotations" / "training").mkdir(parents=True)
    (challenge / "images" / "training" / "ADE_train_00000001.jpg").write_bytes(images.jpeg(8, 8))
    (challenge / "annotations" / "training" / "ADE_train_00000001.png").write_bytes(b"x")
    (challenge / "sceneCategories.txt").write_text("ADE_train_00000001 airport_terminal\n")
    (item,) = Ade20kSource(root=challenge).items()
    assert item.source_id == "ADE_train_00000001"
    assert set(item.domain_tags) >= {"ade20k", "training", "scene:airport_terminal"}

    full = tmp_path / "ADE20K_2021_17_01"
    scene = full / "images" / "ADE" / "validation" / "urban" / "street"
    scene.mkdir(parents=True)
    (scene / "ADE_val_00000002.jpg").write_bytes(images.jpeg(8, 8))
    (scene / "ADE_val_00000002_seg.png").write_bytes(b"x")
    (scene / "ADE_val_00000002.json").write_text("{}")
    (item,) = parse_source(f"ade20k:{full}").items()
    assert item.source_id == "ADE_val_00000002" and item.extra["scene"] == "street"
    assert "validation" in item.domain_tags
    with pytest.raises(DataError, match="no images/ folder"):
        Ade20kSource(root=tmp_path)


def test_parse_source_errors(tmp_path):
    with pytest.raises(DataError, match="expected KIND:PATH"):
        parse_source("nope:thing")
    with pytest.raises(DataError, match="does not exist"):
        parse_source("urls:/no/such/file.txt")
    (tmp_path / "d").mkdir()
    assert parse_source(str(tmp_path / "d")).kind == "folder"
