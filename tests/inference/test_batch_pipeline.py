"""run_predictions overlaps decoding and writing with the model (fake segmenter; the real model
runs the same loop in test_predict_cli.py)."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from entityseg_data.model.inference import batch as batch_mod
from entityseg_data.model.inference.batch import Job, run_predictions
from entityseg_data.model.inference.inputs import InputItem
from entityseg_data.model.inference.result import SegmentationResult

WAIT = 120.0  # generous: only a broken overlap makes these waits time out


def _images(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / "in" / f"im{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 10, 3), i * 20, np.uint8)).save(p)
        paths.append(p)
    return paths


def _result(h, w):
    lm = np.zeros((h, w), np.uint16)
    lm[:2, :3] = 1
    return SegmentationResult(
        label_map=lm,
        scores=np.array([0.9], np.float32),
        class_scores=np.array([0.9], np.float32),
        mask_quality=np.array([0.8], np.float32),
        areas=np.array([6]),
        boxes=np.array([[0, 0, 3, 2]]),
        query_index=np.array([0]),
        score_mode="calibrated",
    )


class _Seg:
    """Predicting image k waits until image k + 1 has started decoding (prefetch) and the
    outputs of image k - 1 have started being written (writer thread)."""

    model_version = "fake"

    def __init__(self, loads, writes):
        self.loads, self.writes, self.calls = loads, writes, 0

    def predict_arrays(self, arrays, sources=None):
        k = self.calls
        self.calls += 1
        if k + 1 < len(self.loads):
            assert self.loads[k + 1].wait(WAIT), f"image {k + 1} was not decoded ahead"
        if k >= 1:
            assert self.writes[k - 1].wait(WAIT), f"outputs of image {k - 1} were not written"
        return [_result(*a.shape[:2]).with_source(s, "fake") for a, s in zip(arrays, sources)]


def test_decode_and_write_overlap_the_forward(tmp_path, monkeypatch):
    paths = _images(tmp_path, 4)
    loads = [threading.Event() for _ in paths]
    writes = [threading.Event() for _ in paths]
    load_image, save_result = batch_mod.load_image, batch_mod.save_result

    def spy_load(path):
        loads[paths.index(path)].set()
        return load_image(path)

    def spy_save(res, output, *, image, index, **kw):
        writes[index].set()
        return save_result(res, output, image=image, index=index, **kw)

    monkeypatch.setattr(batch_mod, "load_image", spy_load)
    monkeypatch.setattr(batch_mod, "save_result", spy_save)
    seg = _Seg(loads, writes)
    jobs = [Job(InputItem(p, p.parent)) for p in paths]
    progress = []
    summary = run_predictions(
        seg, jobs, output=str(tmp_path / "out"), prefetch=1, on_progress=progress.append
    )
    assert summary.done == 4 and summary.failed == 0 and summary.entities == 4
    assert sum(progress) == 4
    assert summary.as_dict()["images_per_hour"] > 0
    for p in paths:
        assert (tmp_path / "out" / f"{p.stem}.png").exists()
        assert (tmp_path / "out" / f"{p.stem}.json").exists()


def test_bad_image_and_failed_write_are_reported_in_the_pipeline(tmp_path, monkeypatch):
    paths = _images(tmp_path, 3)
    paths[1].write_bytes(b"not an image")
    save_result = batch_mod.save_result

    def flaky_save(res, output, *, index, **kw):
        if index == 2:
            raise OSError("disk full")
        return save_result(res, output, index=index, **kw)

    monkeypatch.setattr(batch_mod, "save_result", flaky_save)

    class Seg:
        model_version = "fake"

        def predict_arrays(self, arrays, sources=None):
            return [_result(*a.shape[:2]).with_source(s, "fake") for a, s in zip(arrays, sources)]

    jobs = [Job(InputItem(p, p.parent)) for p in paths]
    progress = []
    summary = run_predictions(
        Seg(), jobs, output=str(tmp_path / "out"), on_progress=progress.append
    )
    assert summary.done == 1
    assert sorted(f["path"] for f in summary.failures) == sorted(map(str, paths[1:]))
    assert any("disk full" in f["error"] for f in summary.failures)
    assert sum(progress) == 3


def test_heap_released_after_every_chunk_unless_asked_not_to(tmp_path, monkeypatch):
    """``release_memory_between`` (default on): ``release_memory`` runs once after each chunk's
    forward (the peak-RSS effect itself is measured by ``bench_model.py --folder``, with and
    without ``--keep-heap``)."""
    paths = _images(tmp_path, 3)
    calls = []
    monkeypatch.setattr(batch_mod, "release_memory", lambda: calls.append(1) or True)

    class Seg:
        model_version = "fake"

        def predict_arrays(self, arrays, sources=None):
            return [_result(*a.shape[:2]).with_source(s, "fake") for a, s in zip(arrays, sources)]

    jobs = [Job(InputItem(p, p.parent)) for p in paths]
    summary = run_predictions(Seg(), jobs, output=str(tmp_path / "a"), batch_size=1)
    assert summary.done == 3 and len(calls) == 3
    calls.clear()
    run_predictions(Seg(), jobs, output=str(tmp_path / "b"), release_memory_between=False)
    assert calls == []
