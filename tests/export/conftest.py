"""Small synthetic datasets for the export tests (PNG images, so pixels compare exactly)."""

from __future__ import annotations

import json

import pytest

from entityseg_data.synthetic import write_dataset


@pytest.fixture(scope="module")
def syn_set(tmp_path_factory):
    """4 synthetic scenes (two sizes, two sources) with label maps: (root, json_path, coco)."""
    root = tmp_path_factory.mktemp("syn")
    path = write_dataset(
        root,
        4,
        seed=3,
        sizes=[(180, 240), (260, 200)],
        sources=["web", "lab"],
        image_format="png",
        label_maps=True,
    )
    return root, path, json.loads(path.read_text())
