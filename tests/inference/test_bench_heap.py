"""``benchmarks/bench_heap.py``: live heap, heap size and RSS per stage of one prediction."""

from __future__ import annotations

import ctypes
import importlib

import pytest
from inference_helpers import load_benchmark

pytestmark = pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc >= 2.33 (mallinfo2)"
)


@pytest.mark.slow  # ~5 CPU s: a tiny model predicted once
def test_heap_per_stage_of_a_tiny_prediction_and_switch_restored() -> None:
    bench = load_benchmark("bench_heap")
    hornet = importlib.import_module("entityseg_data.model.backbones.hornet")
    fast = hornet._filter_by_products
    rows = bench.measure("tiny_hornet", (96, 128), threads=1, off=["_filter_by_products"])
    assert hornet._filter_by_products is fast  # switched back on
    # every stage has samples (taken at its start and end, whatever its length)
    assert set(rows) == {"before", "pre", "backbone", "pixel_decoder", "decoder", "post", "total"}
    for stage, r in rows.items():
        # glibc's live bytes are part of its heap; the heap is resident memory or less
        assert 0 < r["live_gb"] <= r["heap_gb"], stage
        assert r["rss_gb"] > 0, stage
    total = rows["total"]
    for stage, r in rows.items():
        if stage != "before":
            assert r["live_gb"] <= total["live_gb"] and r["heap_gb"] <= total["heap_gb"]
    # the prediction allocated something on top of the loaded model
    assert total["live_gb"] > rows["before"]["live_gb"]
