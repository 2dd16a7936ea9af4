"""The ML backend: non-learned segmenter, prompts, HTTP protocol, and registration with a real
Label Studio that then calls it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import requests
from annotation_support import add_test_images

from entityseg_data.annotation.labelstudio.configs import BRUSH_LABELS
from entityseg_data.annotation.labelstudio.session import open_backend, tasks_for
from entityseg_data.annotation.ml_backend import (
    MLBackend,
    MLBackendServer,
    as_label_map,
    felzenszwalb_segmenter,
    register,
    select_by_prompts,
)
from entityseg_data.annotation.push import push
from entityseg_data.masks.brush import decode_brush


def test_felzenszwalb_partitions_the_image():
    rng = np.random.default_rng(0)
    img = np.zeros((90, 120, 3), np.uint8)
    img[:, 60:] = 200
    img[30:60, 10:40] = (0, 0, 255)
    img = (img + rng.integers(0, 10, img.shape)).astype(np.uint8)
    lm, scores = as_label_map(felzenszwalb_segmenter(max_side=64)(img), 90, 120)
    assert lm.shape == (90, 120) and lm.min() >= 1 and len(scores) == lm.max()
    assert len(np.unique(lm)) >= 3
    assert lm[45, 25] != lm[45, 100] and lm[45, 25] != lm[5, 5]


def test_pairs_output_and_prompts():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = np.ones((10, 10), bool)
    lm, scores = as_label_map([(a, 0.9), (b, 0.5)], 10, 10)
    assert (lm[:5] == 1).all() and (lm[5:] == 2).all() and list(scores) == [0.9, 0.5]
    ctx = {"result": [{"type": "keypointlabels", "value": {"x": 50.0, "y": 80.0}}]}
    assert select_by_prompts(lm, ctx) == [2]
    box = {
        "result": [
            {"type": "rectanglelabels", "value": {"x": 0, "y": 0, "width": 100, "height": 55}}
        ]
    }
    assert select_by_prompts(lm, box) == [1]
    assert select_by_prompts(lm, None) is None


def test_http_protocol(tmp_path):
    from PIL import Image

    img = np.zeros((40, 60, 3), np.uint8)
    img[:, 30:] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    backend = MLBackend(segmenter=felzenszwalb_segmenter(), document_root=tmp_path, min_area=1)
    with MLBackendServer(backend) as srv:
        assert requests.get(srv.url + "/health", timeout=10).json()["status"] == "UP"
        assert requests.post(srv.url + "/setup", json={}, timeout=10).json()["model_version"]
        task = {"id": 7, "data": {"image": "/data/local-files/?d=a.png"}}
        out = requests.post(srv.url + "/predict", json={"tasks": [task]}, timeout=30).json()
        (pred,) = out["results"]
        masks = [decode_brush(r["value"]["rle"], 40, 60) for r in pred["result"]]
        assert len(masks) == 2 and (sum(masks) == 1).all()  # disjoint, covering
        labels = [r["value"]["brushlabels"][0] for r in pred["result"]]
        assert set(labels) <= set(BRUSH_LABELS) and len(set(labels)) == 2  # touching: 2 colours
        bad = {"id": 8, "data": {"image": "/data/local-files/?d=../../etc/passwd"}}
        assert (
            requests.post(srv.url + "/predict", json={"tasks": [bad]}, timeout=30).status_code
            == 500
        )


def test_a_started_server_used_with_with_leaves_no_thread(tmp_path):
    """``start_ml_backend`` returns a started server that callers use in ``with``: entering it
    must not start a second serve loop, and leaving it stops the only one."""
    backend = MLBackend(segmenter=felzenszwalb_segmenter(), document_root=tmp_path)
    srv = MLBackendServer(backend).start()
    with srv as entered:
        assert entered is srv
        assert requests.get(srv.url + "/health", timeout=10).json()["status"] == "UP"
        loops = [t for t in threading.enumerate() if "serve_forever" in t.name]
        assert loops == [srv.thread]
    assert srv.thread is not None and not srv.thread.is_alive()


@pytest.mark.labelstudio
def test_registered_with_label_studio_and_answering(labelstudio):
    ws = labelstudio.workspace("mlb", ("annotation.annotators=[alice]",))
    add_test_images(ws, [(60, 80)], with_predictions=False)
    admin = labelstudio.admin
    rep = push(ws, open_backend(ws, admin), ws.config().annotation, stage=1)
    project = int(rep.projects["alice"])
    backend = MLBackend(
        segmenter=felzenszwalb_segmenter(),
        document_root=labelstudio.root,
        model_version="felz-test",
        min_area=1,
    )
    with MLBackendServer(backend) as srv:
        ml = register(admin, project, srv.url)
        assert register(admin, project, srv.url)["id"] == ml["id"]  # idempotent
        assert ml.get("state") in (None, "CO", "CONNECTED", "Connected") or ml["id"]
        answer = admin.post(f"/api/ml/{ml['id']}/predict/test?random=true")
        assert answer["status"] == 200 and answer["url"] == srv.url + "/predict", answer
        resp = answer["response"]  # what our /predict answered (Label Studio unwraps "results")
        results = resp["results"] if isinstance(resp, dict) else resp
        regions = results[0]["result"]
        assert regions and all(r["type"] == "brushlabels" for r in regions)
        h, w = regions[0]["original_height"], regions[0]["original_width"]
        assert (h, w) == (60, 80)
        cover = sum(decode_brush(r["value"]["rle"], h, w).astype(int) for r in regions)
        assert cover.max() == 1  # non-overlapping masks
        # interactive: a click returns the entity under it
        tid = tasks_for(ws, 1, "alice")[0].ls_task_id
        ctx = {"result": [{"type": "keypointlabels", "value": {"x": 10.0, "y": 10.0}}]}
        inter = admin.post(
            f"/api/ml/{ml['id']}/interactive-annotating", {"task": tid, "context": ctx}
        )
        got = inter["data"]["result"]
        assert len(got) == 1 and got[0]["from_name"] == "mask"
        clicked = decode_brush(got[0]["value"]["rle"], 60, 80)
        assert clicked[6, 8] == 1  # the clicked pixel (10% of 60 rows, 10% of 80 columns)
