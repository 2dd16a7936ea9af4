"""``consistency --iou`` must be a threshold in (0, 1] (issue 15, probe 5.13: `--iou nan` and
`--iou 5` were accepted and silently matched nothing)."""

from __future__ import annotations

import json
import sys

import cli_support
import numpy as np
import pytest

from entityseg_data.errors import ConfigError
from entityseg_data.evaluation.consistency import consistency
from entityseg_data.masks import rle as rle_utils

CLI = (sys.executable, "-m", "entityseg_data")


@pytest.fixture()
def gt(tmp_path):
    m = np.zeros((20, 30), np.uint8)
    m[:10, :15] = 1
    seg = rle_utils.encode(m)
    data = {
        "images": [{"id": 1, "height": 20, "width": 30, "file_name": "a.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": seg, "name": "dog"}
        ],
        "categories": [{"id": 1, "name": "entity"}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("iou", [float("nan"), 5.0, 0.0, -0.5])
def test_iou_out_of_range_is_refused_by_the_library(gt, iou):
    """probe 5.13"""
    with pytest.raises(ConfigError, match=r"IoU threshold must be in \(0, 1\]"):
        consistency([gt, gt], iou_threshold=iou, canonical=str.lower)


@pytest.mark.parametrize("iou", ["nan", "5", "0"])
def test_iou_out_of_range_is_a_usage_error(gt, iou):
    """probe 5.13 through the CLI: exit 2, one message naming --iou."""
    proc = cli_support.run_cli("consistency", gt, gt, "--plain-names", "--iou", iou)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--iou" in proc.stderr and "must be in (0, 1]" in proc.stderr


def test_iou_one_is_accepted_and_matches_identical_masks(gt):
    report = consistency([gt, gt], iou_threshold=1.0, canonical=str.lower)
    (pair,) = [p for p in report["pairs"] if p["gt"] != p["pred"]][:1]
    assert pair["matched"] == 1
