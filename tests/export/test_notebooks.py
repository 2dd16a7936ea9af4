"""The notebooks run top to bottom on a small sample workspace (nbclient, real kernel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from notebook_support import run_notebook

from entityseg_data.ingest.importers import import_label_maps
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity, ImageAnnotation, iter_annotations, save_annotation
from entityseg_data.synthetic import write_dataset
from entityseg_data.workspace import Workspace

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def sample_ws(tmp_path_factory):
    """3 synthetic images converted from label maps (annotator 'import', named) plus a second
    annotator 'bob' whose masks are shifted by 2 pixels, for the consistency report."""
    root = tmp_path_factory.mktemp("nb")
    write_dataset(root / "syn", 3, seed=9, sizes=[(200, 260)], label_maps=True)
    names = {i: n for i, n in enumerate(["sky", "wall", "tree", "car", "pole"], start=1)}
    ws = Workspace.create(root / "ws")
    import_label_maps(ws, root / "syn" / "images", root / "syn" / "label_maps", names=names)
    for ann in iter_annotations(ws.root, 1, "import"):
        lm = np.zeros((ann.height, ann.width), np.uint16)
        for i, e in enumerate(ann.entities, start=1):
            lm[rle_utils.decode(e.segmentation) > 0] = i
        lm = np.roll(lm, 2, axis=1)
        rles = rle_utils.label_map_to_rles(lm)
        ents = tuple(Entity(id=f"b{i}", rle=r) for i, r in sorted(rles.items()))
        save_annotation(
            ws.root,
            ImageAnnotation(
                image_id=ann.image_id,
                height=ann.height,
                width=ann.width,
                stage=1,
                annotator="bob",
                entities=ents,
            ),
        )
        with ws.catalog() as cat:
            cat.set_annotation(ann.image_id, 1, "bob", status="submitted", n_entities=len(ents))
    return ws


pytestmark = pytest.mark.notebook


@pytest.mark.parametrize("name", ["statistics_report", "consistency_report", "dataset_browser"])
def test_notebook_runs(name, sample_ws, tmp_path, monkeypatch):
    outputs, text = run_notebook(NOTEBOOKS / f"{name}.ipynb", sample_ws.root, tmp_path, monkeypatch)
    if name == "statistics_report":
        assert "| ws |" in text and (tmp_path / "out" / "fig3.png").is_file()
        assert any("image/png" in o.get("data", {}) for o in outputs)
    elif name == "consistency_report":
        assert "['bob', 'import']" in text
        assert any("text/markdown" in o.get("data", {}) for o in outputs)
    else:
        pngs = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == 3
