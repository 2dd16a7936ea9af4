"""A release is validated before anything is written (probes 5.15, 5.16); hr and lr agree."""

from __future__ import annotations

import json
import shutil

import pytest

from entityseg_data.config import ExportConfig
from entityseg_data.errors import DataError
from entityseg_data.export.entityseg import export_entityseg

# lr copies at half the size of the synthetic scenes: what these tests check (which images an
# export lists, the modes of the files it writes) does not depend on the lr size, and the official
# 800 px short side enlarges the 180 x 240 scenes to 800 x 1067 PNGs (~0.1 CPU s each to write);
# the official size rule and resize are checked in test_lr.py
SMALL_LR = ExportConfig(lr_short_side=90, lr_max_side=150)


def _variant(tmp_path, coco, change, name):
    data = json.loads(json.dumps(coco))
    change(data)
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "gt_truncrle.json",
            lambda d: d["annotations"][0]["segmentation"].update(counts="0::"),
            r"gt_truncrle.json: annotations\[0\] \(id \d+\): RLE counts",
        ),
        (
            "gt_garbage.json",
            lambda d: d["annotations"][1]["segmentation"].update(counts="\x01\x02 x"),
            r"annotations\[1\] .*outside the COCO alphabet",
        ),
        (
            "gt_dupimg.json",
            lambda d: d["images"].append(dict(d["images"][0])),
            r"gt_dupimg.json: images\[4\]: duplicate image id",
        ),
        (
            "gt_dupann.json",
            lambda d: d["annotations"][2].update(id=d["annotations"][0]["id"]),
            r"annotations\[2\] .*duplicate annotation id",
        ),
        (
            "gt_noheight.json",
            lambda d: d["images"][2].pop("height"),
            r"images\[2\] \(id \d+\): missing 'height'",
        ),
    ],
)
def test_probe_5_15_5_16_bad_release_stops_before_writing(syn_set, tmp_path, name, change, message):
    """Probe 5.15: the hr release kept a corrupt RLE ('0::') and lr silently dropped the image.
    Probe 5.16: duplicate image ids were duplicated in the release. Now: one error, no output."""
    root, _, coco = syn_set
    path = _variant(tmp_path, coco, change, name)
    out = tmp_path / "EX"
    with pytest.raises(DataError, match=message):
        export_entityseg(path, out, images_dir=root / "images", split=False)
    assert not out.exists()


def test_hr_and_lr_list_the_same_images_with_reasons(syn_set, tmp_path):
    """An image the lr copy cannot decode (truncated after a valid header) leaves hr too, and
    both reasons are reported (was: lr dropped it silently, hr kept it)."""
    root, path, coco = syn_set
    work = tmp_path / "imgs"
    shutil.copytree(root / "images", work)
    bad = coco["images"][2]
    data = (work / bad["file_name"]).read_bytes()
    (work / bad["file_name"]).write_bytes(data[: len(data) // 3])
    gone = coco["images"][0]
    (work / gone["file_name"]).unlink()
    res = export_entityseg(
        path, tmp_path / "es", images_dir=work, config=SMALL_LR, split=False, link=False
    )
    hr = json.loads(res.annotation_files["all"].read_text())
    lr = json.loads(res.annotation_files["all_lr"].read_text())
    assert [im["id"] for im in hr["images"]] == [im["id"] for im in lr["images"]]
    assert {im["id"] for im in hr["images"]} == {coco["images"][i]["id"] for i in (1, 3)}
    reasons = {m["image_id"]: m["error"] for m in res.counts["skipped_images"]}
    assert "not found" in reasons[gone["id"]] and "truncated" in reasons[bad["id"]]
    assert not (tmp_path / "es" / "images" / bad["file_name"]).exists()
    assert {a["image_id"] for a in hr["annotations"]} == {a["image_id"] for a in lr["annotations"]}


def test_release_files_are_readable_by_others(syn_set, tmp_path):
    """Probe 8.5 on an export: every written file gets the umask's mode (0644 under 022)."""
    import os
    import stat

    root, path, _ = syn_set
    old = os.umask(0o022)
    try:
        res = export_entityseg(
            path, tmp_path / "es", images_dir=root / "images", config=SMALL_LR, link=False
        )
    finally:
        os.umask(old)
    files = [p for p in res.out_dir.rglob("*") if p.is_file()]
    assert len(files) > 8
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {"0o644"}


def test_private_source_images_are_copied_not_linked(syn_set, tmp_path):
    """Probe 8.5: images written 0600 by an older version are not hard-linked into a release
    (a link shares the mode); they are copied with the umask's mode."""
    import os
    import shutil
    import stat

    root, path, coco = syn_set
    work = tmp_path / "imgs"
    shutil.copytree(root / "images", work)
    for p in work.iterdir():
        os.chmod(p, 0o600)
    old = os.umask(0o022)
    try:
        res = export_entityseg(path, tmp_path / "es", images_dir=work, split=False, lr=False)
    finally:
        os.umask(old)
    for im in coco["images"]:
        out = tmp_path / "es" / "images" / im["file_name"]
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        assert out.stat().st_ino != (work / im["file_name"]).stat().st_ino
    assert res.counts["all"]["images"] == len(coco["images"])
