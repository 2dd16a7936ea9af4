from __future__ import annotations

import numpy as np
import pytest

from entityseg_data.errors import DataError
from entityseg_data.masks import rle
from entityseg_data.masks.store import (
    Entity,
    ImageAnnotation,
    annotators,
    load_annotation,
    save_annotation,
    workspace_to_coco,
)


def _ann(image_id, annotator, h=12, w=16, stage=1):
    lm = np.zeros((h, w), np.uint8)
    lm[:6] = 1
    lm[6:, :8] = 2
    ents = tuple(Entity(id=f"e{k}", rle=rle.encode(lm == k), name=f"n{k}") for k in (1, 2))
    return ImageAnnotation(
        image_id=image_id, height=h, width=w, stage=stage, annotator=annotator, entities=ents
    )


def test_save_load_and_coco(workspace):
    with workspace.catalog() as cat:
        iid = cat.add_image(
            sha256="a" * 64,
            source="folder",
            source_id="x",
            width=16,
            height=12,
            file_path="images/x.jpg",
        )
        cat.set_annotation(iid, 1, "alice", status="approved")
    save_annotation(workspace.root, _ann(iid, "alice"))
    save_annotation(workspace.root, _ann(iid, "bob"))
    assert annotators(workspace.root, 1) == ["alice", "bob"]
    back = load_annotation(workspace.root, 1, "alice", iid)
    assert back == _ann(iid, "alice")
    coco = workspace_to_coco(workspace)
    assert [im["file_name"] for im in coco["images"]] == ["images/x.jpg"]
    assert [a["area"] for a in coco["annotations"]] == [96, 48]
    assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 16.0, 6.0]
    bob = workspace_to_coco(workspace, annotator="bob", statuses=None)
    assert len(bob["annotations"]) == 2


def test_size_mismatch_is_an_error(workspace):
    bad = ImageAnnotation(
        image_id=1,
        height=5,
        width=5,
        stage=1,
        annotator="a",
        entities=(Entity(id="x", rle=rle.encode(np.ones((4, 4)))),),
    )
    with pytest.raises(DataError, match="differs from the image size"):
        save_annotation(workspace.root, bad)
    with pytest.raises(DataError, match="invalid annotator"):
        save_annotation(workspace.root, ImageAnnotation(1, 5, 5, 1, "../x"))
