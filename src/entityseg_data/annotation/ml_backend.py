"""A Label Studio ML backend (stdlib HTTP server) serving any segmenter's masks as pre-annotations.

Protocol (what Label Studio calls): ``GET /health`` -> ``{"status": "UP", ...}``;
``POST /setup`` -> ``{"model_version": ...}``; ``POST /predict`` with ``{"tasks": [...],
"params": {"context": ...}}`` -> ``{"results": [{"model_version", "score", "result": [...]}]}``,
one prediction per task, brush results (``from_name`` = the stage-1 brush) with the image's
original size. With an interactive ``context`` (the annotator's keypoint or rectangle prompts, in
percent), only the predicted entities under the prompts are returned (click an entity, get its
mask).

A *segmenter* is any callable ``image (H, W, 3) uint8 -> masks``, returning either an object with
``label_map`` ((H, W) ints, 0 = none) and ``scores`` (like the bundled CropFormer's
``EntitySegmenter`` results) or a list of ``(mask, score)`` pairs. :func:`felzenszwalb_segmenter`
is a non-learned one (scikit-image graph segmentation, non-overlapping by construction) that keeps
the backend usable and testable without model weights; the bundled model is loaded by the API
(:func:`entityseg_data.api.segmenters.load_segmenter`; this stage does not import ``model``).
Segmentations are cached per image (LRU) so interactive prompts are cheap.

Images are read from the workspace (``/data/local-files/?d=`` URLs resolved under the document
root) or fetched from Label Studio with a token.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from entityseg_data.annotation.labelstudio import configs
from entityseg_data.annotation.labelstudio.format import brush_rle_result, label_map_adjacency
from entityseg_data.errors import DataError
from entityseg_data.masks.brush import brush_rles_of_label_map
from entityseg_data.masks.runs import paint_masks

log = logging.getLogger(__name__)

Segmenter = Callable[[np.ndarray], Any]


# ------------------------------------------------------------------------------------ segmenters
def felzenszwalb_segmenter(
    *, scale: float = 200.0, sigma: float = 0.8, min_size: int = 50, max_side: int = 512
) -> Segmenter:
    """A non-learned segmenter: Felzenszwalb's graph segmentation on a copy resized to
    ``max_side``, labels upsampled (nearest) to full resolution; score = 1 - 1 / (1 + area%)."""

    def segment(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image
        from skimage.segmentation import felzenszwalb

        h, w = image.shape[:2]
        f = min(1.0, max_side / max(h, w))
        small = image
        if f < 1.0:
            size = (max(1, round(w * f)), max(1, round(h * f)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        labels = felzenszwalb(small, scale=scale, sigma=sigma, min_size=min_size) + 1
        if f < 1.0:
            rows = np.minimum((np.arange(h) * small.shape[0]) // h, small.shape[0] - 1)
            cols = np.minimum((np.arange(w) * small.shape[1]) // w, small.shape[1] - 1)
            labels = labels[rows[:, None], cols[None, :]]
        ids, counts = np.unique(labels, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        remap = np.zeros(int(ids.max()) + 1, np.int32)
        remap[ids[order]] = np.arange(1, len(ids) + 1)
        lm = remap[labels].astype(np.int32)
        frac = counts[order] / float(h * w) * 100
        return lm, 1.0 - 1.0 / (1.0 + frac)

    return segment


def as_label_map(output: Any, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(label map, scores) of a segmenter's output (see the module docstring)."""
    if hasattr(output, "label_map"):
        lm, scores = np.asarray(output.label_map), np.asarray(output.scores, dtype=np.float64)
    elif isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], np.ndarray):
        lm, scores = output[0], np.asarray(output[1], dtype=np.float64)
    else:
        pairs = list(output)
        # the mask core's label map; later masks do not overwrite earlier ones
        lm = paint_masks(
            (mask for mask, _ in pairs),
            shape=(height, width),
            policy="earlier_wins",
            dtype=np.int32,
            where="segmenter output",
        )
        scores = np.array([float(score) for _, score in pairs], dtype=np.float64)
    if lm.shape != (height, width):
        raise DataError(f"segmenter returned a {lm.shape} label map for a {height}x{width} image")
    return lm, scores


# ------------------------------------------------------------------------------------ prompts
def _prompt_points(context: Mapping[str, Any] | None, h: int, w: int) -> list[tuple[int, int]]:
    pts = []
    for r in (context or {}).get("result", []) or []:
        v = r.get("value", {})
        if "x" in v and "y" in v and "width" not in v:
            pts.append((min(h - 1, int(v["y"] / 100 * h)), min(w - 1, int(v["x"] / 100 * w))))
    return pts


def _prompt_boxes(context: Mapping[str, Any] | None, h: int, w: int) -> list[tuple[int, ...]]:
    boxes: list[tuple[int, ...]] = []
    for r in (context or {}).get("result", []) or []:
        v = r.get("value", {})
        if {"x", "y", "width", "height"} <= set(v):
            x0, y0 = int(v["x"] / 100 * w), int(v["y"] / 100 * h)
            x1, y1 = int((v["x"] + v["width"]) / 100 * w), int((v["y"] + v["height"]) / 100 * h)
            boxes.append((y0, y1, x0, x1))
    return boxes


def select_by_prompts(
    lm: np.ndarray, context: Mapping[str, Any] | None, min_inside: float = 0.5
) -> list[int] | None:
    """Entity ids under the prompts (a clicked pixel, or >= ``min_inside`` of the area inside a
    box); None when there is no prompt."""
    h, w = lm.shape
    points, boxes = _prompt_points(context, h, w), _prompt_boxes(context, h, w)
    if not points and not boxes:
        return None
    chosen: list[int] = []
    for y, x in points:
        i = int(lm[y, x])
        if i and i not in chosen:
            chosen.append(i)
    if boxes:
        areas = np.bincount(lm.ravel())
        for y0, y1, x0, x1 in boxes:
            inside = np.bincount(lm[y0:y1, x0:x1].ravel(), minlength=areas.size)
            for i in np.flatnonzero(inside >= min_inside * np.maximum(areas, 1)):
                if i and int(i) not in chosen:
                    chosen.append(int(i))
    return chosen


# ------------------------------------------------------------------------------------ backend
class MLBackend:
    """Predictions for Label Studio tasks.

    Args:
        segmenter: see the module docstring.
        model_version: reported to Label Studio.
        document_root: resolves ``/data/local-files/?d=`` image URLs (the workspace root).
        ls_url/ls_token: fetch other image URLs from Label Studio (token never logged).
        min_area: entities smaller than this (pixels) are not returned.
        max_entities: at most this many entities per image (by score).
        cache_size: segmented images kept in memory.
    """

    def __init__(
        self,
        *,
        segmenter: Segmenter,
        model_version: str = "felzenszwalb",
        document_root: str | Path | None = None,
        ls_url: str | None = None,
        ls_token: str | None = None,
        min_area: int = 64,
        max_entities: int = 200,
        cache_size: int = 8,
    ) -> None:
        self.segmenter = segmenter
        self.model_version = model_version
        self.document_root = Path(document_root).resolve() if document_root else None
        self.ls_url = ls_url
        self._ls_token = ls_token
        self.min_area = min_area
        self.max_entities = max_entities
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def load_image(self, url: str) -> np.ndarray:

        from entityseg_data.io.images import ImageRejected, decode_bytes, read_image

        parsed = urlparse(url)
        if parsed.path.startswith("/data/local-files") and self.document_root is not None:
            rel = unquote(parse_qs(parsed.query).get("d", [""])[0])
            path = (self.document_root / rel).resolve()
            if not path.is_relative_to(self.document_root):
                raise DataError(f"image path {rel!r} escapes the document root")
            return read_image(path)
        if not self.ls_url or not self._ls_token:
            raise DataError(f"cannot load {url}: no document root and no Label Studio token")
        from entityseg_data.annotation.labelstudio.client import LabelStudioClient

        client = LabelStudioClient(url=self.ls_url, token=self._ls_token)
        r = client.request("GET", url, expect_json=False)
        try:
            return decode_bytes(r.content).array()
        except ImageRejected as exc:
            raise DataError(f"{url}: not a readable image: {exc.message}") from None

    def segment(self, url: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if url in self._cache:
                self._cache.move_to_end(url)
                return self._cache[url]
        image = self.load_image(url)
        lm, scores = as_label_map(self.segmenter(image), image.shape[0], image.shape[1])
        with self._lock:
            self._cache[url] = (lm, scores)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return lm, scores

    def predict_task(
        self, task: Mapping[str, Any], context: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        data = task.get("data") or {}
        url = data.get(configs.IMAGE) or next(
            (v for v in data.values() if isinstance(v, str) and v.startswith(("/", "http"))), None
        )
        if not url:
            raise DataError(f"task {task.get('id')}: no image URL in its data")
        lm, scores = self.segment(str(url))
        h, w = lm.shape
        areas = np.bincount(lm.ravel(), minlength=len(scores) + 1)
        ids = select_by_prompts(lm, context)
        if ids is None:
            ids = [i for i in range(1, len(scores) + 1) if areas[i] >= self.min_area]
            ids = sorted(ids, key=lambda i: -scores[i - 1])[: self.max_entities]
        # brush RLEs from the row-major label map's runs (one pass, no dense masks)
        brushes = brush_rles_of_label_map(lm, ids) if ids else {}
        # palette display labels: touching entities get different colours (all one class)
        palette = configs.palette_labels(label_map_adjacency(lm), int(lm.max()), 1)
        results = []
        for i in ids:
            results.append(
                brush_rle_result(
                    f"ml{task.get('id', 't')}_{i}",
                    brushes[i],
                    height=h,
                    width=w,
                    label=palette[i - 1],
                    score=float(scores[i - 1]),
                )
            )
        mean = float(np.mean([scores[i - 1] for i in ids])) if ids else 0.0
        return {"model_version": self.model_version, "score": mean, "result": results}

    def predict(self, body: Mapping[str, Any]) -> dict[str, Any]:
        tasks = body.get("tasks") or []
        context = (body.get("params") or {}).get("context") or body.get("context")
        return {
            "results": [self.predict_task(t, context) for t in tasks],
            "model_version": self.model_version,
        }


def _handler(backend: MLBackend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "entityseg-ml-backend"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("ml backend: " + fmt, *args)

        def _send(self, code: int, obj: Any) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b"{}"
            return json.loads(raw or b"{}")

        def do_GET(self) -> None:
            path = urlparse(self.path).path.rstrip("/")
            if path in ("", "/health"):
                self._send(
                    200,
                    {
                        "status": "UP",
                        "model_class": "EntitySegMLBackend",
                        "model_version": backend.model_version,
                    },
                )
            else:
                self._send(404, {"error": f"no route {path}"})

        def do_POST(self) -> None:
            path = urlparse(self.path).path.rstrip("/")
            try:
                body = self._body()
                if path == "/setup":
                    self._send(200, {"model_version": backend.model_version})
                elif path == "/predict":
                    self._send(200, backend.predict(body))
                elif path == "/webhook":
                    self._send(200, {"status": "ignored"})
                else:
                    self._send(404, {"error": f"no route {path}"})
            except (DataError, ValueError, KeyError, OSError) as exc:
                log.warning("ml backend %s failed: %s", path, exc)
                self._send(500, {"error": str(exc)})

    return Handler


class MLBackendServer:
    """The backend on ``host:port`` in a background thread (``port=0`` picks a free port)."""

    def __init__(self, backend: MLBackend, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.backend = backend
        self.httpd = ThreadingHTTPServer((host, port), _handler(backend))
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    def start(self) -> MLBackendServer:
        """Serve in a background thread (a no-op when already serving: ``start_ml_backend``
        returns a started server, and ``with`` must not start a second loop that ``stop`` would
        leave running)."""
        if self.thread is not None:
            return self
        # stop() returns within one poll interval (serve_forever's default is 0.5 s)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def __enter__(self) -> MLBackendServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def register(client: Any, project_id: int, url: str, title: str = "entityseg") -> dict[str, Any]:
    """Connect the backend to a project (Label Studio checks /health and /setup); idempotent."""
    for b in client.ml_backends(project_id):
        if b.get("url", "").rstrip("/") == url.rstrip("/"):
            return b
    return client.add_ml_backend(project_id, url, title=title)


__all__ = [
    "MLBackend",
    "MLBackendServer",
    "as_label_map",
    "felzenszwalb_segmenter",
    "register",
    "select_by_prompts",
]
