"""Labeling configs (Label Studio XML) for the two EntitySeg stages, and their tag names.

Stage 1 (class-agnostic masks): the image, a brush with one label ``entity`` (and optionally a
polygon tool with the same label). Stage 2 (open-vocabulary names): the stage-1 masks are shown as
brush regions (seeded as predictions with their stage-1 ids); for the selected region the
annotator types a free-form name (per-region TextArea) or picks ``unknown``, ``blurred`` or
``<supercategory>_other`` (per-region Choices). Per-region results share the region's ``id``: the
pull joins them on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

IMAGE = "image"
BRUSH = "mask"
POLYGON = "poly"
NAME = "name"
FLAG = "flag"
LABEL = "entity"
UNKNOWN = "unknown"
BLURRED = "blurred"


def flag_choices(supercategories: Sequence[str]) -> list[str]:
    """The stage-2 choices: 'unknown', 'blurred', then '<supercategory>_other' for each."""
    return [UNKNOWN, BLURRED, *(f"{s}_other" for s in supercategories)]


def stage1_config(polygon: bool = True) -> str:
    """Stage 1: brush (and polygon) regions with the single label ``entity``."""
    poly = (
        f'  <PolygonLabels name="{POLYGON}" toName="{IMAGE}" strokeWidth="2" pointSize="small" '
        f'opacity="0.5">\n    <Label value="{LABEL}" background="#1f77b4"/>\n  </PolygonLabels>\n'
        if polygon
        else ""
    )
    return (
        "<View>\n"
        '  <Header value="Draw one mask per semantically coherent region; masks must not '
        'overlap; cover the whole image"/>\n'
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true" '
        'brightnessControl="true"/>\n'
        f'  <BrushLabels name="{BRUSH}" toName="{IMAGE}">\n'
        f'    <Label value="{LABEL}" background="#d62728"/>\n'
        "  </BrushLabels>\n"
        f"{poly}"
        "</View>\n"
    )


def stage2_config(supercategories: Sequence[str]) -> str:
    """Stage 2: the stage-1 masks as brush regions, a per-region name and per-region flags."""
    choices = "\n".join(
        f"      <Choice value={quoteattr(c)}/>" for c in flag_choices(supercategories)
    )
    return (
        "<View>\n"
        '  <Header value="Select each region and name it freely (or pick unknown / blurred / '
        '&lt;supercategory&gt;_other)"/>\n'
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <BrushLabels name="{BRUSH}" toName="{IMAGE}">\n'
        f'    <Label value="{LABEL}" background="#2ca02c"/>\n'
        "  </BrushLabels>\n"
        '  <View visibleWhen="region-selected">\n'
        f'    <TextArea name="{NAME}" toName="{IMAGE}" perRegion="true" editable="true" '
        'maxSubmissions="1" rows="1" placeholder="free-form name, e.g. dog"/>\n'
        f'    <Choices name="{FLAG}" toName="{IMAGE}" perRegion="true" choice="single" '
        'showInline="false">\n'
        f"{choices}\n"
        "    </Choices>\n"
        "  </View>\n"
        "</View>\n"
    )


def label_config(stage: int, *, polygon: bool = True, supercategories: Sequence[str] = ()) -> str:
    if stage == 1:
        return stage1_config(polygon)
    if stage == 2:
        return stage2_config(supercategories)
    raise ValueError(f"stage must be 1 or 2, got {stage}")


__all__ = [
    "BLURRED",
    "BRUSH",
    "FLAG",
    "IMAGE",
    "LABEL",
    "NAME",
    "POLYGON",
    "UNKNOWN",
    "flag_choices",
    "label_config",
    "stage1_config",
    "stage2_config",
]
