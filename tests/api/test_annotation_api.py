"""The API the ``annotate`` commands stand on: the ML backend started for a workspace (unit tier)
and the Label Studio handle's accounts, projects and backend registration (labelstudio tier)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from PIL import Image

import entityseg_data as esd
from entityseg_data.masks.brush import decode_brush


def _two_halves(path, h=40, w=60):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2 :] = 255
    Image.fromarray(img).save(path)


def _predict(url, image="a.png"):
    task = {"id": 7, "data": {"image": f"/data/local-files/?d={image}"}}
    out = requests.post(url + "/predict", json={"tasks": [task]}, timeout=30)
    out.raise_for_status()
    (pred,) = out.json()["results"]
    return pred


def test_ml_backend_serves_the_workspace_images(tmp_path):
    ws = esd.Workspace.create(tmp_path / "ws")
    _two_halves(ws.root / "a.png")
    srv = esd.start_ml_backend(ws, port=0)
    try:
        assert requests.get(srv.url + "/health", timeout=10).json()["status"] == "UP"
        setup = requests.post(srv.url + "/setup", json={}, timeout=10).json()
        assert setup["model_version"] == "felzenszwalb"
        pred = _predict(srv.url)  # resolved under the workspace root (no document_root set)
        masks = [decode_brush(r["value"]["rle"], 40, 60) for r in pred["result"]]
        assert len(masks) == 2 and (sum(masks) == 1).all()
    finally:
        srv.stop()


class _Halves:
    """A Segmenter (the API protocol): the left and right halves, the right one overlapping
    the left by two columns and scoring higher."""

    model_version = "halves-v1"

    def segment(self, image):
        h, w = image.shape[:2]
        left = np.zeros((h, w), np.uint8)
        left[:, : w // 2] = 1
        right = np.zeros((h, w), np.uint8)
        right[:, w // 2 - 2 :] = 1
        from entityseg_data.masks import rle

        ents = (
            esd.Entity(id=1, rle=rle.encode(left), score=0.5),
            esd.Entity(id=2, rle=rle.encode(right), score=0.9),
        )
        return esd.ImageMasks(image_id=None, height=h, width=w, entities=ents)


def test_ml_backend_of_any_segmenter_and_a_document_root(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    _two_halves(root / "b.png")
    ws = esd.Workspace.create(tmp_path / "ws")
    (ws.root / "entityseg.yaml").write_text(
        (ws.root / "entityseg.yaml").read_text()
        + f"\nlabelstudio:\n  document_root: {json.dumps(str(root))}\n"
    )
    assert ws.config().labelstudio.document_root == str(root)
    with esd.start_ml_backend(ws, model=_Halves(), port=0) as srv:
        setup = requests.post(srv.url + "/setup", json={}, timeout=10).json()
        assert setup["model_version"] == "halves-v1"
        pred = _predict(srv.url, "b.png")
        masks = [decode_brush(r["value"]["rle"], 40, 60) for r in pred["result"]]
        assert len(masks) == 2 and (sum(masks) == 1).all()  # made disjoint
        widths = sorted(int(m[0].sum()) for m in masks)
        assert widths == [28, 32]  # the higher-scoring right half kept the shared columns


@pytest.mark.labelstudio
def test_label_studio_handle_accounts_projects_and_backend(labelstudio, tmp_path):
    from annotation_support import add_test_images
    from labelstudio_support import ADMIN_EMAIL

    ws = esd.Workspace.of(labelstudio.workspace("api-ls", ("annotation.annotators=[ann1]",)))
    add_test_images(ws, [(60, 80)], with_predictions=False)
    ls = esd.LabelStudio.connect(ws, config=ws.config(["annotation.annotators=[ann1]"]))
    assert ls.url == labelstudio.url and ls.admin_email == ADMIN_EMAIL
    assert ls.credentials_path.is_file() and ls.credentials_path.parent.name == "labelstudio"
    assert ls.create_annotators(["ann1"]) == ["ann1"]
    email = ls.annotator_email("ann1")
    assert email == "ann1@entityseg.local"
    assert ls.annotator_passwords(["ann1"])["ann1"][0] == email
    assert ls.projects(1) == {}
    rep = ws.annotation(ls).push(1)
    assert ls.projects(1) == {a: int(p) for a, p in rep.projects.items()} and ls.projects(1)
    with esd.start_ml_backend(ws, port=0) as srv:
        registered = ls.register_ml_backend(srv.url)
        assert registered == ls.projects(1)
        (pid,) = registered.values()
        urls = [b["url"].rstrip("/") for b in ls.client.ml_backends(pid)]
        assert srv.url in urls
        assert ls.register_ml_backend(srv.url) == registered  # idempotent
        assert len(ls.client.ml_backends(pid)) == len(urls)
    # remember: a later connection without a URL finds this server through the file
    creds = json.loads(ls.credentials_path.read_text())
    creds["url"] = "http://127.0.0.1:9"
    ls.credentials_path.write_text(json.dumps(creds))
    again = esd.LabelStudio.connect(ws, labelstudio.url, remember=True)
    assert json.loads(again.credentials_path.read_text())["url"] == labelstudio.url.rstrip("/")
    assert esd.LabelStudio.connect(ws).url == labelstudio.url
