"""Fixtures for the ingest tests: image factories, a loopback HTTP server with faults, and a
tiny untrained open_clip model (no weights anywhere)."""

from __future__ import annotations

import functools
import io
import json
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from image_support import stored_with_orientation
from PIL import Image

TINY_CLIP = "entityseg-test-tiny-clip"
TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


# ---------------------------------------------------------------------------- images
def smooth_rgb(width: int, height: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 smooth random content (upsampled noise): cheap, compressible, and
    distinct per seed for perceptual hashing."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8))
    return np.asarray(small.resize((width, height), Image.BILINEAR))


def encode(arr_or_im, fmt: str = "JPEG", **kwargs) -> bytes:
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg(width: int = 320, height: int = 240, seed: int = 0, quality: int = 90) -> bytes:
    return encode(smooth_rgb(width, height, seed), "JPEG", quality=quality)


def jpeg_with_orientation(upright: np.ndarray, orientation: int, quality: int = 92) -> bytes:
    """A JPEG whose stored pixels are ``upright`` rotated so that applying EXIF
    ``orientation`` brings them back upright."""
    stored, exif = stored_with_orientation(upright, orientation)
    return encode(stored, "JPEG", quality=quality, exif=exif)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def raw_png(width: int, height: int, bit_depth: int, color_type: int, row: bytes) -> bytes:
    """A PNG whose every scanline is ``row`` (filter byte included), compressed streaming."""
    comp = zlib.compressobj(9)
    parts = []
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


@functools.cache
def png_bomb(side: int = 20000) -> bytes:
    """A side x side 1-bit grayscale PNG of zeros: a few KB on the wire, 400 MP if decoded
    (built once per side: 20000 scanlines compressed take ~0.25 CPU s)."""
    return raw_png(side, side, 1, 0, b"\x00" * (1 + (side + 7) // 8))


def png16_rgb(width: int, height: int) -> tuple[bytes, np.ndarray]:
    """A 16-bit RGB PNG with a horizontal ramp; returns (bytes, expected 8-bit row (W, 3))."""
    ramp = np.linspace(0, 65535, width).astype(">u2")
    px = np.stack([ramp, ramp[::-1], np.full(width, 32768, ">u2")], axis=1)  # (W, 3)
    row = b"\x00" + px.astype(">u2").tobytes()
    return raw_png(width, height, 16, 2, row), (px.astype(np.float64) / 257.0)


@pytest.fixture()
def images():
    """The image factory functions, for tests that build their own bytes."""

    class _F:
        smooth_rgb = staticmethod(smooth_rgb)
        encode = staticmethod(encode)
        jpeg = staticmethod(jpeg)
        jpeg_with_orientation = staticmethod(jpeg_with_orientation)
        png_bomb = staticmethod(png_bomb)
        png16_rgb = staticmethod(png16_rgb)
        raw_png = staticmethod(raw_png)

    return _F


# ---------------------------------------------------------------------------- HTTP server
class _State:
    def __init__(self) -> None:
        self.routes: dict[str, tuple] = {}
        self.hits: dict[str, int] = {}
        self.sent: dict[str, int] = {}  # body bytes sent by the trickle route
        self.log: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.delay = 0.0
        # requests after the first `hold_after` (all paths) wait until `release` is set: a client
        # can then be killed mid-run without racing it (a stopped server thread is not a timing)
        self.hold_after: int | None = None
        self.release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server_version = "FaultyImageServer/1"
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is exercised

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        st: _State = self.server.state  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        with st.lock:
            st.hits[path] = st.hits.get(path, 0) + 1
            st.log.append((path, time.monotonic()))
            hit = st.hits[path]
            held = st.hold_after is not None and len(st.log) > st.hold_after
        if held:
            st.release.wait(timeout=600)
        if st.delay:
            time.sleep(st.delay)
        route = st.routes.get(path)
        if route is None:
            self.send_error(404)
            return
        kind, *args = route
        if kind == "ok":
            body, ctype = args
            self._send(200, body, ctype)
        elif kind == "status":
            self.send_response(args[0])
            if len(args) > 1:
                self.send_header("Retry-After", str(args[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "flaky":  # fail `n` times with `code`, then serve the body
            n, code, body, ctype = args
            if hit <= n:
                self.send_response(code)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send(200, body, ctype)
        elif kind == "slow":
            seconds, body, ctype = args
            time.sleep(seconds)
            self._send(200, body, ctype)
        elif kind == "truncated":
            body, ctype = args
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif kind == "redirect":
            self.send_response(302)
            self.send_header("Location", args[0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "drip":  # headers at once, then the body in slow pieces
            pause, body, ctype = args
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = max(1, len(body) // 10)
            try:
                for i in range(0, len(body), step):
                    self.wfile.write(body[i : i + step])
                    self.wfile.flush()
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif kind == "trickle":  # `piece` bytes every `pause` s, endlessly, counted in st.sent
            piece, pause = args
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")  # no length: the body ends at the close
            self.end_headers()
            self.close_connection = True
            try:
                while True:
                    self.wfile.write(b"\xff" * piece)
                    self.wfile.flush()
                    with st.lock:
                        st.sent[path] = st.sent.get(path, 0) + piece
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif kind == "huge_header":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(args[0]))
            self.end_headers()
            self.close_connection = True
        else:
            self.send_error(500)

    def _send(self, code: int, body: bytes, ctype: str | None) -> None:
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-body (a download aborted over ``max_bytes``, a timeout) is
    expected here: socketserver's default prints the BrokenPipe/ConnectionReset traceback to
    ``sys.stderr``, which, when it comes late, lands in the output a later test's ``CliRunner``
    is capturing (a ``--json`` output that no longer parses)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with configurable routes (see ``_Handler``)."""

    def __init__(self) -> None:
        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = _State()  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def state(self) -> _State:
        return self.httpd.state  # type: ignore[attr-defined]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def route(self, path: str, *spec) -> str:
        self.state.routes[path] = spec
        return self.url(path)

    def close(self) -> None:
        self.state.release.set()  # no handler thread left waiting
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


# ---------------------------------------------------------------------------- tiny CLIP
@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """Register a tiny open_clip config (random weights are built, nothing is downloaded);
    returns the model name."""
    import open_clip

    folder = tmp_path_factory.mktemp("tiny_clip")
    path = folder / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(path)
    return TINY_CLIP


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory, tiny_clip) -> Path:
    """A ``local-dir:`` folder holding the tiny model's config and (random, seeded) weights,
    as a user would provide real weights offline."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip_dir")
    torch.manual_seed(1)
    model = open_clip.create_model(tiny_clip, pretrained=None)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {}})
    )
    return folder
