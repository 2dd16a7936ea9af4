"""What an annotator sees at 12 MP, checked in Chromium (issue 13, points 4 and 6).

* The project table (Label Studio's Data Manager, the first tab a project opens on) requests no
  task image: before, it loaded every full 12 MP file as a thumbnail. The same check on a tab
  that shows the image column does see the image (so the check can fail).
* A portrait 12 MP image (3000 x 4000, one whole-image task: tiling off, the worst case for the
  layout) on a laptop-sized window (1366 x 768). Stage 1: the label buttons, the Submit button
  and the whole image are in view. Stage 2, after a rejecting pull sent the task back: the QA
  note, a region's name box in the Regions panel, the selected region's flag dropdown, the
  labels and the whole image are in view; unnamed regions show an empty name box and a typed
  name shows in the region list.

"In view" = the element's box lies inside the window, above Label Studio's bottom bar (Submit),
with the page not scrolled. Nothing waits for a fixed time.
"""

from __future__ import annotations

import re
import uuid

import pytest
from lsui import Editor
from scene import add_scene_image

from entityseg_data.annotation.labelstudio.backend import IMAGE_COLUMN
from entityseg_data.annotation.labelstudio.session import (
    annotator_client,
    create_annotators,
    open_backend,
    read_credentials,
    tasks_for,
)
from entityseg_data.annotation.pull import pull
from entityseg_data.annotation.push import push

pytestmark = [pytest.mark.browser, pytest.mark.labelstudio]

H, W, N_REGIONS = 4000, 3000, 6  # portrait 12 MP
LAPTOP = {"width": 1366, "height": 768}
WHO = "petra"
LOCAL_FILES = "/data/local-files/"


def outside_window(page, locator, *, bottom: float | None = None) -> str | None:
    """None when the element is inside the window (above ``bottom`` when given, the page not
    scrolled), else why not."""
    box = locator.bounding_box()
    if box is None:
        return "not displayed"
    vw, vh = page.viewport_size["width"], page.viewport_size["height"]
    limit = vh if bottom is None else bottom
    scrolled = page.evaluate("() => [window.scrollX, window.scrollY]")
    if scrolled != [0, 0]:
        return f"the page is scrolled {scrolled}"
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    if x < 0 or y < 0 or x + w > vw + 0.5 or y + h > limit + 0.5:
        return f"box {box} outside the {vw}x{vh} window (bottom {limit})"
    return None


BAR_TOP_JS = """e => {
  let n = e;  // up from the button to the bar: the first ancestor at least 40 % of the window wide
  while (n && n.getBoundingClientRect().width < window.innerWidth * 0.4) n = n.parentElement;
  return (n || e).getBoundingClientRect().y;
}"""


def bottom_bar_top(page) -> float:
    """Where Label Studio's bottom bar (with Submit / Update) starts."""
    button = page.locator("button:has-text('Submit'), button:has-text('Update')").first
    assert outside_window(page, button) is None, outside_window(page, button)
    return float(button.evaluate(BAR_TOP_JS))


def assert_in_view(page, locator, what: str) -> None:
    why = outside_window(page, locator, bottom=bottom_bar_top(page))
    assert why is None, f"{what}: {why}"


def assert_image_in_view(ed: Editor) -> None:
    box = ed.stable_box()
    assert (box.natural_width, box.natural_height) == (W, H)  # the full-resolution picture
    vw, bottom = ed.page.viewport_size["width"], bottom_bar_top(ed.page)
    assert box.y >= 0 and box.y + box.height <= bottom + 0.5, (box, bottom)
    assert box.x >= 0 and box.x + box.width <= vw + 0.5, box


def assert_labels_in_view(page) -> list[str]:
    labels = page.locator(".lsf-label")
    texts = labels.all_inner_texts()
    for k in range(labels.count()):
        assert_in_view(page, labels.nth(k), f"label button {texts[k]!r}")
    return texts


def open_table(ed: Editor, url: str, task: int) -> list[str]:
    """Open a project's table at ``url`` and wait until the row of ``task`` is shown and the
    page is idle; returns the task-image requests made so far and the task images in the page."""
    seen: list[str] = []
    page = ed.page

    def on_request(req) -> None:
        if LOCAL_FILES in req.url:
            seen.append(req.url)

    page.on("request", on_request)
    try:
        page.goto(url)
        page.locator(
            f"[data-testid=table-row]:has(input[aria-label='Select Task {task}'])"
        ).wait_for()
        ed.wait_idle()
        shown = page.evaluate(
            "(p) => Array.from(document.querySelectorAll('img')).map(i => i.src)"
            ".filter(s => s.includes(p))",
            LOCAL_FILES,
        )
    finally:
        page.remove_listener("request", on_request)
    return seen + list(shown)


def test_project_table_and_portrait_12mp_controls_in_view(chromium_browser, labelstudio):
    ws = labelstudio.workspace(
        "layout",
        (
            f"annotation.annotators=[{WHO}]",
            "annotation.tile_min_pixels=-1",  # one whole portrait task
            "annotation.max_uncovered_fraction=0.5",
            f"labelstudio.email_domain=l{uuid.uuid4().hex[:6]}.local",
        ),
    )
    img = add_scene_image(ws, seed=7, height=H, width=W, n_regions=N_REGIONS, quality=85)
    admin = labelstudio.admin
    create_annotators(ws, [WHO], admin=admin)
    backend, cfg = open_backend(ws, admin), ws.config().annotation
    rep = push(ws, backend, cfg, stage=1)
    assert rep.tasks == 1
    (row,) = tasks_for(ws, 1, WHO)
    project, task = int(row.ls_project_id), int(row.ls_task_id)
    creds = read_credentials(ws)["annotators"][WHO]

    context = chromium_browser.new_context(viewport=LAPTOP)
    try:
        ed = Editor(context.new_page(), labelstudio.url)
        ed.login(creds["email"], creds["password"])
        # ---------------------------------------------------------- the project table
        assert open_table(ed, f"{labelstudio.url}/projects/{project}/data", task) == []
        # control: a tab that shows the image column loads the file (so the check can fail)
        tab = admin.post("/api/dm/views/", {"project": project, "data": {"title": "with images"}})
        assert IMAGE_COLUMN not in str(tab["data"].get("hiddenColumns"))
        with ed.page.expect_request(lambda r: LOCAL_FILES in r.url):
            got = open_table(ed, f"{labelstudio.url}/projects/{project}/data?tab={tab['id']}", task)
        assert got, "a tab showing the image column shows no image: the check is blind"
        admin.delete(f"/api/dm/views/{tab['id']}/")

        # ---------------------------------------------------------- stage 1, portrait 12 MP
        ed.open_task(project, task)
        page = ed.page
        assert_image_in_view(ed)
        texts = assert_labels_in_view(page)
        assert any("brush 1" in t for t in texts) and any("polygon 1" in t for t in texts), texts
        assert not ed.console_errors, ed.console_errors
    finally:
        context.close()

    # stage 1 accepted as pre-annotated and stage 2 submitted without names (through the API,
    # as the annotator): the pull rejects it and sends it back with a note
    client = annotator_client(ws, WHO)
    client.create_annotation(task, client.task(task)["predictions"][0]["result"])
    assert pull(ws, backend, cfg, stages=(1,))[1].approved == 1
    assert push(ws, backend, cfg, stage=2).tasks == 1
    (row2,) = tasks_for(ws, 2, WHO)
    task2 = int(row2.ls_task_id)
    client.create_annotation(task2, client.task(task2)["predictions"][0]["result"])
    rep = pull(ws, backend, cfg, stages=(2,))[2]
    assert rep.rejected == 1 and rep.sent_back == 1, rep.to_json()

    context = chromium_browser.new_context(viewport=LAPTOP)
    try:
        ed = Editor(context.new_page(), labelstudio.url)
        ed.login(creds["email"], creds["password"])
        ed.open_task(int(row2.ls_project_id), task2)
        page = ed.page
        note = page.get_by_role("heading", name=re.compile("QA rejected this stage-2"))
        assert_in_view(page, note, "the QA note")
        assert_image_in_view(ed)
        ids = sorted(ed.region_ids())
        assert ids == sorted(img.region_id(k) for k in range(1, N_REGIONS + 1))
        boxes = page.locator(".lsf-outliner-item input, .lsf-outliner-item textarea")
        values = [boxes.nth(k).input_value() for k in range(boxes.count())]
        assert values and values == [""] * len(values)  # unnamed regions: an empty box each
        first = ed.outliner_item(ids[0]).locator("input, textarea").first
        assert_in_view(page, first, "a region's name box")
        ed.type_name(ids[0], "tower")
        assert ed.outliner_item(ids[0]).locator("input, textarea").first.input_value() == "tower"
        values = [boxes.nth(k).input_value() for k in range(boxes.count())]
        assert values.count("tower") == 1 and values.count("") == len(values) - 1
        ed.select_region(ids[1])  # the flag dropdown appears above the image
        assert_in_view(page, page.locator(".lsf-taxonomy").first, "the flag dropdown")
        assert_labels_in_view(page)
        assert_in_view(page, note, "the QA note")
        assert_image_in_view(ed)
        assert not ed.console_errors, ed.console_errors
    finally:
        context.close()
