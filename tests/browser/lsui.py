"""Drive Label Studio's labeling editor in Debian's Chromium through Playwright, like a person.

Used by the browser tests (tests/browser/) and the UI benchmark (benchmarks/bench_annotation_ui.py).
Every edit is a real mouse or keyboard event on the page; the editor's state
(``window.Htx.annotationStore``) is only *read*, to check what the events did and to know when
the editor is ready. Nothing waits for a fixed time: each step waits for a condition (an element,
a response, the store's state, the main thread being idle).

Coordinates: image pixel ``(x, y)`` (continuous, the pixel ``(i, j)`` spans ``[i, i+1)``) maps to
the page through the displayed image's bounding box (``<img src="blob:...">`` inside the Konva
stage): ``page_x = box.x + x * box.width / natural_width``. The brush paints discs of radius
``stroke_width / (2 * scale)`` image pixels along the mouse path, where ``scale`` is the display
scale (box width / natural width) and ``stroke_width`` the brush tool's size (measured here:
pixels whose centre is within ``r - 0.5`` of the path are painted, none beyond ``r + 1.5``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = (
    "/usr/bin/chromium",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
)
CHROMIUM_ARGS = ("--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu")
VIEWPORT = {"width": 1600, "height": 1000}

# the editor has loaded the task: an annotation is selected and its regions are in the store
STORE_READY_JS = (
    "() => !!(window.Htx && Htx.annotationStore && Htx.annotationStore.selected"
    " && Htx.annotationStore.selected.regionStore)"
)
# the displayed image: Label Studio shows the task image as an <img> with a blob: URL
IMAGE_BOX_JS = """() => {
  const i = Array.from(document.querySelectorAll('img')).find(i => i.src.startsWith('blob:')
     && i.naturalWidth > 0);
  if (!i) return null;
  const r = i.getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height,
          naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight};
}"""
# resolves once the main thread has run everything queued so far and painted a frame
IDLE_JS = (
    "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => "
    "setTimeout(() => r(performance.now()), 0))))"
)
# a long-task observer (main-thread blocks > 50 ms), installed before any page script runs
LONGTASK_INIT = """
window.__longTasks = [];
try {
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
  }).observe({type: 'longtask', buffered: true});
} catch (e) {}
"""


def chromium_executable() -> str | None:
    """The system Chromium (``$ENTITYSEG_CHROMIUM``, Debian's, or one on PATH), or None."""
    env = os.environ.get("ENTITYSEG_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for cand in CHROMIUM_CANDIDATES:
        if Path(cand).exists() and os.access(cand, os.X_OK):
            return cand
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_browser_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the 'playwright' Python package is not installed (pip install -e '.[dev]')"
    if chromium_executable() is None:
        return (
            "no Chromium found (Debian: apt-get install chromium, or `make setup-system`; "
            "or set ENTITYSEG_CHROMIUM); Playwright's own browser download is not used"
        )
    return None


def launch(playwright: Any, executable: str, *, headless: bool = True) -> Any:
    """Launch the system Chromium through Playwright (no browser download)."""
    return playwright.chromium.launch(
        executable_path=executable, headless=headless, args=list(CHROMIUM_ARGS)
    )


@dataclass(frozen=True)
class ImageBox:
    """Where the task image is drawn on the page (CSS pixels) and its natural size."""

    x: float
    y: float
    width: float
    height: float
    natural_width: int
    natural_height: int

    @property
    def scale(self) -> float:
        """Display pixels per image pixel."""
        return self.width / self.natural_width

    def to_page(self, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of image point (x, y) (image pixels, continuous)."""
        return (
            self.x + x * self.width / self.natural_width,
            self.y + y * self.height / self.natural_height,
        )

    def to_image(self, px: float, py: float) -> tuple[float, float]:
        return (
            (px - self.x) * self.natural_width / self.width,
            (py - self.y) * self.natural_height / self.height,
        )


@dataclass
class Timing:
    """One measured action: wall time until the page was idle again, and the main-thread
    blocks (long tasks) that happened meanwhile."""

    action: str
    seconds: float
    longest_block: float
    blocked: float


class Editor:
    """A Label Studio page (one browser context = one logged-in user)."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.timings: list[Timing] = []
        self.console_errors: list[str] = []
        page.add_init_script(LONGTASK_INIT)
        page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))

    # ---- session and navigation -------------------------------------------------------------
    def login(self, email: str, password: str) -> None:
        """Log in through the web form (like a person)."""
        page = self.page
        page.goto(f"{self.base_url}/user/login/")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        with page.expect_navigation():
            page.click("button[type=submit]")
        if "/user/login" in page.url:
            raise AssertionError(f"login of {email} failed: still on {page.url}")

    def open_task(self, project_id: int, task_id: int, *, timeout: float = 120.0) -> None:
        """Open a task in the labeling editor and wait until its regions are loaded and the
        image is displayed."""
        self.page.goto(f"{self.base_url}/projects/{project_id}/data?task={task_id}")
        self.wait_loaded(timeout=timeout)

    def wait_loaded(self, *, timeout: float = 120.0) -> None:
        page = self.page
        page.wait_for_function(STORE_READY_JS, timeout=timeout * 1000)
        page.wait_for_function(
            f"() => !!({IMAGE_BOX_JS})()", timeout=timeout * 1000
        )  # the image has been decoded and placed
        self.wait_idle()
        self.stable_box()

    def wait_idle(self, timeout: float = 300.0) -> float:
        """Wait until the main thread has run what was queued and painted; returns the page's
        ``performance.now()`` then (ms)."""
        self.page.set_default_timeout(timeout * 1000)
        return float(self.page.evaluate(IDLE_JS))

    # ---- geometry ---------------------------------------------------------------------------
    def image_box(self) -> ImageBox:
        box = self.page.evaluate(IMAGE_BOX_JS)
        if box is None:
            raise AssertionError("the task image is not displayed")
        return _image_box(box)

    def stable_box(self, tries: int = 50) -> ImageBox:
        """The image box once it is the same over two idle frames (the layout settles after
        the panels are drawn; the editor may also replace the <img> once more while it loads
        the annotation, so a missing image is waited for again)."""
        prev = None
        for _ in range(tries):
            self.page.wait_for_function(f"() => !!({IMAGE_BOX_JS})()")
            self.wait_idle()
            cur = self.page.evaluate(IMAGE_BOX_JS)
            if cur is not None and cur == prev:
                return _image_box(cur)
            prev = cur
        raise AssertionError(f"the image keeps moving: {prev}")

    def brush_width(self, tool: str = "Brush") -> float:
        """The brush (or ``Erase``) tool's size setting (display pixels)."""
        return float(
            self.page.evaluate(
                "(name) => { const a = Htx.annotationStore.selected;"
                " for (const t of a.names.values()) { if (t.tools && t.tools[name])"
                " return t.tools[name].strokeWidth; } return null; }",
                tool,
            )
        )

    # ---- measured actions -------------------------------------------------------------------
    @contextmanager
    def measure(self, action: str) -> Iterator[None]:
        """Time a block of input events until the page is idle again; record long tasks."""
        page = self.page
        page.evaluate("() => { window.__longTasks = []; }")
        t0 = time.perf_counter()
        yield
        self.wait_idle()
        seconds = time.perf_counter() - t0
        tasks = page.evaluate("() => window.__longTasks")
        longest = max((d for _, d in tasks), default=0.0) / 1000.0
        blocked = sum(d for _, d in tasks) / 1000.0
        self.timings.append(Timing(action, seconds, longest, blocked))

    def snap(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        """The image points where the mouse really lands for ``points``: events go to whole CSS
        pixels (:meth:`stroke` and :meth:`click_image` round), which is up to 1 / scale image
        pixels off the asked point. Check what the mouse did against the snapped points."""
        box = self.stable_box()
        return [box.to_image(*_whole(*box.to_page(*p))) for p in points]

    def stroke(self, points: Sequence[tuple[float, float]], *, steps: int = 8) -> ImageBox:
        """A mouse drag through image points (image pixels), ``steps`` moves per segment; each
        point lands on the nearest whole CSS pixel (see :meth:`snap`)."""
        box = self.stable_box()
        page = self.page
        with self.measure("stroke"):
            page.mouse.move(*_whole(*box.to_page(*points[0])))
            page.mouse.down()
            for p in points[1:]:
                page.mouse.move(*_whole(*box.to_page(*p)), steps=steps)
            page.mouse.up()
        return box

    def click_image(self, x: float, y: float, action: str = "vertex") -> ImageBox:
        box = self.stable_box()
        with self.measure(action):
            self.page.mouse.click(*_whole(*box.to_page(x, y)))
        return box

    def polygon(self, points: Sequence[tuple[float, float]]) -> ImageBox:
        """Click each vertex, then the first one again to close the polygon."""
        box = self.stable_box()
        for p in points:
            self.click_image(*p)
        self.click_image(*points[0], action="close")
        return box

    def press(self, key: str) -> None:
        with self.measure(f"key {key}"):
            self.page.keyboard.press(key)

    def region_ids(self) -> list[str]:
        return list(
            self.page.evaluate(
                "() => Htx.annotationStore.selected.regions.map(r => r.cleanId || r.id)"
            )
        )

    def selected_ids(self) -> list[str]:
        return list(
            self.page.evaluate(
                "() => Htx.annotationStore.selected.selectedRegions.map(r => r.cleanId || r.id)"
            )
        )

    def region_index(self, region_id: str) -> int:
        """The number the region list shows for a region."""
        idx = self.page.evaluate(
            "(id) => { const r = Htx.annotationStore.selected.regions.find("
            "r => (r.cleanId || r.id) === id); return r ? r.region_index : null; }",
            region_id,
        )
        if idx is None:
            raise AssertionError(f"region {region_id} is not in the editor: {self.region_ids()}")
        return int(idx)

    def outliner_item(self, region_id: str) -> Any:
        """The region's entry in the Regions panel, scrolled into view (the list is virtual:
        only the entries in view exist, so the list is scrolled with the mouse wheel)."""
        import re

        page = self.page
        idx = self.region_index(region_id)
        item = page.locator(".lsf-outliner-item").filter(
            has=page.locator(".lsf-outliner-item__index", has_text=re.compile(rf"^{idx}$"))
        )
        holder = page.locator(".lsf-tree-list-holder").first
        for direction in (1, -1):
            for _ in range(200):
                if item.count():
                    item.first.scroll_into_view_if_needed()
                    return item.first
                shown = [
                    int(t)
                    for t in page.locator(".lsf-outliner-item__index").all_inner_texts()
                    if t.strip().isdigit()
                ]
                if shown and (idx < min(shown) if direction > 0 else idx > max(shown)):
                    break  # it is the other way
                before = holder.evaluate("e => e.scrollTop")
                holder.hover()
                page.mouse.wheel(0, direction * 120)
                page.wait_for_function(
                    "([e, b]) => e.scrollTop !== b || e.scrollTop === 0 || "
                    "e.scrollTop + e.clientHeight >= e.scrollHeight - 1",
                    arg=[holder.element_handle(), before],
                )
                if holder.evaluate("e => e.scrollTop") == before:
                    break
        raise AssertionError(f"region {region_id} (#{idx}) not found in the Regions panel")

    def select_region(self, region_id: str) -> None:
        """Click the region's entry in the region list (outliner)."""
        item = self.outliner_item(region_id)
        with self.measure("select"):
            item.locator(".lsf-outliner-item__title").click()
        self.page.wait_for_function(
            "(id) => Htx.annotationStore.selected.selectedRegions.some("
            "r => (r.cleanId || r.id) === id)",
            arg=region_id,
        )

    def type_name(self, region_id: str, name: str) -> None:
        """Type a stage-2 name into the region's box in the Regions panel and press Enter."""
        box = self.outliner_item(region_id).locator("input, textarea").first
        box.click()
        box.fill("")
        box.type(name)
        with self.measure("name"):
            box.press("Enter")
        self.page.wait_for_function(
            "([id, name]) => Htx.annotationStore.selected.serializeAnnotation().some("
            "r => r.id === id && r.type === 'textarea' && (r.value.text || []).includes(name))",
            arg=[region_id, name],
        )

    def pick_flag(self, region_id: str, flag: str) -> None:
        """Select the region and choose a flag in the flag dropdown."""
        self.select_region(region_id)
        page = self.page
        page.click(".lsf-taxonomy .ant-select-selector")
        option = page.locator(".ant-select-tree-title", has_text=flag).first
        option.wait_for()
        option.click()
        page.wait_for_function(
            "([id, flag]) => Htx.annotationStore.selected.serializeAnnotation().some("
            "r => r.id === id && r.type === 'taxonomy' && JSON.stringify(r.value).includes(flag))",
            arg=[region_id, flag],
        )
        page.keyboard.press("Escape")  # close the dropdown

    def unselect(self) -> None:
        self.press("Escape")
        self.page.wait_for_function(
            "() => Htx.annotationStore.selected.selectedRegions.length === 0"
        )

    def results(self) -> list[dict[str, Any]]:
        """The editor's current annotation, serialised as Label Studio would submit it."""
        return list(self.page.evaluate("() => Htx.annotationStore.selected.serializeAnnotation()"))

    def submit(self, task_id: int, *, button: str | None = None) -> dict[str, Any]:
        """Click Submit (or Update) and return the saved annotation (the server's answer)."""
        page = self.page
        name = button or (
            "Update" if page.locator("button:has-text('Update')").count() else "Submit"
        )
        target = page.locator(f"button:has-text('{name}')").first

        def is_save(r: Any) -> bool:
            return r.request.method in ("POST", "PATCH") and (
                f"/api/tasks/{task_id}/annotations" in r.url or "/api/annotations/" in r.url
            )

        with self.measure("submit"), page.expect_response(is_save, timeout=600_000) as info:
            target.click()
        resp = info.value
        if resp.status >= 400:
            raise AssertionError(f"{name} answered {resp.status}: {resp.text()[:300]}")
        return dict(resp.json())

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.wait_idle()
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def _image_box(box: dict[str, Any]) -> ImageBox:
    return ImageBox(
        x=box["x"],
        y=box["y"],
        width=box["width"],
        height=box["height"],
        natural_width=int(box["naturalWidth"]),
        natural_height=int(box["naturalHeight"]),
    )


def _whole(x: float, y: float) -> tuple[float, float]:
    """Page coordinates on whole CSS pixels (the events a person's mouse makes)."""
    return float(round(x)), float(round(y))


def renderer_rss_mb(browser: Any) -> float:
    """Resident memory (MB) of the browser's renderer processes (from the system's /proc, pids
    from the DevTools SystemInfo domain)."""
    session = browser.new_browser_cdp_session()
    try:
        info = session.send("SystemInfo.getProcessInfo")
    finally:
        session.detach()
    total = 0.0
    for proc in info.get("processInfo", []):
        if proc.get("type") != "renderer":
            continue
        try:
            status = Path(f"/proc/{int(proc['id'])}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024.0
    return total
