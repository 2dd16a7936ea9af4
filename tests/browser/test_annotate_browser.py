"""Both annotation stages done by hand in Chromium (Playwright, real mouse and keyboard events),
then pulled and checked pixel for pixel against what the mouse did.

Stage 1 (annotator ``brenda``, a 1200x900 scene with 10 pre-annotated regions): a brush stroke
extends a region over its neighbour, a polygon is drawn over several pre-annotated pieces, the
eraser takes a strip out of a region, a new brush region is drawn, Submit. The pull must give:

* every mask exactly as the intent overlap rule makes it from what was submitted (the submitted
  brush results decoded with Label Studio's own SDK decoder, independently of the toolkit): what
  a region painted beyond its seed is taken from its neighbours, the new regions take what they
  cover, the erased pixels are unlabelled;
* and the submitted masks themselves must be what the mouse did: the pixels a stroke added lie
  within the brush radius of the mouse path (radius = brush size / display scale / 2, +- 1.5 px;
  the path is where the events landed: whole CSS pixels, see ``Editor.snap``)
  and cover its core, the eraser removed exactly such a band, the polygon matches the clicked
  vertices (IoU >= 0.98).

Stage 2 (same annotator): names typed in the Regions panel, a flag from the dropdown, one region
left unnamed; the keys ``e``, ``v``, ``b`` (flag hotkeys once) are pressed with a region
selected and set no flag; the eraser is tried on a region. The pull rejects the annotation
(``unnamed``, ``geometry_changed``) and sends it back: the annotator reopens the task, sees the QA
note and the regions marked ``QA fix`` (the erased mask is back as it was in stage 1), names the
unnamed region and submits; the next pull approves it with
every name on its region id and the stage-1 masks unchanged.

Screenshots of each step are written to a temporary folder, and to docs/img/ (the tutorial's
pictures) with ``ENTITYSEG_UPDATE_DOCS_IMG=1``. Nothing waits for a fixed time.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from lsui import Editor
from scene import add_scene_image
from sdk_brush_support import sdk_brush

from entityseg_data.annotation.labelstudio import configs
from entityseg_data.annotation.labelstudio.format import polygon_mask
from entityseg_data.annotation.labelstudio.session import (
    create_annotators,
    open_backend,
    read_credentials,
    tasks_for,
)
from entityseg_data.annotation.pull import pull
from entityseg_data.annotation.push import push
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import load_annotation

pytestmark = [pytest.mark.browser, pytest.mark.labelstudio]

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMG = ROOT / "docs" / "img"
H, W, N_REGIONS, SEED = 900, 1200, 10, 1
WHO = "brenda"
TOL = 1.5  # image px: the brush edge is anti-aliased (paths are where the events landed)


# ---------------------------------------------------------------------------- geometry helpers
def path_distance(points, h: int = H, w: int = W) -> np.ndarray:
    """(H, W) distance of every pixel centre to a polyline (image pixels)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    px, py = xx + 0.5, yy + 0.5
    best = np.full((h, w), np.inf)
    for (ax, ay), (bx, by) in itertools.pairwise(points):
        dx, dy = bx - ax, by - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        best = np.minimum(best, np.hypot(px - (ax + t * dx), py - (ay + t * dy)))
    return best


def submitted_masks(result: list[dict]) -> dict[str, np.ndarray]:
    """Region id -> mask of a submitted annotation: brushes decoded by Label Studio's SDK,
    polygons rasterised from their points."""
    out = {}
    for r in result:
        v = r.get("value") or {}
        if r.get("type") == "brushlabels":
            alpha = sdk_brush().decode_rle(v["rle"]).reshape(H, W, 4)[..., 3]
            out[r["id"]] = alpha > 0
        elif r.get("type") == "polygonlabels":
            out[r["id"]] = polygon_mask(v["points"], H, W).astype(bool)
    return out


def intent(sub: dict[str, np.ndarray], seed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The intent rule for edits that do not cross each other: every pixel a region painted
    beyond its seed (all of a new region) is taken from every other region."""
    painted = {rid: m & ~seed.get(rid, np.zeros_like(m)) for rid, m in sub.items()}
    out = {}
    for rid, m in sub.items():
        others = np.zeros_like(m)
        for o, p in painted.items():
            if o != rid:
                others |= p
        if (m & ~others).any():
            out[rid] = m & ~others
    return out


def find_seam(lm: np.ndarray, used: np.ndarray, run: int = 90) -> tuple[int, int]:
    """(x, y) of a vertical border between two regions with ``run`` px of each on the row, away
    from the pixels already ``used``."""
    for y in range(150, H - 150, 7):
        row = lm[y]
        for x in range(run + 20, W - run - 20, 3):
            if row[x] == row[x - 1]:
                continue
            same = (row[x - run : x] == row[x - 1]).all() and (row[x : x + run] == row[x]).all()
            if same and not used[y - 40 : y + 40, x - run - 20 : x + run + 20].any():
                return x, y
    raise AssertionError("no seam in the scene")


def find_run(lm: np.ndarray, used: np.ndarray, length: int, exclude=()) -> tuple[int, int, int]:
    """(x, y, label) of a horizontal run of one region at least ``length`` px long, with 30 px of
    that region above and below, away from ``used``."""
    for y in range(100, H - 100, 9):
        for x in range(40, W - length - 40, 11):
            k = lm[y, x]
            if k in exclude:
                continue
            box = lm[y - 30 : y + 31, x : x + length]
            if (box == k).all() and not used[y - 50 : y + 51, x - 30 : x + length + 30].any():
                return x, y, int(k)
    raise AssertionError("no long run in the scene")


def mark(used: np.ndarray, x0: float, y0: float, x1: float, y1: float, pad: int = 30) -> None:
    used[max(0, int(y0) - pad) : int(y1) + pad, max(0, int(x0) - pad) : int(x1) + pad] = True


def shot(editor: Editor, tmp_path: Path, name: str) -> Path:
    """A screenshot (JPEG, small enough to commit), also copied to docs/img with
    ENTITYSEG_UPDATE_DOCS_IMG=1."""
    from PIL import Image

    raw = editor.screenshot(tmp_path / f"{name}.raw.png")
    out = tmp_path / f"{name}.jpg"
    Image.open(raw).convert("RGB").save(out, quality=80, optimize=True)
    assert out.stat().st_size < 400_000
    if os.environ.get("ENTITYSEG_UPDATE_DOCS_IMG"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, DOCS_IMG / out.name)
    return out


# ---------------------------------------------------------------------------- the test
def test_both_stages_by_hand(chromium_browser, labelstudio, tmp_path):
    ws = labelstudio.workspace(
        "browser",
        (
            f"annotation.annotators=[{WHO}]",
            "annotation.max_uncovered_fraction=0.5",
            f"labelstudio.email_domain=b{uuid.uuid4().hex[:6]}.local",
        ),
    )
    img = add_scene_image(ws, seed=SEED, height=H, width=W, n_regions=N_REGIONS)
    admin = labelstudio.admin
    create_annotators(ws, [WHO], admin=admin)
    backend, cfg = open_backend(ws, admin), ws.config().annotation
    assert cfg.overlap_policy == "intent" and cfg.rework
    assert push(ws, backend, cfg, stage=1).tasks == 1
    (row,) = tasks_for(ws, 1, WHO)
    creds = read_credentials(ws)["annotators"][WHO]
    seed = {img.region_id(k): img.label_map == k for k in range(1, N_REGIONS + 1)}

    context = chromium_browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        ed = Editor(context.new_page(), labelstudio.url)
        ed.login(creds["email"], creds["password"])  # the toolkit's annotator account
        ed.open_task(row.ls_project_id, row.ls_task_id)
        assert sorted(ed.region_ids()) == sorted(seed)
        shot(ed, tmp_path, "tutorial_stage1_task")

        # ------------------------------------------------------------ stage 1 by hand
        box = ed.stable_box()
        r_brush = ed.brush_width("Brush") / (2 * box.scale)
        r_erase = ed.brush_width("Erase") / (2 * box.scale)
        lm = img.label_map
        used = np.zeros((H, W), bool)
        # 1. extend a region over its neighbour with the brush
        sx, sy = find_seam(lm, used)
        a_id = img.region_id(int(lm[sy, sx - 1]))
        extend = ed.snap([(sx - 60.0, sy + 0.5), (sx + 45.0, sy + 0.5)])
        mark(used, sx - 60, sy, sx + 45, sy)
        ed.select_region(a_id)
        ed.press("b")
        ed.stroke(extend)
        # 2. the eraser through another region
        ex, ey, c_label = find_run(lm, used, 150, exclude=(int(lm[sy, sx - 1]),))
        c_id = img.region_id(c_label)
        erase = ed.snap([(ex + 20.0, ey + 0.5), (ex + 130.0, ey + 0.5)])
        mark(used, ex, ey, ex + 150, ey)
        ed.unselect()
        ed.select_region(c_id)
        ed.press("e")
        ed.stroke(erase)
        # 3. a polygon over several pre-annotated pieces
        ed.unselect()
        px0, py0 = find_polygon_box(lm, used)
        poly = ed.snap(polygon_points(px0, py0))
        mark(used, px0, py0, px0 + 170, py0 + 150)
        ed.press("9")  # the label 'polygon 1'
        ed.polygon(poly)
        # 4. a new brush region
        ed.unselect()
        nx, ny, _ = find_run(lm, used, 140)
        new_path = ed.snap(
            [(nx + 10.0, ny - 12.0), (nx + 120.0, ny - 12.0), (nx + 120.0, ny + 12.0)]
        )
        ed.press("b")
        ed.press("1")  # the label 'brush 1'
        ed.stroke(new_path)
        ed.unselect()
        shot(ed, tmp_path, "tutorial_stage1_edited")
        saved = ed.submit(row.ls_task_id)
        assert not ed.console_errors, ed.console_errors
    finally:
        context.close()

    # ------------------------------------------------------------ what the mouse did
    sub = submitted_masks(saved["result"])
    new_ids = [rid for rid in sub if rid not in seed]
    kinds = {r["id"]: r["type"] for r in saved["result"] if r["id"] in new_ids}
    (poly_id,) = [rid for rid, t in kinds.items() if t == "polygonlabels"]
    (brush_id,) = [rid for rid, t in kinds.items() if t == "brushlabels"]
    added = sub[a_id] & ~seed[a_id]
    d = path_distance(extend)
    assert added.any() and (d[added] <= r_brush + TOL).all()
    assert (added | seed[a_id])[d <= r_brush - TOL].all()
    removed = seed[c_id] & ~sub[c_id]
    d = path_distance(erase)
    assert removed.any() and (d[removed] <= r_erase + TOL).all()
    assert not sub[c_id][(d <= r_erase - TOL)].any()
    assert not (sub[c_id] & ~seed[c_id]).any()
    d = path_distance(new_path)
    assert (d[sub[brush_id]] <= r_brush + TOL).all() and sub[brush_id][d <= r_brush - TOL].all()
    clicked = polygon_mask([[100 * x / W, 100 * y / H] for x, y in poly], H, W).astype(bool)
    iou = (clicked & sub[poly_id]).sum() / (clicked | sub[poly_id]).sum()
    assert iou >= 0.98, iou
    _, counts = np.unique(lm[sub[poly_id]], return_counts=True)
    assert (counts >= 1000).sum() >= 2  # over several pre-annotated pieces
    for rid in seed:
        if rid not in (a_id, c_id):
            assert np.array_equal(sub[rid], seed[rid]), rid  # untouched regions as seeded

    # ------------------------------------------------------------ the pull
    rep = pull(ws, backend, cfg, stages=(1,))[1]
    assert rep.pulled == 1 and rep.rejected == 0 and rep.approved == 1, rep.to_json()
    ann1 = load_annotation(ws.root, 1, WHO, img.image_id)
    got = {e.id: rle_utils.decode(e.segmentation).astype(bool) for e in ann1.entities}
    want = intent(sub, seed)
    assert sorted(got) == sorted(want)
    for rid, m in want.items():
        assert np.array_equal(got[rid], m), rid
    assert not (got[a_id] & ~sub[a_id]).any() and (got[a_id] & added).sum() == added.sum()
    assert not got[poly_id].sum() < sub[poly_id].sum()  # the polygon kept all it covers
    assert ann1.meta["kinds"][poly_id] == ["polygon"]

    stage2(chromium_browser, labelstudio, ws, backend, cfg, img, creds, got, tmp_path)


def polygon_points(x: float, y: float) -> list[tuple[float, float]]:
    return [(x, y), (x + 170, y + 10), (x + 160, y + 150), (x, y + 140)]


def find_polygon_box(lm: np.ndarray, used: np.ndarray) -> tuple[float, float]:
    """Top-left corner of a polygon (:func:`polygon_points`) that covers at least 1000 pixels of
    each of two pre-annotated pieces or more, away from ``used``."""
    for y in range(60, H - 220, 13):
        for x in range(60, W - 240, 13):
            if used[y - 30 : y + 180, x - 30 : x + 200].any():
                continue
            pts = [[100 * px / W, 100 * py / H] for px, py in polygon_points(x, y)]
            inside = polygon_mask(pts, H, W).astype(bool)
            _, counts = np.unique(lm[inside], return_counts=True)
            if (counts >= 1000).sum() >= 2:
                return float(x), float(y)
    raise AssertionError("no spot for the polygon")


def stage2(chromium_browser, labelstudio, ws, backend, cfg, img, creds, stage1, tmp_path):
    assert push(ws, backend, cfg, stage=2).tasks == 1
    (row,) = tasks_for(ws, 2, WHO)
    ids = sorted(stage1, key=lambda r: (len(r), r))
    flagged, unnamed, erased = ids[1], ids[2], ids[3]
    names = {rid: f"thing {k}" for k, rid in enumerate(ids) if rid not in (flagged, unnamed)}
    context = chromium_browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        ed = Editor(context.new_page(), labelstudio.url)
        ed.login(creds["email"], creds["password"])
        ed.open_task(row.ls_project_id, row.ls_task_id)
        assert sorted(ed.region_ids()) == sorted(stage1)
        for rid, name in names.items():
            ed.type_name(rid, name)
        ed.pick_flag(flagged, "unknown")
        shot(ed, tmp_path, "tutorial_stage2_names")
        # the old flag hotkeys set no flag now; e arms the eraser, which changes a mask
        ed.select_region(erased)
        before = ed.results()
        for key in ("v", "b", "e"):
            ed.press(key)
        flags = [r for r in ed.results() if r["type"] in ("taxonomy", "choices")]
        assert [r["id"] for r in flags] == [flagged], flags
        assert [r for r in ed.results() if r["type"] == "textarea"] == [
            r for r in before if r["type"] == "textarea"
        ]
        ys, xs = np.nonzero(stage1[erased])
        cy, cx = float(np.median(ys)), float(np.median(xs))
        ed.stroke([(cx - 40.0, cy + 0.5), (cx + 40.0, cy + 0.5)])
        ed.submit(row.ls_task_id)

        rep = pull(ws, backend, cfg, stages=(2,))[2]
        assert rep.rejected == 1 and rep.sent_back == 1, rep.to_json()
        checks = {f["check"]: f.get("region") for f in _findings(ws, img.image_id)}
        assert checks.get("unnamed") == unnamed and checks.get("geometry_changed") == erased

        # the rejection reaches the annotator: the task again, with the note and marked regions
        ed.open_task(row.ls_project_id, row.ls_task_id)
        note = ed.page.get_by_role("heading", name=re.compile("QA rejected this stage-2"))
        note.wait_for()  # the note at the top of the labeling view
        labels = {
            r["id"]: (r["value"].get("brushlabels") or [None])[0]
            for r in ed.results()
            if r["type"] == "brushlabels"
        }
        assert labels[unnamed] == configs.FIX_LABEL and labels[erased] == configs.FIX_LABEL
        draft = submitted_masks(ed.results())  # the erased mask is the stage-1 one again
        assert np.array_equal(draft[erased], stage1[erased])
        shot(ed, tmp_path, "tutorial_stage2_rework")
        ed.type_name(unnamed, "fixed thing")
        ed.submit(row.ls_task_id)
    finally:
        context.close()
    rep = pull(ws, backend, cfg, stages=(2,))[2]
    assert rep.pulled == 1 and rep.rejected == 0 and rep.approved == 1, rep.to_json()
    ann2 = load_annotation(ws.root, 2, WHO, img.image_id)
    want = {**names, flagged: "unknown", unnamed: "fixed thing"}
    assert {e.id: e.name for e in ann2.entities} == want
    for e in ann2.entities:  # geometry locked: the stage-1 masks, pixel for pixel
        assert np.array_equal(rle_utils.decode(e.segmentation).astype(bool), stage1[e.id])


def _findings(ws, image_id):
    with ws.catalog() as cat:
        rec = cat.annotation(image_id, 2, WHO)
    return (rec.qa or {}).get("findings", [])
