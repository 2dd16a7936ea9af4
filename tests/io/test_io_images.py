"""io.images: the one decoder's rules (EXIF, modes, 16-bit, alpha over white, limits, errors)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from image_support import stored_with_orientation
from PIL import Image

from entityseg_data.errors import DataError
from entityseg_data.io import images as im_io


def _save(path, im: Image.Image, fmt: str, **kw) -> None:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    path.write_bytes(buf.getvalue())


def _content(h: int, w: int) -> np.ndarray:
    """(H, W, 3) uint8 with distinct rows and columns (orientation mistakes show)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 7 * 30], -1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_makes_pixels_upright(tmp_path, orientation):
    upright = _content(20, 30).astype(np.uint8)
    stored, exif = stored_with_orientation(upright, orientation)
    _save(tmp_path / "a.png", stored, "PNG", exif=exif)
    dec = im_io.decode_file(tmp_path / "a.png", expect_hw=(20, 30))
    assert np.array_equal(dec.array(), upright)
    assert dec.size.orientation == orientation and (dec.size.height, dec.size.width) == (20, 30)
    size = im_io.image_size(tmp_path / "a.png")
    assert (size.height, size.width, size.orientation) == (20, 30, orientation)
    # masks drawn on the raw pixels are turned the same way
    raw = np.asarray(stored)
    assert np.array_equal(im_io.orient_array(raw, orientation), upright)


def test_16bit_gray_scaled_by_bit_depth_not_stretched(tmp_path):
    a = np.array([[0, 257 * 10, 65535, 257 * 128]], np.uint16)
    _save(tmp_path / "g16.png", Image.fromarray(a), "PNG")
    got = im_io.read_image(tmp_path / "g16.png")
    assert got.shape == (1, 4, 3) and got[0, :, 0].tolist() == [0, 10, 255, 128]
    # a 16-bit file whose values all fit in 8 bits is not scaled down
    _save(tmp_path / "low.png", Image.fromarray(np.array([[0, 7, 200]], np.uint16)), "PNG")
    assert im_io.read_image(tmp_path / "low.png")[0, :, 1].tolist() == [0, 7, 200]


def test_alpha_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # transparent: white
    rgba[1, 0] = (0, 0, 0, 128)  # half black: mid gray
    _save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA"), "PNG")
    dec = im_io.decode_file(tmp_path / "a.png")
    got = dec.array()
    assert got[0, 0].tolist() == [255, 0, 0] and got[0, 1].tolist() == [255, 255, 255]
    assert 120 <= got[1, 0, 0] <= 130 and "alpha" in dec.changes


def test_palette_cmyk_gray_and_gif_frames(tmp_path):
    rgb = _content(8, 12).astype(np.uint8)
    _save(tmp_path / "c.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=100)
    assert np.abs(im_io.read_image(tmp_path / "c.jpg").astype(int) - rgb).mean() < 8
    _save(tmp_path / "l.png", Image.fromarray(rgb[..., 0]), "PNG")
    got = im_io.read_image(tmp_path / "l.png")
    assert np.array_equal(got[..., 2], rgb[..., 0])
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    (tmp_path / "anim.gif").write_bytes(buf.getvalue())
    dec = im_io.decode_file(tmp_path / "anim.gif")
    assert "first_frame" in dec.changes and dec.array()[0, 0, 0] > 200


def test_bad_files_give_one_error_naming_the_file(tmp_path):
    rgb = _content(64, 64).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match="cut.jpg: truncated image"):
        im_io.read_image(tmp_path / "cut.jpg")
    (tmp_path / "text.jpg").write_text("<html>")
    with pytest.raises(DataError, match="text.jpg: not a readable image"):
        im_io.read_image(tmp_path / "text.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty.png: not an image"):
        im_io.read_image(tmp_path / "empty.png")
    os.mkfifo(tmp_path / "fifo.jpg")
    with pytest.raises(DataError, match="fifo.jpg: not a regular file"):
        im_io.read_image(tmp_path / "fifo.jpg")
    with pytest.raises(DataError, match="fifo.jpg: not a regular file"):
        im_io.image_size(tmp_path / "fifo.jpg")
    (tmp_path / "ok.jpg").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"ok.jpg: image is 64x64 \(upright\), the annotations say"):
        im_io.read_image(tmp_path / "ok.jpg", expect_hw=(64, 65))
    with pytest.raises(DataError, match="ok.jpg: too large: 64x64 = 4096 pixels > max_pixels"):
        im_io.read_image(tmp_path / "ok.jpg", limits=im_io.ImageLimits(max_pixels=4000))
    with pytest.raises(DataError, match="ok.jpg: too large: 64x64"):
        im_io.image_size(tmp_path / "ok.jpg", limits=im_io.ImageLimits(max_pixels=4000))
    with pytest.raises(DataError, match="over the limit of 100 bytes"):
        im_io.read_image(tmp_path / "ok.jpg", limits=im_io.ImageLimits(max_bytes=100))
    with pytest.raises(DataError, match="cut.jpg: truncated"):
        im_io.check_image(tmp_path / "cut.jpg")
    assert im_io.check_image(tmp_path / "ok.jpg").height == 64


def test_arrays_and_pil_images():
    arr, src = im_io.as_rgb_array(np.full((3, 4), 7, np.uint16))
    assert arr.shape == (3, 4, 3) and arr.dtype == np.uint8 and src is None
    arr, _ = im_io.as_rgb_array(np.full((2, 2, 3), 0.5, np.float32))
    assert arr[0, 0, 0] == 128
    arr, _ = im_io.as_rgb_array(Image.new("LA", (2, 2), (0, 0)))
    assert arr[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(DataError, match="expected an"):
        im_io.as_rgb_array(np.zeros((2, 2, 5)))
