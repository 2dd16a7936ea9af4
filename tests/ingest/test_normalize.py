"""Normalisation: EXIF orientation, mode conversions, bombs, corrupt files, pHash stability."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from entityseg_data.ingest.dedupe import hamming
from entityseg_data.ingest.magic import sniff_mime
from entityseg_data.ingest.normalize import ImageRejected, decode


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def test_plain_rgb_jpeg_needs_no_copy(images):
    data = images.jpeg(400, 300, seed=1)
    d = decode(data, max_pixels=10**8)
    assert (d.width, d.height, d.orientation, d.mime) == (400, 300, 1, "image/jpeg")
    assert d.normalized is None and d.changes == ()
    assert len(d.phash) == 16


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_applied_to_pixels(images, orientation):
    upright = images.smooth_rgb(200, 120, seed=orientation)  # (H=120, W=200)
    data = images.jpeg_with_orientation(upright, orientation)
    d = decode(data, max_pixels=10**8)
    assert d.orientation == orientation
    assert (d.width, d.height) == (200, 120)
    swapped = orientation in (5, 6, 7, 8)
    assert (d.raw_width, d.raw_height) == ((120, 200) if swapped else (200, 120))
    assert d.normalized is not None and d.normalized_ext == ".jpg"
    got = _pixels(d.normalized)
    assert got.shape == upright.shape
    assert np.abs(got - upright.astype(np.int16)).mean() < 4  # JPEG noise only
    # the pHash is computed upright: same as the plain upright JPEG
    plain = decode(images.encode(upright, "JPEG", quality=92), max_pixels=10**8)
    assert hamming(plain.phash, d.phash) <= 2


def test_cmyk_jpeg_converted(images):
    rgb = images.smooth_rgb(160, 120, seed=3)
    data = images.encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    d = decode(data, max_pixels=10**8)
    assert d.mode == "CMYK" and "mode:CMYK" in d.changes
    got = _pixels(d.normalized)
    assert np.abs(got - rgb.astype(np.int16)).mean() < 8


def test_16bit_rgb_png_scaled_not_clipped(images):
    data, expected_row = images.png16_rgb(64, 8)
    d = decode(data, max_pixels=10**8)
    assert "16bit->8bit" in d.changes and d.normalized_ext == ".png"
    got = _pixels(d.normalized)
    assert got.shape == (8, 64, 3)
    assert np.abs(got[0] - expected_row).max() <= 1.0


def test_16bit_gray_png_scaled(images):
    ramp = np.tile(np.linspace(0, 65535, 100).astype(np.uint16), (10, 1))
    data = images.encode(Image.fromarray(ramp), "PNG")
    d = decode(data, max_pixels=10**8)
    assert d.mode.startswith("I") and any("8bit" in c for c in d.changes)
    got = _pixels(d.normalized)
    assert got[..., 0].max() == 255 and got[..., 0].min() == 0
    assert np.abs(got[0, :, 0] - ramp[0] / 257.0).max() <= 1.0


def test_palette_and_grayscale_become_rgb(images):
    rgb = images.smooth_rgb(80, 60, seed=4)
    pal = decode(images.encode(Image.fromarray(rgb).convert("P"), "PNG"), max_pixels=10**8)
    assert "mode:P" in pal.changes and pal.normalized_ext == ".png"
    gray = decode(images.encode(Image.fromarray(rgb).convert("L"), "PNG"), max_pixels=10**8)
    assert "mode:L" in gray.changes
    assert _pixels(gray.normalized).shape == (60, 80, 3)


def test_alpha_composited_over_white(images):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :15, 3] = 255  # left half opaque red-ish, right half transparent
    d = decode(images.encode(Image.fromarray(rgba, "RGBA"), "PNG"), max_pixels=10**8)
    assert "alpha" in d.changes
    got = _pixels(d.normalized)
    assert tuple(got[5, 5]) == (200, 0, 0)
    assert tuple(got[5, 25]) == (255, 255, 255)


def test_truncated_and_garbage_rejected(images):
    data = images.jpeg(640, 480, seed=5)
    with pytest.raises(ImageRejected) as exc:
        decode(data[: len(data) // 2], max_pixels=10**8)
    assert exc.value.kind == "truncated"
    with pytest.raises(ImageRejected) as exc:
        decode(b"<html>not an image</html>", max_pixels=10**8)
    assert exc.value.kind == "not_image"
    png = images.encode(images.smooth_rgb(64, 64, 1), "PNG")
    with pytest.raises(ImageRejected) as exc:
        decode(png[: len(png) - 40], max_pixels=10**8)
    assert exc.value.kind in ("truncated", "decode_error")


def test_png_bomb_rejected_before_decoding(images):
    bomb = images.png_bomb(20000)
    assert len(bomb) < 2_000_000  # a highly compressible PNG
    with pytest.raises(ImageRejected) as exc:
        decode(bomb, max_pixels=178_956_970)
    assert exc.value.kind == "too_many_pixels"
    # a lower configured limit applies to ordinary images as well
    with pytest.raises(ImageRejected) as exc:
        decode(images.jpeg(400, 300), max_pixels=100_000)
    assert exc.value.kind == "too_many_pixels"


def test_magic_numbers(images):
    assert sniff_mime(images.jpeg(8, 8)) == "image/jpeg"
    assert sniff_mime(images.encode(images.smooth_rgb(8, 8, 0), "PNG")) == "image/png"
    assert sniff_mime(images.encode(images.smooth_rgb(8, 8, 0), "WEBP")) == "image/webp"
    assert sniff_mime(b"GIF89a" + b"\0" * 10) == "image/gif"
    assert sniff_mime(b"<!DOCTYPE html>") is None


def test_phash_robust_to_reencoding_and_distinct_images(images):
    rgb = images.smooth_rgb(800, 600, seed=7)
    a = decode(images.encode(rgb, "JPEG", quality=95), max_pixels=10**8)
    b = decode(images.encode(rgb, "JPEG", quality=60), max_pixels=10**8)
    c = decode(images.encode(rgb, "PNG"), max_pixels=10**8)
    small = decode(
        images.encode(Image.fromarray(rgb).resize((400, 300)), "JPEG", quality=80),
        max_pixels=10**8,
    )
    other = decode(images.jpeg(800, 600, seed=8), max_pixels=10**8)
    assert hamming(a.phash, b.phash) <= 2
    assert hamming(a.phash, c.phash) <= 2
    assert hamming(a.phash, small.phash) <= 4
    assert hamming(a.phash, other.phash) > 10
