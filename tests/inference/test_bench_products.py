"""``benchmarks/bench_model.py --products-alone``: the forward's FLOP-counted calls (products,
convolutions, attention) traced on the meta device and replayed alone on CPU, per stage."""

from __future__ import annotations

import pytest
from inference_helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_model")


@pytest.mark.slow  # ~4 CPU s: a model traced and ~100 calls replayed 4 times
def test_products_alone_replays_every_stage(bench) -> None:
    res = bench.products_alone("tiny_hornet", (96, 128), 1)
    assert set(res) == {"backbone", "pixel_decoder", "decoder"}
    for stage, r in res.items():
        assert r["calls"] > 0 and 0 < r["distinct"] <= r["calls"], stage
        assert r["cpu_s"] > 0, stage
    # the HorNet backbone per view: the stem conv, 3 downsampling convs, and per block
    # proj_in (2 products), the spatial mixer's depthwise conv, order-1 gate products,
    # proj_out and the MLP's two products; every view (the crops too) is traced
    from entityseg_data.model.presets import PRESETS

    hornet = PRESETS["tiny_hornet"].backbone
    per_view = 4 + sum(d * (5 + o) for d, o in zip(hornet.depths, hornet.gnconv_orders))
    views = bench.meta_model("tiny_hornet", (96, 128))[2].shape[1]
    assert res["backbone"]["calls"] == per_view * views


def test_products_table_rest_is_stage_minus_products(bench) -> None:
    row = {
        "preset": "p",
        "threads": 1,
        "impl": "ours",
        "variant": "fp32",
        "cpu_s": 10.0,
        "stages": {
            "backbone": {"cpu_s": 6.0},
            "pixel_decoder": {"cpu_s": 2.0},
            "decoder": {"cpu_s": 1.0},
        },
    }
    alone = {
        ("p", 1): {
            "backbone": {"cpu_s": 4.5},
            "pixel_decoder": {"cpu_s": 1.0},
            "decoder": {"cpu_s": 0.5},
        }
    }
    gflops = {"p": {"backbone": 450.0, "pixel_decoder": 100.0, "decoder": 50.0, "total": 600.0}}
    lines = bench.fmt_products([row], gflops, alone).splitlines()
    cells = {ln.split("|")[3].strip(): [c.strip() for c in ln.split("|")[4:-1]] for ln in lines[2:]}
    assert cells["backbone"] == ["450", "4.50", "100", "6.00", "75 %", "1.50"]
    assert cells["total"] == ["600", "6.00", "100", "10.00", "60 %", "4.00"]
