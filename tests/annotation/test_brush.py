"""The vectorised brush codec against the SDK's label_studio_sdk/converter/brush.py, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sdk_brush_support import sdk_brush

from entityseg_data.errors import DataError
from entityseg_data.masks.brush import (
    decode_brush,
    decode_brush_alpha,
    decode_brush_values,
    encode_brush,
)


class _Sdk:
    """The SDK's brush module (the reference), loaded when a test first needs it, from its own
    file (tests/sdk_brush_support.py: importing label_studio_sdk.converter pulls nltk and
    scipy.stats, about 2 s, which neither collection nor these tests need)."""

    def __getattr__(self, name: str):
        return getattr(sdk_brush(), name)


sdk = _Sdk()


def blob_mask(h: int, w: int, seed: int) -> np.ndarray:
    """A realistic mask: a few smooth blobs with wiggly boundaries and a hole."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w), np.float32)
    for _ in range(4):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.1, 0.3) * min(h, w)
        field += np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
    field += 0.05 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    return (field > 0.5).astype(np.uint8)


@pytest.mark.parametrize("seed", range(40))
def test_random_masks_match_sdk(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 60, 2))
    mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    if seed % 5 == 0:
        mask[:] = seed % 2
    ref = sdk.mask2rle(mask * 255)
    assert encode_brush(mask) == ref
    assert np.array_equal(decode_brush(ref, h, w), mask)
    assert np.array_equal(decode_brush_values(ref), sdk.decode_rle(ref))


@pytest.mark.parametrize(("h", "w"), [(1, 70000), (257, 255), (480, 640)])
def test_long_runs_and_realistic_masks(h, w):
    mask = blob_mask(h, w, 3) if h > 1 else (np.arange(w) > 30000).astype(np.uint8)[None]
    ref = sdk.mask2rle(mask * 255)
    assert encode_brush(mask) == ref
    assert np.array_equal(decode_brush(ref, h, w), mask)


def test_bool_and_label_inputs_are_binarised():
    m = np.zeros((5, 6), bool)
    m[1:3, 2:5] = True
    assert encode_brush(m) == encode_brush(m.astype(np.uint8) * 7)


def test_literal_blocks_and_other_alpha_values_decode_like_the_sdk():
    rng = np.random.default_rng(1)
    values = np.repeat(rng.integers(0, 256, 60).astype(np.uint8), rng.integers(1, 4, 60))
    values = values[: (values.size // 4) * 4]
    ref = sdk.encode_rle(values)  # runs of 1 become literal blocks
    assert np.array_equal(decode_brush_values(ref), values)
    n = values.size // 4
    alpha = decode_brush_alpha(ref, 1, n)
    assert np.array_equal(alpha.ravel(), values[3::4])
    assert np.array_equal(decode_brush(ref, 1, n).ravel(), (values[3::4] != 0).astype(np.uint8))


def test_size_mismatch_and_garbage_are_clear_errors():
    rle = encode_brush(np.ones((4, 5), np.uint8))
    with pytest.raises(DataError, match="expected 5x5x4"):
        decode_brush(rle, 5, 5)
    with pytest.raises(DataError):
        decode_brush([1, 2, 3], 2, 2)
    with pytest.raises(DataError, match="malformed|ends"):
        decode_brush(rle[:8], 4, 5)


@pytest.mark.slow
def test_12mp_round_trip_bit_exact():
    h, w = 3000, 4000
    mask = blob_mask(h, w, 7)
    rle = encode_brush(mask)
    assert rle == sdk.mask2rle(mask * 255)
    assert np.array_equal(decode_brush(rle, h, w), mask)


@pytest.mark.parametrize("seed", range(10))
def test_run_based_encoder_and_pixel_runs(seed):
    from entityseg_data.masks.brush import brush_pixel_runs, encode_brush_runs

    rng = np.random.default_rng(100 + seed)
    h, w = (int(v) for v in rng.integers(1, 50, 2))
    mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    rle = encode_brush(mask)
    starts, lengths = brush_pixel_runs(rle, h, w)
    dense = np.zeros(h * w, np.uint8)
    for s0, n in zip(starts, lengths):
        dense[s0 : s0 + n] = 1
    assert np.array_equal(dense.reshape(h, w), mask)
    # split the runs into touching pieces: the encoder must merge them back
    pieces_s, pieces_l = [], []
    for s0, n in zip(starts, lengths):
        cut = int(rng.integers(0, n)) if n > 1 else 0
        if cut:
            pieces_s += [s0, s0 + cut]
            pieces_l += [cut, n - cut]
        else:
            pieces_s.append(s0)
            pieces_l.append(n)
    assert encode_brush_runs(np.array(pieces_s), np.array(pieces_l), h * w) == rle
