"""Labeling configs (Label Studio XML) for the two EntitySeg stages, and their tag names.

What the annotator sees, and why:

* **Distinct colours.** One label would paint every region the same colour (20 pre-annotated
  regions look like one red sheet). Regions carry *display labels* from a palette instead:
  stage 1 ``brush 1`` .. ``brush 8`` and ``polygon 1``, ``polygon 2`` (the label says which tool
  drew it), stage 2 ``mask 1`` .. ``mask 8``. Pre-annotated regions get palette colours such that
  touching regions differ (:func:`palette_labels`); the pull collapses every display label into
  the one class "entity". ``QA fix`` marks the regions a rejected annotation must fix (rework);
  ``context`` (stage 2, grey) marks regions shown for context only (named elsewhere, e.g. in
  another tile), which need no name.
* **No hotkey collisions.** Label Studio gives every label and choice without a hotkey the next
  free key of ``1234567890qwetasdfg...``, which collides with the tool keys (B brush, E eraser,
  V move, H pan, P polygon, ...): every label here has an explicit hotkey (digits, ``q``, ``y``,
  ``j``), and the stage-2 flags are a per-region Taxonomy (a compact searchable dropdown whose
  items have no hotkeys) instead of 24 checkboxes.
* **Controls in view.** The label buttons, the flags and the QA note sit above the image, and
  the image is limited to the window height, so nothing is below the fold on a portrait 12 MP
  image; the stage-2 name of every region is an input in the Regions panel
  (``displayMode="region-list"``): names are visible in the list and unnamed regions show an
  empty box.
* **Rework.** ``$qa_note`` (task data; empty unless QA sent the task back) is shown at the top.

Per-region results share the region's ``id``: the pull joins them on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

from entityseg_data.annotation.workflow import (
    BLURRED,
    CONTEXT_LABEL,
    FIX_LABEL,
    UNKNOWN,
    flag_choices,
)

IMAGE = "image"
BRUSH = "mask"
POLYGON = "poly"
NAME = "name"
FLAG = "flag"  # the stage-2 flag Choices of older projects (read by the pull)
FLAGS = "flags"  # the stage-2 flag Taxonomy
LABEL = "entity"  # the one class every display label collapses into (and the label of old projects)
QA_NOTE = "qa_note"
QA_STATUS = "qa_status"

#: tab10 without grey: colours told apart easily on photos (red is kept for ``QA fix``)
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)
POLYGON_COLOURS = ("#393b79", "#e7ba52")
BRUSH_LABELS = tuple(f"brush {i + 1}" for i in range(len(PALETTE)))
POLYGON_LABELS = tuple(f"polygon {i + 1}" for i in range(len(POLYGON_COLOURS)))
MASK_LABELS = tuple(f"mask {i + 1}" for i in range(len(PALETTE)))
FIX_COLOUR = "#d62728"
CONTEXT_COLOUR = "#7f7f7f"
#: every display label the pull accepts for a region (collapsed into the class ``entity``)
DISPLAY_LABELS = frozenset(
    {LABEL, *BRUSH_LABELS, *POLYGON_LABELS, *MASK_LABELS, FIX_LABEL, CONTEXT_LABEL}
)
#: keys taken by Label Studio's tools and commands (the labels below avoid them)
TOOL_KEYS = frozenset("bhekmoprvuw")
# hotkeys: brush/mask colours 1-8, polygons 9 and 0, QA fix q (brush) / y (polygon), context j
_BRUSH_KEYS = tuple(str(i + 1) for i in range(len(PALETTE)))
_POLYGON_KEYS = ("9", "0")


def _label(value: str, colour: str, hotkey: str) -> str:
    attrs = f"value={quoteattr(value)} background={quoteattr(colour)} hotkey={quoteattr(hotkey)}"
    return f"    <Label {attrs}/>\n"


#: the QA note strip: at most ~3.5 lines tall (a longer note scrolls), so it does not push the image
#: below the window
QA_STYLE = (
    "background: #fff4e5; padding: 0 8px; white-space: pre-wrap; max-height: 6em; overflow-y: auto"
)
#: the image's display height: the window less what Label Studio and this config put above and
#: below it. Measured in Chromium (tests/browser/test_layout_browser.py): at 1280-1600 px wide
#: the bars, header, label rows, QA note and (stage 2) the selected region's flag dropdown take
#: up to ~465 px, so the whole image and every control stay in view down to a 1280x720 window.
IMAGE_MAX_HEIGHT = "calc(100vh - 470px)"


def _qa_block() -> str:
    return f'  <View style="{QA_STYLE}">\n    <Header value="${QA_NOTE}" size="6"/>\n  </View>\n'


def _image() -> str:
    return (
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true" '
        f'brightnessControl="true" maxHeight="{IMAGE_MAX_HEIGHT}"/>\n'
    )


def stage1_config(polygon: bool = True) -> str:
    """Stage 1: brush (and polygon) regions with palette display labels."""
    brush = "".join(_label(v, c, k) for v, c, k in zip(BRUSH_LABELS, PALETTE, _BRUSH_KEYS))
    brush += _label(FIX_LABEL, FIX_COLOUR, "q")
    poly = ""
    if polygon:
        poly = (
            f'  <PolygonLabels name="{POLYGON}" toName="{IMAGE}" strokeWidth="2" '
            'pointSize="small" opacity="0.45" showInline="true">\n'
            + "".join(
                _label(v, c, k) for v, c, k in zip(POLYGON_LABELS, POLYGON_COLOURS, _POLYGON_KEYS)
            )
            + _label(FIX_LABEL, FIX_COLOUR, "y")
            + "  </PolygonLabels>\n"
        )
    return (
        "<View>\n"
        + _qa_block()
        + '  <Header size="6" value="Stage 1: one mask per entity, covering the image. Select a '
        "region, paint (B) or erase (E); a colour starts a new region. What you paint wins over "
        'a neighbour."/>\n'
        f'  <BrushLabels name="{BRUSH}" toName="{IMAGE}" showInline="true">\n'
        + brush
        + "  </BrushLabels>\n"
        + poly
        + _image()
        + "</View>\n"
    )


def stage2_config(supercategories: Sequence[str], *, flags: Sequence[str] | None = None) -> str:
    """Stage 2: the stage-1 masks as brush regions (palette display labels), a per-region name
    in the Regions panel and per-region flags in a dropdown."""
    labels = "".join(_label(v, c, k) for v, c, k in zip(MASK_LABELS, PALETTE, _BRUSH_KEYS))
    labels += _label(FIX_LABEL, FIX_COLOUR, "q") + _label(CONTEXT_LABEL, CONTEXT_COLOUR, "j")
    flags = "\n".join(
        f"      <Choice value={quoteattr(c)}/>"
        for c in (flags if flags is not None else flag_choices(supercategories))
    )
    return (
        "<View>\n"
        + _qa_block()
        + '  <Header size="6" value="Stage 2: type each region\'s name in its box in the Regions '
        'panel, or select it and pick a flag. Masks are fixed: do not paint or erase."/>\n'
        '  <View visibleWhen="region-selected">\n'
        f'    <Taxonomy name="{FLAGS}" toName="{IMAGE}" perRegion="true" maxUsages="1" '
        'placeholder="flag (instead of a name)" minWidth="260px">\n'
        f"{flags}\n"
        "    </Taxonomy>\n"
        "  </View>\n"
        f'  <BrushLabels name="{BRUSH}" toName="{IMAGE}" showInline="true">\n'
        + labels
        + "  </BrushLabels>\n"
        + f'  <TextArea name="{NAME}" toName="{IMAGE}" perRegion="true" editable="true" '
        'maxSubmissions="1" rows="1" displayMode="region-list" '
        'placeholder="name, e.g. dog"/>\n' + _image() + "</View>\n"
    )


def label_config(
    stage: int,
    *,
    polygon: bool = True,
    supercategories: Sequence[str] = (),
    flags: Sequence[str] | None = None,
) -> str:
    """The config of ``stage``; stage 2's flags are ``flags`` when given, else
    :func:`flag_choices` of ``supercategories``."""
    if stage == 1:
        return stage1_config(polygon)
    if stage == 2:
        return stage2_config(supercategories, flags=flags)
    raise ValueError(f"stage must be 1 or 2, got {stage}")


def palette_labels(
    adjacency: dict[int, set[int]], n: int, stage: int, *, polygon_regions: Sequence[int] = ()
) -> list[str]:
    """Display labels for ``n`` regions such that adjacent regions get different colours when
    possible (greedy colouring, most connected first; ties by index, so it is deterministic).

    Args:
        adjacency: region index -> indices of the regions it touches.
        n: number of regions.
        stage: 1 (``brush k``) or 2 (``mask k``).
        polygon_regions: indices shown as polygons (stage 1: ``polygon k``).
    """
    names = BRUSH_LABELS if stage == 1 else MASK_LABELS
    k = len(names)
    colour = [-1] * n
    order = sorted(range(n), key=lambda i: (-len(adjacency.get(i, ())), i))
    use = [0] * k
    for i in order:
        taken = {colour[j] for j in adjacency.get(i, ()) if colour[j] >= 0}
        free = [c for c in range(k) if c not in taken]
        pool = free or list(range(k))
        c = min(pool, key=lambda c: (use[c], c))  # spread the colours
        colour[i] = c
        use[c] += 1
    polys = set(polygon_regions)
    return [
        POLYGON_LABELS[colour[i] % len(POLYGON_LABELS)] if i in polys else names[colour[i]]
        for i in range(n)
    ]


__all__ = [
    "BLURRED",
    "BRUSH",
    "BRUSH_LABELS",
    "CONTEXT_LABEL",
    "DISPLAY_LABELS",
    "FIX_LABEL",
    "FLAG",
    "FLAGS",
    "IMAGE",
    "LABEL",
    "MASK_LABELS",
    "NAME",
    "PALETTE",
    "POLYGON",
    "POLYGON_LABELS",
    "QA_NOTE",
    "QA_STATUS",
    "UNKNOWN",
    "flag_choices",
    "label_config",
    "palette_labels",
    "stage1_config",
    "stage2_config",
]
