"""Quality checks run on every pulled annotation (per task and annotator), and the overlap fix.

Checks (``severity`` "error" fails the annotation, "warning" is reported only):

=================  ========  ==================================================================
check              severity  meaning
=================  ========  ==================================================================
size_mismatch      error     a result's original size (or the annotation's) differs from the image
rotation           error     ``image_rotation`` other than 0
bad_result         error     an unreadable brush RLE / polygon
overlap            warning*  two masks shared pixels; resolved by the overlap rule (the finding
                             lists what each rule moved, from which region to which) (* error,
                             nothing resolved, with policy ``reject``)
empty              warning   a region without pixels, or left without pixels by the overlap rule
                             (dropped)
tiny               warning   a mask smaller than ``min_mask_area`` pixels (kept)
uncovered          warning   the unlabelled share of the image exceeds ``max_uncovered_fraction``
no_entities        error     an annotation without any mask
unnamed            error     stage 2: a region with neither a name nor a flag
geometry_changed   error     stage 2: a seeded region's mask differs from stage 1 (masks are
                             locked in stage 2; the stage-1 mask is kept)
unknown_region     error     stage 2: a region that was not seeded (new geometry in stage 2)
missing_region     warning   stage 2: a seeded region absent from the annotation
=================  ========  ==================================================================

The overlap rules are in :mod:`.overlap` (default ``intent``: what the annotator painted into a
region wins over what a neighbour only kept from its seed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from entityseg_data.annotation import overlap as overlap_rules
from entityseg_data.annotation.overlap import Move
from entityseg_data.errors import ConfigError
from entityseg_data.masks import rle as rle_utils
from entityseg_data.masks.store import ImageAnnotation
from entityseg_data.masks.types import EntityId

POLICIES = overlap_rules.POLICIES
ERROR_CHECKS = {
    "size_mismatch",
    "rotation",
    "bad_result",
    "no_entities",
    "unnamed",
    "geometry_changed",
    "unknown_region",
}


@dataclass(frozen=True)
class Finding:
    """One QA finding; ``pairs`` (overlapping region pairs) and ``moves`` (what the overlap rule
    did) only for ``overlap``."""

    check: str
    severity: str
    detail: str
    region: str | None = None
    pairs: tuple[tuple[str, str], ...] = ()
    moves: tuple[Move, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "severity": self.severity,
            "detail": self.detail,
        }
        if self.region is not None:
            out["region"] = self.region
        if self.pairs:
            out["pairs"] = [list(p) for p in self.pairs]
        if self.moves:
            out["moves"] = [m.to_json() for m in self.moves]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            check=str(data["check"]),
            severity=str(data.get("severity", "warning")),
            detail=str(data.get("detail", "")),
            region=data.get("region"),
            pairs=tuple((str(p[0]), str(p[1])) for p in data.get("pairs", ())),
            moves=tuple(
                Move(m["from"], m["to"], int(m["pixels"]), m["rule"]) for m in data.get("moves", ())
            ),
        )


def finding(check: str, detail: str, severity: str | None = None, **extra: Any) -> Finding:
    """A finding whose severity defaults to the check's (see the module table)."""
    sev = severity or ("error" if check in ERROR_CHECKS else "warning")
    return Finding(check=check, severity=sev, detail=detail, **extra)


@dataclass(frozen=True)
class QAResult:
    """The checked (and possibly fixed) annotation, its findings and summary numbers."""

    annotation: ImageAnnotation
    findings: tuple[Finding, ...] = ()
    coverage: float = 0.0  # labelled share of the image (the "valid area")
    overlap_pixels: int = 0
    moved: Mapping[str, int] = field(default_factory=dict)  # overlap rule clause -> pixels
    stats: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def with_findings(self, extra: Sequence[Finding]) -> QAResult:
        return replace(self, findings=(*self.findings, *extra))

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "coverage": round(self.coverage, 6),
            "overlap_pixels": self.overlap_pixels,
            "moved": dict(self.moved),
            "findings": [f.to_json() for f in self.findings],
            **self.stats,
        }


def check_annotation(
    ann: ImageAnnotation,
    *,
    image_size: tuple[int, int] | None = None,
    parse_findings: Sequence[Mapping[str, Any]] = (),
    policy: str = "intent",
    seeds: Mapping[EntityId, Mapping[str, Any]] | None = None,
    min_mask_area: int = 16,
    max_uncovered_fraction: float = 0.2,
    stage2: Any = None,
) -> QAResult:
    """Run every check on one annotation; resolve overlaps with ``policy``.

    Args:
        ann: the pulled annotation (COCO RLE entities, as drawn).
        image_size: (height, width) of the catalog image.
        parse_findings: problems met reading the tool's results (dicts with check/detail/region).
        policy: ``intent`` | ``reject`` | ``smaller_wins`` | ``later_wins`` (:mod:`.overlap`).
        seeds: region id -> the mask it started from (the ``intent`` rule needs them).
        min_mask_area: masks smaller than this (pixels) are reported as tiny.
        max_uncovered_fraction: report when more of the image than this is unlabelled.
        stage2: stage 2: the :class:`~.workflow.Stage2Merge` (unnamed regions, geometry
            changes, new and deleted regions); its annotation is ``ann``.
    """
    if policy not in POLICIES:
        raise ConfigError(f"annotation.overlap_policy must be one of {POLICIES}, got {policy!r}")
    findings = [finding(f["check"], f["detail"], region=f.get("region")) for f in parse_findings]
    h, w = ann.height, ann.width
    if image_size is not None and tuple(image_size) != (h, w):
        findings.append(
            finding(
                "size_mismatch", f"annotation is {h}x{w}, image is {image_size[0]}x{image_size[1]}"
            )
        )
        return QAResult(annotation=ann, findings=tuple(findings))
    if stage2 is not None:
        for ch in stage2.changed:
            findings.append(
                finding(
                    "geometry_changed",
                    f"region {ch.region}: mask changed in stage 2 (+{ch.added} / -{ch.removed} "
                    "px); the stage-1 mask is kept",
                    region=ch.region,
                )
            )
        for rid in stage2.unseeded:
            findings.append(
                finding(
                    "unknown_region", f"region {rid} was not seeded (new in stage 2)", region=rid
                )
            )
    entities = []
    for e in ann.entities:
        a = rle_utils.area(e.segmentation)
        if a == 0:
            findings.append(finding("empty", f"region {e.id} has no pixels (dropped)", region=e.id))
            continue
        if a < min_mask_area:
            findings.append(
                finding("tiny", f"region {e.id} has {a} pixels (< {min_mask_area})", region=e.id)
            )
        entities.append(e)
    if not entities:
        findings.append(finding("no_entities", "the annotation has no mask"))
        return QAResult(annotation=replace(ann, entities=()), findings=tuple(findings))
    res = overlap_rules.resolve(entities, h, w, policy, seeds)
    moved: dict[str, int] = {}
    if res.overlap_pixels:
        segs = [e.segmentation for e in entities]
        ious = rle_utils.iou_matrix(segs, segs)
        pairs = tuple(
            (entities[i].id, entities[j].id)
            for i in range(len(entities))
            for j in range(i + 1, len(entities))
            if ious[i, j] > 0
        )
        detail = f"{res.overlap_pixels} pixels are covered by several masks ({len(pairs)} pairs)"
        if policy == "reject":
            findings.append(finding("overlap", detail, "error", pairs=pairs[:50]))
        else:
            moved = res.moved_by_rule()
            how = ", ".join(f"{k} {v} px" for k, v in sorted(moved.items()))
            moves = tuple(sorted(res.moves, key=lambda m: -m.pixels))
            findings.append(
                finding(
                    "overlap",
                    f"{detail}; resolved by {policy} ({how})",
                    "warning",
                    pairs=pairs[:50],
                    moves=moves[:100],
                )
            )
            for rid in res.dropped:
                findings.append(
                    finding("empty", f"region {rid} is empty after the overlap rule", region=rid)
                )
            entities = list(res.entities)
    segs = [e.segmentation for e in entities]
    union = rle_utils.area(rle_utils.merge(segs)) if segs else 0
    coverage = union / float(h * w)
    if 1.0 - coverage > max_uncovered_fraction:
        findings.append(
            finding(
                "uncovered",
                f"{100 * (1 - coverage):.1f}% of the image is unlabelled "
                f"(> {100 * max_uncovered_fraction:.0f}%)",
            )
        )
    if stage2 is not None:
        for rid in stage2.unnamed:
            findings.append(finding("unnamed", f"region {rid} has no name", region=rid))
        for rid in stage2.deleted:
            findings.append(
                finding("missing_region", f"seeded region {rid} is missing", region=rid)
            )
    fixed = replace(ann, entities=tuple(entities))
    stats = {"n_entities": len(entities), "min_area": min(rle_utils.areas(segs).tolist())}
    return QAResult(
        annotation=fixed,
        findings=tuple(findings),
        coverage=coverage,
        overlap_pixels=int(res.overlap_pixels),
        moved=moved,
        stats=stats,
    )


__all__ = ["ERROR_CHECKS", "POLICIES", "Finding", "QAResult", "check_annotation", "finding"]
