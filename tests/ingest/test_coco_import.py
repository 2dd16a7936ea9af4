"""The COCO importer (``coco:`` source) on real COCO files: masks exact, thing/stuff kinds,
names and category ids carried in (issue 16); crowd and overlap policies."""

from __future__ import annotations

import json

import cli_support
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from realdata_support import read_panoptic_ids, realdata

from entityseg_data.ingest.sources.coco import CocoSource, ImportPolicy
from entityseg_data.masks import rle as rle_utils


def _pre(item, h, w):
    """The pre-annotation of an item for an upright image of (h, w) without EXIF."""
    return item.pre_annotation(h, w, 1)


def _decode(seg) -> np.ndarray:
    return rle_utils.decode(seg).astype(bool)


@pytest.mark.slow
def test_coco_panoptic_train100_masks_kinds_and_names_exact():
    """Every non-crowd panoptic segment of the 100 real images becomes one entity whose mask is
    exactly the PNG's pixels of that id, with its category name, id and thing/stuff kind."""
    root = realdata("coco_panoptic_train100")
    data = json.loads((root / "panoptic_train2017.json").read_text())
    cats = {c["id"]: c for c in data["categories"]}
    images = {im["id"]: im for im in data["images"]}
    pans = {a["image_id"]: a for a in data["annotations"]}
    src = CocoSource(annotations=root / "panoptic_train2017.json")
    items = list(src.items())
    assert len(items) == 100 and not src.problems
    n_thing = n_stuff = 0
    for item in items:
        iid = item.extra["coco_image_id"]
        im, pan = images[iid], pans[iid]
        ids = read_panoptic_ids(root / "panoptic_train2017" / pan["file_name"])
        pre = _pre(item, im["height"], im["width"])
        want = [s for s in pan["segments_info"] if not s["iscrowd"]]
        assert len(pre.entities) == len(want)
        for e, s in zip(pre.entities, want, strict=True):
            assert np.array_equal(_decode(e["segmentation"]), ids == s["id"])
            cat = cats[s["category_id"]]
            assert e["category_id"] == cat["id"] and e["name"] == cat["name"]
            assert e["kind"] == ("thing" if cat["isthing"] else "stuff")
            n_thing += e["kind"] == "thing"
            n_stuff += e["kind"] == "stuff"
    assert n_thing + n_stuff == 1111 - 6  # 6 crowd segments dropped by default
    assert n_thing > 0 and n_stuff > 0


def test_panoptic_crowd_kept_by_policy():
    root = realdata("coco_panoptic_train100")
    data = json.loads((root / "panoptic_train2017.json").read_text())
    pan = next(a for a in data["annotations"] if any(s["iscrowd"] for s in a["segments_info"]))
    im = next(i for i in data["images"] if i["id"] == pan["image_id"])
    src = CocoSource(
        annotations=root / "panoptic_train2017.json", policy=ImportPolicy(crowd="keep")
    )
    item = next(it for it in src.items() if it.extra["coco_image_id"] == im["id"])
    pre = _pre(item, im["height"], im["width"])
    assert len(pre.entities) == len(pan["segments_info"])
    assert sum(e.get("iscrowd", 0) for e in pre.entities) == sum(
        s["iscrowd"] for s in pan["segments_info"]
    )


def test_panopticapi_sample_panoptic_equals_its_instances_form():
    """The panopticapi sample has the same segments as PNG + JSON and as COCO RLE instances:
    both importers give the same masks; the panoptic categories give the kinds."""
    root = realdata("panopticapi_sample") / "sample_data"
    pan_src = CocoSource(
        annotations=root / "panoptic_examples.json",
        image_root=root / "input_images",
        policy=ImportPolicy(crowd="keep"),
    )
    inst_src = CocoSource(
        annotations=root / "panoptic_coco_detection_format.json",
        image_root=root / "input_images",
        policy=ImportPolicy(crowd="keep"),
    )
    pan_items = {it.extra["coco_image_id"]: it for it in pan_src.items()}
    inst_items = {it.extra["coco_image_id"]: it for it in inst_src.items()}
    assert set(pan_items) == set(inst_items) and len(pan_items) == 2
    sizes = {
        im["id"]: (im["height"], im["width"])
        for im in json.loads((root / "panoptic_examples.json").read_text())["images"]
    }
    kinds = []
    for iid, h_w in sizes.items():
        a = _pre(pan_items[iid], *h_w).entities
        b = _pre(inst_items[iid], *h_w).entities
        key = lambda e: (e["category_id"], rle_utils.bbox(e["segmentation"]))  # noqa: E731
        a, b = sorted(a, key=key), sorted(b, key=key)
        assert len(a) == len(b) > 10
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(_decode(x["segmentation"]), _decode(y["segmentation"]))
            assert x["name"] == y["name"]
        kinds += [e["kind"] for e in a]
    assert kinds.count("thing") == 43 and kinds.count("stuff") == 7  # the sample's README
    assert all(e.get("kind") is None for e in b)  # no isthing in that file


def test_icevision_instances_polygons_smaller_wins_and_crowd():
    """Real COCO instances (polygons, one crowd RLE, one image without annotations): masks are
    the polygons rasterised by pycocotools, overlaps resolved smaller-wins, crowd dropped."""
    root = realdata("icevision_coco2017_6img")
    data = json.loads((root / "annotations.json").read_text())
    src = CocoSource(annotations=root / "annotations.json", image_root=root / "images")
    items = {it.extra["coco_image_id"]: it for it in src.items()}
    assert len(items) == 6
    for im in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"] and not a["iscrowd"]]
        item = items[im["id"]]
        if not anns:
            assert item.pre_annotation is None
            continue
        h, w = im["height"], im["width"]
        masks = [
            mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w)))
            for a in anns
        ]
        lm = np.zeros((h, w), np.int32)
        for i in np.argsort([-int(m.sum()) for m in masks], kind="stable"):
            lm[masks[i] > 0] = i + 1
        pre = _pre(item, h, w)
        present = [k for k in range(1, len(anns) + 1) if (lm == k).any()]
        assert len(pre.entities) == len(present)
        for e, k in zip(pre.entities, present, strict=True):
            assert np.array_equal(_decode(e["segmentation"]), lm == k)
            assert e["category_id"] == anns[k - 1]["category_id"]
            assert e.get("kind") is None  # instances files carry no isthing
        assert rle_utils.overlap_pixels([e["segmentation"] for e in pre.entities]) == 0


def test_bad_annotation_left_out_in_pre_mode_image_left_out_in_approved_mode(tmp_path):
    """Probe 5.19/5.20 at the importer: a corrupt RLE loses only that annotation of a
    pre-annotation, but an approved import never half-imports an image."""
    root = realdata("icevision_coco2017_6img")
    data = json.loads((root / "annotations.json").read_text())
    victim = data["annotations"][0]
    victim["segmentation"] = {"size": [1, 1], "counts": "0::"}
    bad = tmp_path / "instances_bad.json"
    bad.write_text(json.dumps(data))
    src = CocoSource(annotations=bad, image_root=root / "images")
    items = {it.extra["coco_image_id"]: it for it in src.items()}
    assert len(items) == 6 and len(src.problems) == 1
    assert src.problems[0].annotation_id == victim["id"]
    approved = CocoSource(
        annotations=bad, image_root=root / "images", policy=ImportPolicy(approved=True)
    )
    ids = {it.extra["coco_image_id"] for it in approved.items()}
    assert victim["image_id"] not in ids and len(ids) == 5
    assert all(it.annotations_approved for it in approved.items() if it.pre_annotation)


def test_policy_values_are_checked():
    from entityseg_data.errors import DataError

    with pytest.raises(DataError, match="crowd policy"):
        ImportPolicy(crowd="maybe")  # type: ignore[arg-type]


def test_ingest_coco_panoptic_source_stores_kinds_in_the_workspace(workspace):
    """Through the real ingest pipeline (``coco:`` spec): the pre-annotation files in the
    workspace carry names, category ids and thing/stuff kinds, masks exact."""
    from entityseg_data.config.ingest import IngestConfig
    from entityseg_data.ingest import ingest
    from entityseg_data.ingest.sources import parse_source

    root = realdata("coco_panoptic_train100")
    data = json.loads((root / "panoptic_train2017.json").read_text())
    pans = {a["image_id"]: a for a in data["annotations"]}
    cats = {c["id"]: c for c in data["categories"]}
    src = parse_source(f"coco:{root / 'panoptic_train2017.json'}")
    report = ingest(workspace, [src], IngestConfig(nsfw_enabled=False, limit=4, workers=2))
    assert report.totals().accepted == 4
    with workspace.catalog() as cat:
        rows = cat.images()
    assert len(rows) == 4
    for row in rows:
        iid = int(row.source_id.split(":")[1])
        _rec, payload = workspace.latest_prediction(row.id, "source:coco")
        ids = read_panoptic_ids(root / "panoptic_train2017" / pans[iid]["file_name"])
        want = [s for s in pans[iid]["segments_info"] if not s["iscrowd"]]
        assert [e["kind"] for e in payload["entities"]] == [
            "thing" if cats[s["category_id"]]["isthing"] else "stuff" for s in want
        ]
        for e, s in zip(payload["entities"], want, strict=True):
            assert np.array_equal(_decode(e["segmentation"]), ids == s["id"])


@pytest.mark.slow
def test_probe_issue16_convert_panoptic_keeps_thing_stuff_in_the_workspace(workspace):
    """Issue 16: after ``export convert panoptic`` every class kind was unknown. Imported as
    approved annotations, real COCO panoptic segments keep their masks exactly, their names and
    their thing/stuff kinds, through the workspace COCO view and the statistics' class table."""
    from entityseg_data.ingest.importers import import_coco, import_config
    from entityseg_data.io.coco import workspace_coco
    from entityseg_data.stats.classes import class_counts
    from entityseg_data.stats.engine import workspace_stats

    root = realdata("coco_panoptic_train100")
    data = json.loads((root / "panoptic_train2017.json").read_text())
    pans = {a["image_id"]: a for a in data["annotations"]}
    cats = {c["id"]: c for c in data["categories"]}
    cfg = import_config(workspace, overrides={"limit": 12, "workers": 2})
    res = import_coco(workspace, root / "panoptic_train2017.json", root / "images", config=cfg)
    assert res.images == 12 and not res.problems and not res.failed
    coco = workspace_coco(workspace)
    with workspace.catalog() as cat:
        coco_id = {r.id: r.extra["coco_image_id"] for r in cat.images(status=None)}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    assert len(by_image) == 12
    n = 0
    for wid, anns in by_image.items():
        pan = pans[coco_id[wid]]
        ids = read_panoptic_ids(root / "panoptic_train2017" / pan["file_name"])
        want = [s for s in pan["segments_info"] if not s["iscrowd"]]
        assert len(anns) == len(want)
        for a, s in zip(anns, want, strict=True):
            cat = cats[s["category_id"]]
            assert np.array_equal(_decode(a["segmentation"]), ids == s["id"])
            assert a["name"] == cat["name"]
            assert a["kind"] == ("thing" if cat["isthing"] else "stuff")
            n += 1
    assert n == res.entities
    rows = class_counts(workspace_stats(workspace))
    kinds = {r["name"]: r["kind"] for r in rows}
    assert "" not in kinds.values()  # no unknown kind left
    for name, kind in kinds.items():
        cat = next(c for c in cats.values() if c["name"] == name)
        assert kind == ("thing" if cat["isthing"] else "stuff")


def test_cli_export_convert_panoptic_on_real_data(tmp_path):
    """The CLI path (a subprocess): ``export convert panoptic`` on the panopticapi sample."""
    import os

    from entityseg_data.io.coco import workspace_coco
    from entityseg_data.workspace import Workspace

    root = realdata("panopticapi_sample") / "sample_data"
    ws = tmp_path / "ws"
    Workspace.create(ws)
    out = cli_support.run_cli(
        "-w",
        str(ws),
        "export",
        "convert",
        "panoptic",
        str(root / "panoptic_examples.json"),
        str(root / "panoptic_examples"),
        str(root / "input_images"),
        "--crowd",
        "keep",
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    assert "images: 2, entities: 50" in out.stdout  # 18 + 32 segments (3 crowd kept)
    kinds = [a["kind"] for a in workspace_coco(Workspace.open(ws))["annotations"]]
    assert kinds.count("thing") == 43 and kinds.count("stuff") == 7


def test_probe_5_21_missing_height_is_reported_not_a_keyerror(tmp_path):
    """Probe 5.21: ``ingest coco:`` and ``export convert instances`` with an image record
    without ``height`` died with ``error (KeyError): 'height'``. Now that image is left out, the
    others are imported, and the record is named in the output."""
    import os

    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    anns = []
    for i in (1, 2):
        Image.new("RGB", (30, 20), (40 * i, 0, 0)).save(imgs / f"{i}.png")
        m = np.zeros((20, 30), np.uint8)
        m[2:10, 3 + 10 * i : 12 + 10 * i] = 1
        anns.append({"id": i, "image_id": i, "category_id": 1, "segmentation": rle_utils.encode(m)})
    data = {
        "images": [
            {"id": 1, "file_name": "1.png", "width": 30},
            {"id": 2, "file_name": "2.png", "height": 20, "width": 30},
        ],
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing", "isthing": 1}],
    }
    path = tmp_path / "gt_noheight.json"
    path.write_text(json.dumps(data))

    def run(*args):
        return cli_support.run_cli(*args, env={**os.environ})

    assert run("init", str(tmp_path / "w1")).returncode == 0
    out = run("-w", str(tmp_path / "w1"), "ingest", f"coco:{path}:{imgs}", "--no-nsfw")
    assert out.returncode == 0, out.stderr
    assert "KeyError" not in out.stderr
    assert "gt_noheight.json: images[0] (id 1): missing 'height'" in out.stderr
    assert run("init", str(tmp_path / "w2")).returncode == 0
    out = run("-w", str(tmp_path / "w2"), "export", "convert", "instances", str(path), str(imgs))
    assert out.returncode == 0, out.stderr
    assert "images: 1, entities: 1" in out.stdout
    assert "images[0] (id 1): missing 'height'" in out.stderr


def test_convert_instances_real_icevision_keeps_masks_exactly(workspace):
    """``export convert instances`` (import_coco) on real COCO instances: the approved masks are
    exactly the coco: source's entities (polygons rasterised, overlaps smaller-wins, crowd
    dropped); the image without annotations is not imported."""
    from entityseg_data.ingest.importers import import_coco
    from entityseg_data.io.coco import workspace_coco

    root = realdata("icevision_coco2017_6img")
    data = json.loads((root / "annotations.json").read_text())
    res = import_coco(workspace, root / "annotations.json", root / "images")
    assert res.images == 5 and not res.problems
    coco = workspace_coco(workspace)
    with workspace.catalog() as cat:
        coco_id = {r.id: r.extra["coco_image_id"] for r in cat.images(status=None)}
    src = CocoSource(annotations=root / "annotations.json", image_root=root / "images")
    items = {it.extra["coco_image_id"]: it for it in src.items()}
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    got: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        got.setdefault(coco_id[a["image_id"]], []).append(a)
    assert len(got) == 5
    for cid, anns in got.items():
        want = _pre(items[cid], *sizes[cid]).entities
        assert [a["name"] for a in anns] == [e["name"] for e in want]
        for a, e in zip(anns, want, strict=True):
            assert np.array_equal(_decode(a["segmentation"]), _decode(e["segmentation"]))


def test_probe_5_19_5_20_bad_rles_lose_only_their_annotation(workspace, tmp_path):
    """Probes 5.19 (a truncated RLE became non-deterministic garbage pre-annotations) and 5.20
    (an RLE size mismatch lost the whole image as a permanent internal_error), through the real
    pipeline: both images are accepted, each keeps its good annotation, deterministically."""
    from PIL import Image

    from entityseg_data.config.ingest import IngestConfig
    from entityseg_data.ingest import ingest

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    anns = []
    for i in (1, 2):
        rng = np.random.default_rng(i)  # distinct content: not near duplicates
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
        for k in range(2):
            m = np.zeros((20, 30), np.uint8)
            m[2 + 8 * k : 8 + 8 * k, 3:20] = 1
            anns.append({"id": len(anns) + 1, "image_id": i, "segmentation": rle_utils.encode(m)})
    anns[0]["segmentation"] = {"size": [20, 30], "counts": "0::"}  # truncated (5.19)
    big = np.zeros((40, 60), np.uint8)
    big[:5, :5] = 1
    anns[2]["segmentation"] = rle_utils.encode(big)  # 40x60 on a 20x30 image (5.20)
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": 20, "width": 30} for i in (1, 2)],
        "annotations": anns,
    }
    path = tmp_path / "instances_bad.json"
    path.write_text(json.dumps(data))
    src = CocoSource(annotations=path, image_root=imgs)
    report = ingest(workspace, [src], IngestConfig(nsfw_enabled=False, workers=1))
    assert report.totals().accepted == 2 and not report.totals().failed
    assert sorted(p.issue for p in src.problems) == ["malformed_segmentation", "rle_size_mismatch"]
    with workspace.catalog() as cat:
        rows = cat.images()
    for row in rows:
        _rec, payload = workspace.latest_prediction(row.id, "source:coco")
        (ent,) = payload["entities"]  # the good annotation of each image
        want = rle_utils.decode(
            anns[1]["segmentation"] if row.extra["coco_image_id"] == 1 else anns[3]["segmentation"]
        )
        assert np.array_equal(_decode(ent["segmentation"]), want.astype(bool))
    assert any("annotations[0] (id 1)" in m for m in report.totals().messages)


@pytest.mark.slow
def test_subsets_of_an_imported_workspace_keep_thing_stuff(workspace, tmp_path):
    """Real COCO panoptic imported with ``export convert panoptic``, then ``export subsets`` of
    the workspace: the panoptic and instance subsets say thing/stuff as COCO does, one segment per
    stuff class per image, and ``eval --task panoptic`` of the subset against itself counts both
    things and stuff (issue 16: every class came out a thing)."""
    from entityseg_data.evaluation.panoptic_eval import evaluate_panoptic_files
    from entityseg_data.export.subsets import export_subsets
    from entityseg_data.ingest.importers import import_coco, import_config

    root = realdata("panopticapi_sample") / "sample_data"
    data = json.loads((root / "panoptic_examples.json").read_text())
    isthing = {c["name"]: c["isthing"] for c in data["categories"]}
    cfg = import_config(workspace, overrides={"workers": 1})
    res = import_coco(
        workspace,
        root / "panoptic_examples.json",
        root / "input_images",
        panoptic_dir=root / "panoptic_examples",
        config=cfg,
    )
    assert res.images == 2 and not res.problems
    paths = export_subsets(workspace, tmp_path / "sub", k_instance=50, k_semantic=0, k_panoptic=50)
    pan = json.loads(paths["panoptic"].read_text())
    inst = json.loads(paths["instance"].read_text())
    for sub in (pan, inst):
        assert {c["name"]: c["isthing"] for c in sub["categories"]} == {
            c["name"]: isthing[c["name"]] for c in sub["categories"]
        }
        assert {c["isthing"] for c in sub["categories"]} == {0, 1}
    cats = {c["id"]: c for c in pan["categories"]}
    for a in pan["annotations"]:
        stuff = [
            s["category_id"] for s in a["segments_info"] if not cats[s["category_id"]]["isthing"]
        ]
        assert stuff and len(stuff) == len(set(stuff))
    m = evaluate_panoptic_files(paths["panoptic"], paths["panoptic"])
    assert m["All"]["PQ"] == 1.0 and m["Things"]["n"] > 0 and m["Stuff"]["n"] > 0
