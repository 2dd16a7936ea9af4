"""``benchmarks/bench_fast_paths.py``: whole predictions with the fast paths on and off."""

from __future__ import annotations

import importlib

import pytest
from inference_helpers import load_benchmark


def _bench():
    return load_benchmark("bench_fast_paths")


def test_only_the_named_switches_flip() -> None:
    """``--only NAME``: that switch alone is turned off, and back on after."""
    bench = _bench()
    pixel_decoder = importlib.import_module("entityseg_data.model.pixel_decoder")
    hornet = importlib.import_module("entityseg_data.model.backbones.hornet")
    fast_ffn, fast_products = pixel_decoder._packed_ffn, hornet._packed_products
    switches = bench.Switches(["_packed_ffn"])
    switches.set(False)
    try:
        assert pixel_decoder._packed_ffn is not fast_ffn
        assert hornet._packed_products is fast_products
    finally:
        switches.set(True)
    assert pixel_decoder._packed_ffn is fast_ffn


@pytest.mark.slow  # ~15 CPU s: a tiny model predicted 4 times
def test_fast_paths_on_and_off_alternate_and_are_restored() -> None:
    bench = _bench()
    before = [getattr(importlib.import_module(m), n) for m, n, _ in bench.SWITCHES]
    res = bench.compare("tiny_hornet", (96, 128), rounds=1)
    after = [getattr(importlib.import_module(m), n) for m, n, _ in bench.SWITCHES]
    assert all(a is b for a, b in zip(before, after, strict=True))  # switched back on
    runs = res["runs"]
    assert [r[0] for r in runs] == ["on", "off"]
    for _, cpu, stages, rate in runs:
        assert cpu > 0 and rate > 0
        assert set(stages) >= {"backbone", "pixel_decoder", "decoder", "post"}
    # the fast paths change values by float rounding only: the labels agree (a pixel whose
    # logit sits within rounding of the cut may flip)
    assert res["differing_pixels"] <= 0.001 * 96 * 128
