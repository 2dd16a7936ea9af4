"""CropFormer predictions -> workspace pre-annotations -> a real Label Studio -> read back.

Lives beside the annotation tests to share their session Label Studio (``labelstudio`` fixture);
written by the inference side (``entityseg-data predict --workspace-images``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from annotation_support import add_test_images

from entityseg_data.annotation.labelstudio.session import (
    annotator_client,
    create_annotators,
    open_backend,
    tasks_for,
)
from entityseg_data.annotation.push import push
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.brush import decode_brush

pytestmark = pytest.mark.labelstudio


def test_predictions_pushed_and_read_back(labelstudio, tmp_path, oracle_dir):
    import torch

    from entityseg_data.model.convert import convert_file
    from entityseg_data.model.inference.batch import Job, run_predictions
    from entityseg_data.model.inference.inputs import InputItem
    from entityseg_data.model.inference.predictor import EntitySegmenter
    from entityseg_data.model.inference.workspace_io import workspace_images

    torch.set_num_threads(1)
    ws = labelstudio.workspace("predls", ("annotation.annotators=[carol]",))
    sizes = [(48, 64), (40, 56)]
    ids = add_test_images(ws, sizes, with_predictions=False)
    model_dir = tmp_path / "tiny_swin"
    convert_file(oracle_dir / "tiny" / "weights.npz", model_dir, preset="tiny_swin")
    seg = EntitySegmenter.from_pretrained(model_dir, min_size=64, max_size=96)
    jobs = [Job(InputItem(p, p.parent), iid) for iid, p in workspace_images(ws)]
    summary = run_predictions(seg, jobs, output=None, workspace=ws)
    assert summary.done == 2 and not summary.failures
    with ws.catalog() as cat:
        rows = cat.query("SELECT image_id, model_version, path, n_entities FROM predictions")
    assert sorted(r["image_id"] for r in rows) == sorted(ids)
    assert {r["model_version"] for r in rows} == {"tiny_swin"}

    create_annotators(ws, ["carol"], admin=labelstudio.admin)
    rep = push(ws, open_backend(ws, labelstudio.admin), ws.config().annotation, stage=1)
    assert rep.tasks == 2, rep
    carol = annotator_client(ws, "carol")
    for row in tasks_for(ws, 1, "carol"):
        iid = row.image_id
        task = carol.task(row.ls_task_id)
        pred = task["predictions"][0]
        assert pred["model_version"] == "tiny_swin"
        h, w = task["data"]["height"], task["data"]["width"]
        # what we predicted for this image (the workspace file) ...
        rel = next(r for r in rows if r["image_id"] == iid)["path"]
        data = json.loads(ws.abspath(rel).read_text())
        assert len(pred["result"]) == len(data["entities"]) > 0
        # ... comes back from Label Studio pixel for pixel, one brush region per entity
        for ent in data["entities"]:
            res = next(r for r in pred["result"] if r["id"] == f"{iid}_{ent['id']}")
            assert (res["original_height"], res["original_width"]) == (h, w)
            got = decode_brush(res["value"]["rle"], h, w)
            np.testing.assert_array_equal(got, rle_utils.decode(ent["segmentation"]))
            assert res["score"] == pytest.approx(ent["score"], rel=1e-6)
