"""``entityseg-data predict`` end to end: bad-image corpus, failures, kill-and-resume, shards."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cli_support
import numpy as np
import pytest
from pause_child import PAUSE_CHILD, wait_for_marker
from PIL import Image

from entityseg_data.model.inference.outputs import read_label_png

FAST = ["--set", "views.min_size=64", "--set", "views.max_size=96", "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, oracle_dir):
    from entityseg_data.model.convert import convert_file

    out = tmp_path_factory.mktemp("model") / "tiny_swin"
    convert_file(oracle_dir / "tiny" / "weights.npz", out, preset="tiny_swin")
    return out


def run_cli(*args, timeout=None):
    """The CLI in this process (tests/cli_support.py): no interpreter + torch start per call."""
    return cli_support.run_cli(*args)


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def make_corpus(folder: Path) -> dict[str, tuple[int, int] | str]:
    """Write the corpus; returns name -> expected (H, W) of the output, or an error fragment."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    rgb[20:40, 30:60] = (250, 20, 20)
    Image.fromarray(rgb).save(folder / "good.png")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "corrupt.jpg").write_bytes(
        b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 255, 500, np.uint8))
    )
    (folder / "empty.png").write_bytes(b"")
    (folder / "notimage.jpg").write_text("this is not an image\n")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((60, 80), 128, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    g16 = rgb[..., 1].astype(np.uint16) * 257
    Image.fromarray(g16).save(folder / "gray16.png")
    Image.fromarray(rgb[..., 1]).save(folder / "gray16_as8.png")
    # EXIF orientation 6: stored 60x80 (HxW), shown rotated -> upright 80x60
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(folder / "exif6.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(folder / "exif6.jpg") as im:
        upright = np.asarray(im.convert("RGB")).copy()
    Image.fromarray(np.rot90(upright, k=-1).copy()).save(folder / "exif6_upright.png")
    Image.fromarray(rgb[:1, :1]).save(folder / "tiny.png")
    (folder / "huge.png").write_bytes(_png_with_header(30000, 30000))
    Image.fromarray(np.resize(rgb, (4, 900, 3))).save(folder / "aspect.png")
    return {
        "good": (60, 80),
        "truncated": "truncated",
        "corrupt": "not a readable image",
        "empty": "empty file",
        "notimage": "not a readable image",
        "gray": (60, 80),
        "rgba": (60, 80),
        "palette": (60, 80),
        "cmyk": (60, 80),
        "gray16": (60, 80),
        "gray16_as8": (60, 80),
        "exif6": (80, 60),
        "exif6_upright": (80, 60),
        "tiny": (1, 1),
        "huge": "too large",
        "aspect": (4, 900),
    }


@pytest.mark.slow
def test_bad_image_corpus_completes_and_reports(tmp_path, tiny_model):
    expected = make_corpus(tmp_path / "in")
    out = tmp_path / "out"
    r = run_cli(
        "predict",
        str(tmp_path / "in"),
        "-o",
        str(out),
        "--weights",
        str(tiny_model),
        "-f",
        "png",
        "-f",
        "json",
        "-f",
        "coco",
        "--no-progress",
        *FAST,
    )
    assert r.returncode == 1, r.stderr  # something failed -> exit 1, but the batch completed
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    failed = {Path(f["path"]).stem: f["error"] for f in failures}
    bad = {k: v for k, v in expected.items() if isinstance(v, str)}
    assert set(failed) == set(bad)
    for name, fragment in bad.items():
        assert fragment in failed[name], (name, failed[name])
        assert "\n" not in failed[name] and "Traceback" not in failed[name]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == len(bad) and summary["done"] == len(expected) - len(bad)
    for name, hw in expected.items():
        if isinstance(hw, str):
            assert not (out / f"{name}.png").exists()
            continue
        lm = read_label_png(out / f"{name}.png")
        assert lm.shape == hw and lm.dtype == np.uint16, name
        side = json.loads((out / f"{name}.json").read_text())
        assert (side["height"], side["width"]) == hw
        assert [e["id"] for e in side["entities"]] == list(range(1, lm.max() + 1))
    # 16-bit gray is scaled to 8 bits exactly; EXIF rotation is applied before predicting
    np.testing.assert_array_equal(
        read_label_png(out / "gray16.png"), read_label_png(out / "gray16_as8.png")
    )
    exif = read_label_png(out / "exif6.png")
    ref = read_label_png(out / "exif6_upright.png")
    assert (exif == ref).mean() > 0.9  # JPEG noise aside, the same picture upright
    assert "failed 5" in r.stdout and "5 failure(s) written to" in r.stderr


@pytest.mark.slow
def test_kill_and_resume_with_skip_existing(tmp_path, tiny_model):
    src = tmp_path / "frames"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            src / f"f{i:03d}.png"
        )
    out = tmp_path / "out"
    template = str(out / "{parent}" / "mask" / "{stem}")
    args = [
        "predict",
        str(src),
        "-o",
        template,
        "--weights",
        str(tiny_model),
        "--no-progress",
        "-f",
        "png",
        "-f",
        "json",
        "-f",
        "npz",
        *FAST,
    ]
    # the child stops itself when it starts writing the 4th image's outputs (3 are written):
    # the SIGKILL lands mid-run whatever the machine's load
    marker, log = tmp_path / "paused", tmp_path / "killed.log"
    pause = [PAUSE_CHILD, "entityseg_data.model.inference.batch:save_result", "3", str(marker)]
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, *pause, "--", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    wait_for_marker(marker, proc, log)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    masks = out / "frames" / "mask"
    first = len(list(masks.glob("*.json")))
    assert first == 3, "the run was not interrupted after its third image"
    from click.testing import CliRunner

    from entityseg_data.cli.main import cli

    # resume in-process (the interrupted run above was a real process killed with SIGKILL)
    r = CliRunner().invoke(cli, [*args, "--skip-existing"])
    assert r.exit_code == 0, r.output
    assert f"skipped {first}" in r.output
    for i in range(8):
        for ext in (".png", ".json", ".npz"):
            assert (masks / f"f{i:03d}{ext}").is_file()
        side = json.loads((masks / f"f{i:03d}.json").read_text())
        assert read_label_png(masks / f"f{i:03d}.png").max() == len(side["entities"])
    # a rerun skips everything
    r = CliRunner().invoke(cli, [*args, "--skip-existing"])
    assert "skipped 8" in r.output and "predicted 0" in r.output


def test_shards_partition_the_inputs(tmp_path, tiny_model):
    src = tmp_path / "in"
    src.mkdir()
    # 3 inputs, 2 shards of batch size 2: one shard fills a batch, the other does not
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(src / f"{i}.png")
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(f"in/{i}.png" for i in range(3)) + "\n")
    out = tmp_path / "out"
    from entityseg_data.cli.main import main

    for shard in ("0/2", "1/2"):  # in-process (no interpreter start-up)
        main(
            [
                "predict",
                str(lst),
                "-o",
                str(out),
                "--weights",
                str(tiny_model),
                "--shard",
                shard,
                "--stride",
                "1",
                "--batch-size",
                "2",
                "--no-progress",
                *FAST,
            ]
        )
    assert sorted(p.name for p in (out / "in").glob("*.png")) == [f"{i}.png" for i in range(3)]
    done = [json.loads((out / f"summary.{k}-of-2.json").read_text())["done"] for k in (0, 1)]
    assert sorted(done) == [1, 2]  # each input predicted by exactly one shard


def test_workspace_images_become_pre_annotations(workspace, tiny_model):
    """``-w WS predict --workspace-images``: predictions table + files that push reads."""
    from entityseg_data.annotation.push import load_prediction, prediction_seed
    from entityseg_data.cli.main import main
    from entityseg_data.masks import rle as rle_utils

    rng = np.random.default_rng(2)
    ids = []
    with workspace.catalog() as cat:
        for k, (h, w) in enumerate([(30, 40), (36, 24)]):
            path = workspace.images_dir / f"img{k}.png"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
            ids.append(
                cat.add_image(
                    sha256=f"{k:064d}",
                    source="test",
                    source_id=str(k),
                    width=w,
                    height=h,
                    file_path=workspace.relpath(path),
                )
            )
    args = [
        "-w",
        str(workspace.root),
        "predict",
        "--workspace-images",
        "--weights",
        str(tiny_model),
        "--no-progress",
        *FAST,
    ]
    main(args)
    with workspace.catalog() as cat:
        rows = cat.query("SELECT image_id, model_version, n_entities FROM predictions")
        assert sorted(r["image_id"] for r in rows) == ids
        for iid, (h, w) in zip(ids, [(30, 40), (36, 24)]):
            mv, data = load_prediction(workspace.root, cat, iid)
            assert mv == "tiny_swin" and (data["height"], data["width"]) == (h, w)
            seed = prediction_seed(data, iid, h, w)
            assert len(seed.entities) == len(data["entities"])
            total = sum(rle_utils.decode(e.segmentation).astype(int) for e in seed.entities)
            assert total.max() <= 1  # non-overlapping
    main([*args, "--skip-existing"])  # nothing left to do: no error, no rewrite


def test_sam_output_as_pre_annotation(workspace, tmp_path):
    from entityseg_data.annotation.push import load_prediction
    from entityseg_data.masks import rle as rle_utils
    from entityseg_data.model.inference.sam import sam_to_result
    from entityseg_data.model.inference.workspace_io import write_workspace_prediction

    a = np.zeros((20, 30), np.uint8)
    a[2:12, 2:20] = 1
    b = np.zeros((20, 30), np.uint8)
    b[8:18, 10:28] = 1
    recs = [
        {"segmentation": rle_utils.encode(m), "predicted_iou": s, "stability_score": 0.9}
        for m, s in ((a, 0.7), (b, 0.8))
    ]
    (tmp_path / "sam.json").write_text(json.dumps(recs))
    with workspace.catalog() as cat:
        iid = cat.add_image(sha256="f" * 64, source="test", source_id="s", width=30, height=20)
    res = sam_to_result(tmp_path / "sam.json")
    write_workspace_prediction(workspace, iid, res, "sam")
    with workspace.catalog() as cat:
        mv, data = load_prediction(workspace.root, cat, iid)
    assert mv == "sam" and [e["score"] for e in data["entities"]] == pytest.approx([0.8, 0.7])
    first = rle_utils.decode(data["entities"][0]["segmentation"])
    np.testing.assert_array_equal(first, b)  # b scores higher: it keeps the overlap
    assert rle_utils.overlap_pixels([e["segmentation"] for e in data["entities"]]) == 0
