"""Quality checks run on every pulled annotation (per task and annotator), and the overlap fix.

Checks (``severity`` "error" fails the annotation, "warning" is reported only):

=================  ========  ==================================================================
check              severity  meaning
=================  ========  ==================================================================
size_mismatch      error     a result's original size (or the annotation's) differs from the image
rotation           error     ``image_rotation`` other than 0
bad_result         error     an unreadable brush RLE / polygon
overlap            error*    two masks share pixels (* with policy ``reject``; with
                             ``smaller_wins``/``later_wins`` the overlap is resolved and reported
                             as a warning)
empty              warning   a region without pixels (dropped)
tiny               warning   a mask smaller than ``min_mask_area`` pixels (kept)
uncovered          warning   the unlabelled share of the image exceeds ``max_uncovered_fraction``
no_entities        error     an annotation without any mask
unnamed            error     stage 2: a region with neither a name nor a flag
missing_region     warning   stage 2: a seeded stage-1 region absent from the annotation
unknown_region     warning   stage 2: a region that was not seeded (its mask is kept)
=================  ========  ==================================================================

Overlap rules: ``smaller_wins`` gives a contested pixel to the smallest mask (ties: the earlier
region), so small entities drawn on top of large ones survive; ``later_wins`` gives it to the
region drawn last (the order of the results, as the editor paints them). Masks left empty by the
fix are dropped (reported as ``empty``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import Entity, ImageAnnotation

POLICIES = ("reject", "smaller_wins", "later_wins")
ERROR_CHECKS = {"size_mismatch", "rotation", "bad_result", "no_entities", "unnamed"}


@dataclass(frozen=True)
class QAResult:
    """The checked (and possibly fixed) annotation, its findings and summary numbers."""

    annotation: ImageAnnotation
    findings: tuple[dict[str, Any], ...] = ()
    coverage: float = 0.0  # labelled share of the image (the "valid area")
    overlap_pixels: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(f["severity"] == "error" for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "coverage": round(self.coverage, 6),
            "overlap_pixels": self.overlap_pixels,
            "findings": list(self.findings),
            **self.stats,
        }


def _finding(check: str, detail: str, severity: str | None = None, **extra: Any) -> dict[str, Any]:
    sev = severity or ("error" if check in ERROR_CHECKS else "warning")
    return {"check": check, "severity": sev, "detail": detail, **extra}


def resolve_overlaps(
    entities: Sequence[Entity], height: int, width: int, policy: str
) -> list[Entity]:
    """Entities made disjoint by ``policy`` (``smaller_wins`` or ``later_wins``); masks that end
    up empty are dropped. Pixels covered once keep their entity."""
    if policy not in ("smaller_wins", "later_wins"):
        raise ValueError(f"no overlap resolution for policy {policy!r}")
    n = len(entities)
    order = list(range(n))
    if policy == "smaller_wins":
        areas = rle_utils.areas([e.segmentation for e in entities])
        # paint the largest first so the smallest is painted last and wins; ties: earlier wins
        order = sorted(range(n), key=lambda i: (-int(areas[i]), -i))
    dtype = np.uint16 if n < 65535 else np.uint32
    lm = rle_utils.rles_to_label_map(
        [entities[i].segmentation for i in order],
        height,
        width,
        dtype=dtype,
        ids=[i + 1 for i in order],
    )
    rles = rle_utils.label_map_to_rles(lm, ids=range(1, n + 1))
    out = []
    for i, e in enumerate(entities):
        seg = rles[i + 1]
        if rle_utils.area(seg) > 0:
            out.append(replace(e, segmentation=seg))
    return out


def check_annotation(
    ann: ImageAnnotation,
    *,
    image_size: tuple[int, int] | None = None,
    parse_findings: Sequence[dict[str, Any]] = (),
    policy: str = "reject",
    min_mask_area: int = 16,
    max_uncovered_fraction: float = 0.2,
    seed_ids: Sequence[str] | None = None,
    unnamed_ids: Sequence[str] = (),
) -> QAResult:
    """Run every check on one annotation; fix overlaps when ``policy`` says so.

    Args:
        ann: the pulled annotation (COCO RLE entities).
        image_size: (height, width) of the catalog image.
        parse_findings: findings of the Label Studio result parsing (size mismatch, ...).
        policy: ``reject`` | ``smaller_wins`` | ``later_wins``.
        min_mask_area: masks smaller than this (pixels) are reported as tiny.
        max_uncovered_fraction: report when more of the image than this is unlabelled.
        seed_ids: stage 2: the ids of the seeded stage-1 regions.
        unnamed_ids: stage 2: region ids that have neither a name nor a flag.
    """
    if policy not in POLICIES:
        raise ValueError(f"overlap policy must be one of {POLICIES}, got {policy!r}")
    findings = [_finding(f["check"], f["detail"], region=f.get("region")) for f in parse_findings]
    h, w = ann.height, ann.width
    if image_size is not None and tuple(image_size) != (h, w):
        findings.append(
            _finding(
                "size_mismatch", f"annotation is {h}x{w}, image is {image_size[0]}x{image_size[1]}"
            )
        )
        return QAResult(annotation=ann, findings=tuple(findings))
    entities = []
    for e in ann.entities:
        a = rle_utils.area(e.segmentation)
        if a == 0:
            findings.append(
                _finding("empty", f"region {e.id} has no pixels (dropped)", region=e.id)
            )
            continue
        if a < min_mask_area:
            findings.append(
                _finding("tiny", f"region {e.id} has {a} pixels (< {min_mask_area})", region=e.id)
            )
        entities.append(e)
    if not entities:
        findings.append(_finding("no_entities", "the annotation has no mask"))
        return QAResult(annotation=replace(ann, entities=()), findings=tuple(findings))
    segs = [e.segmentation for e in entities]
    overlap = rle_utils.overlap_pixels(segs)
    if overlap:
        ious = rle_utils.iou_matrix(segs, segs)
        pairs = [
            (entities[i].id, entities[j].id)
            for i in range(len(entities))
            for j in range(i + 1, len(entities))
            if ious[i, j] > 0
        ]
        detail = f"{overlap} pixels are covered by several masks ({len(pairs)} pairs)"
        if policy == "reject":
            findings.append(_finding("overlap", detail, "error", pairs=pairs[:50]))
        else:
            findings.append(
                _finding("overlap", f"{detail}; resolved by {policy}", "warning", pairs=pairs[:50])
            )
            kept = resolve_overlaps(entities, h, w, policy)
            dropped = {e.id for e in entities} - {e.id for e in kept}
            for rid in sorted(dropped):
                findings.append(
                    _finding("empty", f"region {rid} is empty after the overlap fix", region=rid)
                )
            entities = kept
            segs = [e.segmentation for e in entities]
    union = rle_utils.area(rle_utils.merge(segs)) if segs else 0
    coverage = union / float(h * w)
    if 1.0 - coverage > max_uncovered_fraction:
        findings.append(
            _finding(
                "uncovered",
                f"{100 * (1 - coverage):.1f}% of the image is unlabelled "
                f"(> {100 * max_uncovered_fraction:.0f}%)",
            )
        )
    for rid in unnamed_ids:
        findings.append(_finding("unnamed", f"region {rid} has no name", region=rid))
    if seed_ids is not None:
        have = {e.id for e in entities}
        seeds = set(seed_ids)
        for rid in sorted(seeds - have):
            findings.append(
                _finding("missing_region", f"seeded region {rid} is missing", region=rid)
            )
        for rid in sorted(have - seeds):
            findings.append(_finding("unknown_region", f"region {rid} was not seeded", region=rid))
    fixed = replace(ann, entities=tuple(entities))
    stats = {"n_entities": len(entities), "min_area": min(rle_utils.areas(segs).tolist())}
    return QAResult(
        annotation=fixed,
        findings=tuple(findings),
        coverage=coverage,
        overlap_pixels=int(overlap),
        stats=stats,
    )


__all__ = ["POLICIES", "QAResult", "check_annotation", "resolve_overlaps"]
