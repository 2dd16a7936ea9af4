"""``EntitySegmenter(precision=...)``: the faster-than-fp32 options run end to end on the tiny
oracle HorNet model and really change the computation; the refusals and the bf16 hint.

Speed and agreement with fp32 are measured by ``benchmarks/bench_model.py --variants`` (see
docs/benchmarks.md, issue 17), not asserted here: they depend on the CPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from entityseg_data.errors import ConfigError
from entityseg_data.model.inference.predictor import EntitySegmenter

SIZES = dict(min_size=256, max_size=352)


def _segmenter(oracle_dir, precision: str) -> EntitySegmenter:
    return EntitySegmenter.from_pretrained(
        oracle_dir / "tiny_hornet" / "weights.npz",
        preset="tiny_hornet",
        score_mode="reference",
        score_thresh=0.0,
        min_area=0,
        precision=precision,
        **SIZES,
    )


@pytest.fixture(scope="module")
def image(oracle_dir) -> np.ndarray:
    return np.asarray(Image.open(oracle_dir / "images" / "img_a_480x640.png").convert("RGB"))


def _check_result(res, image: np.ndarray) -> None:
    """A valid result of the whole image: entities 1..n in the label map, each with its area."""
    assert (res.height, res.width) == image.shape[:2]
    assert len(res) > 0
    label = res.label_map
    assert label.shape == image.shape[:2]
    ids, counts = np.unique(label[label > 0], return_counts=True)
    assert ids.tolist() == list(range(1, len(res) + 1))
    assert np.array_equal(counts, res.areas)


def test_int8_quantizes_the_linear_layers_and_segments(oracle_dir, image):
    import torch

    seg = _segmenter(oracle_dir, "int8")
    kinds = {type(m) for m in seg.model.modules()}
    assert torch.nn.Linear not in kinds
    assert torch.ao.nn.quantized.dynamic.Linear in kinds
    _check_result(seg(image), image)


def test_bf16_runs_the_model_under_bf16_autocast(oracle_dir, image):
    import torch

    seg = _segmenter(oracle_dir, "bf16")
    seen: set[torch.dtype] = set()

    def record(_module, _inputs, output):
        seen.add(output.dtype)

    hooks = [
        m.register_forward_hook(record)
        for m in seg.model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    try:
        res = seg(image)
    finally:
        for h in hooks:
            h.remove()
    assert torch.bfloat16 in seen  # autocast was on for the model's products
    _check_result(res, image)


@pytest.mark.parametrize(
    ("precision", "device", "message"),
    [
        ("fp8", "cpu", "precision must be one of"),
        ("fp16", "cpu", "needs a GPU"),
        ("int8", "cuda", "runs on CPU only"),
    ],
)
def test_unsupported_precisions_are_refused(precision, device, message):
    import torch

    from entityseg_data.model.loading import build_model
    from entityseg_data.model.presets import get_preset

    cfg = get_preset("tiny_hornet")
    with torch.device("meta"):
        model = build_model(cfg)
    with pytest.raises(ConfigError, match=message):
        EntitySegmenter(model=model, config=cfg, device=device, precision=precision)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_bf16_instructions_warns(monkeypatch, caplog, native):
    """A fake capability probe (the machine's own CPU decides the real one): without bf16
    instructions autocast is emulated, several times slower than fp32, and the user is told
    once."""
    import torch

    from entityseg_data.model.inference.predictor import _warn_emulated_bf16
    from entityseg_data.model.loading import build_model
    from entityseg_data.model.presets import get_preset
    from entityseg_data.model.runtime import cpu_bf16_native

    _warn_emulated_bf16.cache_clear()  # said once per process: this test starts afresh
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native, raising=False)
    assert cpu_bf16_native() is native
    cfg = get_preset("tiny_hornet")
    with torch.device("meta"):
        model = build_model(cfg)
    with caplog.at_level(logging.WARNING, logger="entityseg_data.model.inference.predictor"):
        seg = EntitySegmenter(model=model, config=cfg, precision="bf16")
        seg.with_options(score_thresh=0.3)  # a derived segmenter does not repeat it
        EntitySegmenter(model=model, config=cfg, precision="fp32")
    hints = [r for r in caplog.records if "no bf16 instructions" in r.getMessage()]
    assert len(hints) == (0 if native else 1)
