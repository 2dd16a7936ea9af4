"""A picture of a stage-1 Label Studio task with brush pre-annotations, taken in headless Chromium.

The test ingests one bundled photo, pre-annotates it with the demo's non-learned segmenter, pushes
stage 1 to the session's real Label Studio, logs in through the web form, opens the task in the
labeling editor and takes a screenshot over the Chrome DevTools protocol (``--remote-debugging-
pipe``: JSON messages on fds 3/4, so no websocket client is needed). It checks that the editor
loaded the prediction's brush regions and that the picture shows them.

Set ``ENTITYSEG_UPDATE_DOCS_IMG=1`` to also write ``docs/img/labelstudio_stage1_task.png`` (the
tutorial's picture). Skipped when no Chromium is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMG = ROOT / "docs" / "img" / "labelstudio_stage1_task.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VERSION = "baseline-felzenszwalb"

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser]

# fraction of non-transparent pixels of each canvas of the editor (the image itself is an <img>;
# Konva canvases hold the brush layers)
PAINTED_JS = """(() => Array.from(document.querySelectorAll('canvas')).map(c => {
  const w = c.width, h = c.height;
  if (!w || !h) return 0;
  const d = c.getContext('2d').getImageData(0, 0, w, h).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n / (w * h);
}))()"""


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """A minimal Chrome DevTools protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, executable: str, profile: Path, *, width: int, height: int) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def child_fds() -> None:  # runs in the child before exec: the pipe ends become fds 3, 4
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=child_fds,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._buf = b""
        self._messages: dict[int, dict] = {}
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session: str | None = None

    def _read(self) -> None:
        while True:
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                break
            self._buf += chunk
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        self._messages[msg["id"]] = msg
                        self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def send(self, method: str, timeout: float = 30.0, *, browser: bool = False, **params):
        """Send a command (to the attached page unless ``browser``) and return its result."""
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params}
        if self.session and not browser:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._next not in self._messages:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"no answer to {method} from Chromium")
                self._lock.wait(min(left, 0.5))
            reply = self._messages.pop(self._next)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open_page(self) -> None:
        target = self.send("Target.createTarget", browser=True, url="about:blank")["targetId"]
        self.session = self.send(
            "Target.attachToTarget", browser=True, targetId=target, flatten=True
        )["sessionId"]
        self.send("Page.enable")
        self.send("Network.enable")

    def evaluate(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return (res.get("result") or {}).get("value")

    def wait_for(self, expression: str, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        return value

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5, browser=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def _preannotated_workspace(labelstudio, tmp_path):
    """A workspace with one ingested photo and its stage-1 pre-annotation."""
    import skimage.data
    from PIL import Image

    from entityseg_data.annotation.ml_backend import felzenszwalb_segmenter
    from entityseg_data.ingest.pipeline import ingest
    from entityseg_data.ingest.sources import parse_source
    from entityseg_data.masks import rle
    from entityseg_data.model.inference.workspace_io import workspace_images

    ws = labelstudio.workspace(
        "shot", overrides=("annotation.annotators=[alice]", "ingest.nsfw_enabled=false")
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.coffee()).save(photos / "coffee.png")
    ingest(ws, [parse_source(f"folder:{photos}")])
    ((image_id, path),) = workspace_images(ws)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    seg = felzenszwalb_segmenter(scale=900.0, sigma=0.8, min_size=600, max_side=400)
    label_map, scores = seg(rgb)
    entities = [
        {"id": int(k), "segmentation": r, "score": float(scores[k - 1])}
        for k, r in sorted(rle.label_map_to_rles(label_map).items())
    ]
    ws.write_prediction(
        {"image_id": image_id, "height": rgb.shape[0], "width": rgb.shape[1], "entities": entities},
        VERSION,
    )
    return ws, image_id, len(entities)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable (session scope, listed before ``labelstudio`` so that a machine
    without a browser skips before a server is started)."""
    found = _browser()
    if found is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    return found


def test_stage1_task_screenshot(chromium, labelstudio, tmp_path):
    from PIL import Image

    from entityseg_data.annotation.labelstudio.accounts import session_login, signup_user
    from entityseg_data.annotation.labelstudio.session import open_backend
    from entityseg_data.annotation.push import push

    ws, _image_id, n_entities = _preannotated_workspace(labelstudio, tmp_path)
    assert n_entities >= 3
    report = push(ws, open_backend(ws, labelstudio.admin), ws.config().annotation, stage=1)
    assert report.tasks == 1 and not report.errors
    with ws.catalog() as cat:
        (row,) = cat.annotations(stage=1, annotator="alice")
    project_id, task_id = int(row["ls_project_id"]), int(row["ls_task_id"])

    # a user of our own with a known password, to log in through the web form like a person
    email, password = f"alice-{uuid.uuid4().hex[:4]}@tutorial.local", "tutorial-pw-12345"
    signup_user(labelstudio.url, labelstudio.admin_token, email, password)
    web = session_login(labelstudio.url, email, password)
    width, height = 1280, 800
    tools = DevTools(chromium, tmp_path / "chromium-profile", width=width, height=height)
    try:
        tools.open_page()
        for cookie in web.cookies:
            tools.send(
                "Network.setCookie",
                name=cookie.name,
                value=cookie.value,
                url=labelstudio.url,
                path="/",
            )
        tools.send(
            "Page.navigate", url=f"{labelstudio.url}/projects/{project_id}/data?task={task_id}"
        )
        regions = tools.wait_for(
            "(window.Htx && Htx.annotationStore && Htx.annotationStore.selected"
            " && Htx.annotationStore.selected.regions.length) || 0",
            timeout=40,
        )
        # brush layers are painted asynchronously after the store has the regions
        tools.wait_for(f"Math.max(0, ...{PAINTED_JS}) > 0.001", timeout=30)
        painted = tools.evaluate(PAINTED_JS)
        # every region has the same label colour: hide two of them (the table is the largest)
        # and select the second, so that the picture shows entity boundaries
        selected = tools.evaluate(
            "(() => { const a = Htx.annotationStore.selected;"
            " a.regions[0].toggleHidden(); a.regions[2].toggleHidden();"
            " a.selectArea(a.regions[1]); return a.highlightedNode ? 1 : 0; })()"
        )
        time.sleep(1)
        shot = tools.send("Page.captureScreenshot", format="png", timeout=60)
    finally:
        tools.close()
    # the editor loaded every pre-annotated entity as a brush region and painted them
    assert regions == n_entities
    assert selected == 1
    assert max(painted) > 0.001, painted
    raw = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    assert raw.width == width
    assert len(np.unique(np.asarray(raw).reshape(-1, 3), axis=0)) > 1000  # not a blank page
    # an adaptive 256-colour palette keeps the picture small enough to commit (< 300 KB)
    out = tmp_path / "labelstudio_stage1_task.png"
    raw.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    assert out.stat().st_size < 300_000
    if os.environ.get("ENTITYSEG_UPDATE_DOCS_IMG"):
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, DOCS_IMG)
