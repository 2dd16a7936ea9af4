"""The API the ``stats`` and ``data validate`` commands stand on: statistics of COCO files,
reports of several datasets side by side, annotation checks."""

from __future__ import annotations

import copy
import json

import pytest

import entityseg_data as esd
from entityseg_data.config.stats import StatsConfig
from entityseg_data.synthetic import write_dataset


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    a = write_dataset(root / "a", 3, seed=1, sizes=((60, 80),), write_images=False)
    b = write_dataset(root / "b", 2, seed=2, sizes=((90, 70),), write_images=False)
    return a, b


def _steps():
    calls: list[tuple[int, int]] = []
    return calls, lambda done, total: calls.append((done, total))


def test_coco_stats_measures_a_file_with_progress(two_sets):
    a, _ = two_sets
    data = json.loads(a.read_text())
    calls, progress = _steps()
    s = esd.coco_stats(a, progress=progress)
    assert s.name == a.stem  # the file's stem when not named
    assert s.n_images == 3 and s.n_entities == len(data["annotations"])
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # a dict gives the same measures; limit counts images
    same = esd.coco_stats(data, name="A", config=StatsConfig())
    assert same.name == "A" and same.n_entities == s.n_entities
    calls, progress = _steps()
    first = esd.coco_stats(a, limit=1, progress=progress)
    assert first.n_images == 1 and calls[-1] == (1, 1)


def test_coco_stats_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1}], "annotations": [{"id": 1}]}))
    with pytest.raises(esd.DataError, match="bad.json"):
        esd.coco_stats(bad)


def test_stats_report_side_by_side(two_sets, tmp_path):
    a, b = two_sets
    sa, sb = esd.coco_stats(a, name="A"), esd.coco_stats(b, name="B")
    rep = esd.stats_report([sa, sb], tmp_path / "out", plots=False)
    assert isinstance(rep, esd.StatsReport)
    assert rep.stats is sa and rep.datasets == (sa, sb)
    assert [r["dataset"] for r in rep.table] == ["A", "B"]
    assert [r["images"] for r in rep.table] == [3, 2]
    assert rep.table_markdown == rep.paths["table_md"].read_text()
    assert sum(c["entities"] for c in rep.classes) == sa.n_entities  # the first dataset's
    on_disk = json.loads(rep.paths["json"].read_text())
    assert [d["name"] for d in on_disk["datasets"]] == ["A", "B"]
    (used,) = {r["shape_measures"] for r in rep.table}
    assert list(rep.shape_definitions) == [used] and rep.shape_definitions[used]
    assert on_disk["datasets"][0]["shape_measures"]["definition"] == rep.shape_definitions[used]
    assert "fig3" not in rep.paths
    with pytest.raises(esd.DataError):
        esd.stats_report([], tmp_path / "none")


def test_validate_annotations_of_a_file_a_dict_and_a_workspace(two_sets, tmp_path):
    a, _ = two_sets
    calls, progress = _steps()
    ok = esd.validate_annotations(a, progress=progress)
    assert isinstance(ok, esd.ValidationReport)
    assert ok.ok and ok.n_images == 3 and calls[-1] == (3, 3)

    data = json.loads(a.read_text())
    broken = copy.deepcopy(data)
    broken["annotations"].append({**broken["annotations"][0], "id": 10_000})  # same mask again
    broken["images"].append(dict(broken["images"][0]))  # duplicate image id
    rep = esd.validate_annotations(broken, max_offenders=1)
    assert not rep.ok
    assert rep.counts["overlap"] >= 1 and rep.counts["duplicate_image_id"] == 1
    assert all(len(v) <= 1 for v in rep.offenders.values())

    # a workspace's approved annotations, its images checked under its root
    imported = write_dataset(tmp_path / "imp", 2, seed=3, sizes=((40, 50),), image_format="png")
    ws = esd.Workspace.create(tmp_path / "ws")
    ws.import_coco(imported, imported.parent / "images")
    assert esd.validate_annotations(ws).ok
    first = ws.images()[0]
    ws.image_path(first).unlink()
    rep = esd.validate_annotations(ws)
    assert rep.n_images == 2 and dict(rep.counts) == {"missing_image": 1}
