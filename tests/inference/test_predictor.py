"""EntitySegmenter end to end with the tiny oracle checkpoints (official-format weights.npz)."""

from __future__ import annotations

import numpy as np
import pytest
from inference_helpers import load_pair, unpack_masks
from PIL import Image

from entityseg_data.model.config import InferenceConfig
from entityseg_data.model.inference.predictor import EntitySegmenter

PRESET = {"tiny": "tiny_swin", "tiny_hornet": "tiny_hornet"}
ALL = dict(score_thresh=0.0, min_area=0, max_entities=None)


class _Segmenters(dict):
    """model name -> its segmenter, loaded on first use (the unit tier uses tiny_hornet only)."""

    def __init__(self, oracle_dir):
        super().__init__()
        self.oracle_dir = oracle_dir

    def __missing__(self, m):
        import torch

        torch.set_num_threads(1)
        self[m] = EntitySegmenter.from_pretrained(
            self.oracle_dir / m / "weights.npz",
            preset=PRESET[m],
            score_mode="reference",
            min_size=320,
            max_size=512,
            **ALL,
        )
        return self[m]


@pytest.fixture(scope="module")
def segmenters(oracle_dir):
    return _Segmenters(oracle_dir)


def check_against_oracle(res, d, max_mismatch, max_score_diff=1e-5):
    masks = unpack_masks(d)
    by_query = {int(q): i for i, q in enumerate(res.query_index)}
    mismatch, worst = 0, 0.0
    for row, q in enumerate(d["final_query_index"]):
        if int(q) in by_query:
            i = by_query[int(q)]
            mismatch += int((res.mask(i + 1) != masks[row]).sum())
            worst = max(worst, abs(float(res.scores[i]) - float(d["final_scores"][row])))
        else:
            mismatch += int(masks[row].sum())
    assert mismatch <= max_mismatch
    assert worst <= max_score_diff
    assert len(res) == int(masks.reshape(len(masks), -1).any(1).sum())


# the unit tier: one model x image end to end (the Swin model's forward is checked against the
# oracle in tests/model/test_parity.py, its predictor by the predict CLI tests); all four: slow
CASES = [
    pytest.param("tiny", "img_a_480x640", marks=[pytest.mark.parity, pytest.mark.slow]),
    pytest.param("tiny_hornet", "img_b_600x400", marks=pytest.mark.parity),
    pytest.param("tiny", "img_b_600x400", marks=[pytest.mark.parity, pytest.mark.slow]),
    pytest.param("tiny_hornet", "img_a_480x640", marks=[pytest.mark.parity, pytest.mark.slow]),
]


@pytest.mark.parametrize("model,image", CASES)
def test_reference_mode_end_to_end_equals_the_oracle(segmenters, oracle_dir, model, image):
    d = load_pair(oracle_dir, model, image)
    res = segmenters[model](oracle_dir / "images" / f"{image}.png")
    if (model, image) == ("tiny_hornet", "img_a_480x640"):
        # The borderline case (tests/model/test_parity.py::test_inference_path_keeps_parity): an
        # attention-mask entry of tiny_hornet on image A sits so close to the cut that the official
        # code itself moves its 2d logits by 7e-4 between 1 and 2 threads. Measured end to end:
        # 19 px / 3.1e-5 (a74fa78), 21 px / 3.1e-5 (3799a8a, this machine at 1 and 2 threads; also
        # 21 px on the CI machine), of 307,200 px x 15 entities; within issue 17 1e-4 at test size.
        check_against_oracle(res, d, max_mismatch=40, max_score_diff=1e-4)
    else:
        # README 4: thread-count noise alone flips up to 2 pixels per image for HorNet
        check_against_oracle(res, d, max_mismatch=20)
    assert res.source.endswith(f"{image}.png") and res.model_version == PRESET[model]


@pytest.mark.slow
@pytest.mark.parity
@pytest.mark.parametrize("model", ["tiny", "tiny_hornet"])
def test_default_size_end_to_end(segmenters, oracle_dir, model):
    d = load_pair(oracle_dir, model, "img_a_480x640", prefix="default_size")
    seg = segmenters[model]
    seg800 = EntitySegmenter(
        model=seg.model,
        config=seg.config,
        options=seg.options,
        min_size=800,
        max_size=1333,
        model_version="x",
    )
    res = seg800(oracle_dir / "images" / "img_a_480x640.png")
    # scores: the issue-17 parity bound (1e-4); the float rounding depends on the CPU's kernels:
    # < 1e-5 on AVX2 EPYC hosts, 1.7e-5 for tiny_hornet on an AVX-512/AMX Xeon (2026-12-07)
    check_against_oracle(res, d, max_mismatch=50, max_score_diff=1e-4)


@pytest.mark.slow
def test_inputs_kinds_and_batches(segmenters, oracle_dir):
    base = segmenters["tiny"]
    seg = EntitySegmenter(  # base.config carries base's reference score mode: back to defaults
        model=base.model,
        config=base.config,
        options=InferenceConfig(),
        min_size=96,
        max_size=160,
        model_version="tiny",
    )
    path = oracle_dir / "images" / "img_b_600x400.png"
    arr = np.asarray(Image.open(path).convert("RGB"))
    a = seg(path)
    b = seg(Image.open(path))
    c = seg(arr)
    np.testing.assert_array_equal(a.label_map, b.label_map)
    np.testing.assert_array_equal(a.label_map, c.label_map)
    assert c.source is None and a.score_mode == "calibrated"
    # a list with batch_size=1 equals single calls; batch_size=2 pads both images together
    small = np.asarray(Image.fromarray(arr).resize((100, 150)))
    singles = [seg(small), seg(arr)]
    listed = seg([small, arr], batch_size=1)
    for s, l in zip(singles, listed):
        np.testing.assert_array_equal(s.label_map, l.label_map)
    batched = seg([small, arr], batch_size=2)
    assert [r.label_map.shape for r in batched] == [(150, 100), (600, 400)]
    for r in batched:
        assert r.label_map.max() == len(r) and np.all(np.diff(r.scores) <= 0)


def test_mask2former_path_and_mode_check(segmenters, oracle_dir):
    """A (randomly initialised) tiny Mask2Former runs the single-view path end to end."""
    import dataclasses

    import torch

    from entityseg_data.errors import ConfigError
    from entityseg_data.model.inference.postprocess import PostprocessOptions
    from entityseg_data.model.inference.preprocess import stack_views
    from entityseg_data.model.inference.reference import reference_postprocess
    from entityseg_data.model.inference.views import build_views
    from entityseg_data.model.loading import build_model
    from entityseg_data.model.presets import get_preset

    torch.manual_seed(0)
    cfg = dataclasses.replace(get_preset("tiny_swin"), batch_level=False)
    model = build_model(cfg).eval()
    seg = EntitySegmenter(
        model=model,
        config=cfg,
        min_size=96,
        max_size=160,
        options=PostprocessOptions(score_mode="reference", mask2former_topk=10, **ALL),
    )
    image = np.asarray(Image.open(oracle_dir / "images" / "img_a_480x640.png").convert("RGB"))
    res = seg(image)
    geo = seg.geometry(480, 640)
    assert geo.num_views == 1
    x, _ = stack_views([build_views(image, geo)])
    with torch.inference_mode():
        out = model(x, aux=False)
    lvl = out.image_level.final
    ref = reference_postprocess(
        lvl.pred_logits[0, 0], lvl.pred_masks[0, 0][:, None], geo, mask2former=True, topk=10
    )
    nonempty = ref.masks.reshape(len(ref.masks), -1).any(1)
    assert sorted(res.query_index.tolist()) == sorted(ref.query_index[nonempty].tolist())
    for i, q in enumerate(res.query_index):
        row = int(np.nonzero(ref.query_index == q)[0][0])
        assert (res.mask(i + 1) != ref.masks[row]).sum() == 0
        assert abs(float(res.scores[i]) - float(ref.scores[row])) < 1e-5
    with pytest.raises(ConfigError):
        EntitySegmenter.from_pretrained(
            oracle_dir / "tiny" / "weights.npz", preset="tiny_swin", mode="mask2former"
        )


def test_version_name_of_a_training_run_is_the_run():
    from pathlib import Path

    from entityseg_data.model.inference.predictor import _version_name

    assert _version_name(Path("runs/tiny/model")) == "tiny"
    assert _version_name(Path("converted/cropformer_swin_tiny_3x")) == "cropformer_swin_tiny_3x"
    assert (
        _version_name(Path("CropFormer_hornet_3x_03823a.pth")) == "CropFormer_hornet_3x_03823a.pth"
    )


def test_a_model_in_training_mode_runs_in_eval_mode_and_gets_each_mode_back(segmenters):
    """Prediction runs every module in eval mode (drop path, dropout off) and leaves each
    module's own mode as it was: a frozen submodule in eval mode under a training model stays
    in eval mode; a model in eval mode is not switched at all."""
    base = segmenters["tiny_hornet"]
    model = base.model
    # the shared model at a small view size (the modes, not the pixels, are checked here)
    seg = EntitySegmenter(
        model=model, config=base.config, options=base.options, min_size=64, max_size=80
    )
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    seen: list[bool] = []
    hook = model.register_forward_pre_hook(
        lambda m, _a: seen.append(any(x.training for x in m.modules()))
    )
    try:
        model.train()
        frozen = model.backbone
        frozen.eval()
        before = {name: m.training for name, m in model.named_modules()}
        assert any(before.values()) and not all(before.values())
        seg(image)
        assert seen == [False]
        assert {name: m.training for name, m in model.named_modules()} == before
        model.eval()
        seg(image)
        assert seen == [False, False]
        assert not any(m.training for m in model.modules())
    finally:
        hook.remove()
        model.eval()
