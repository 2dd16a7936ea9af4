"""Inter-annotator consistency (the EntitySeg paper's Table 1).

For every ordered pair of annotators (A, B): A's masks are the ground truth and B's the
predictions, all with score 1 (ties keep B's file order), and the class-agnostic COCO mask mAP is
computed on the images both annotated. For every unordered pair, masks are matched one-to-one at
IoU >= ``iou_threshold`` (greedy by decreasing IoU; for non-overlapping annotations any match
above 0.5 is unique anyway) and the category accuracy is the share of matched pairs whose names
agree after normalisation with the vocabulary (``entityseg_data.vocab.canonical_name``
when available, else lower-case / trimmed / single-spaced). Pairs where either name is missing are
not counted.

Inputs (any mix, at least two annotators in total):

* COCO / EntitySeg JSON files (names from the annotation's ``name``, else its category name);
* Label Studio JSON exports (one annotator per ``completed_by``; read by the core's
  :func:`entityseg_data.io.labelstudio.ls_export_to_annotations`);
* workspace annotator ids written ``ws:<annotator>`` (files of ``masks/stage<stage>/<annotator>``).

Images are matched by image id (by ``file_name`` when the id sets do not intersect).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from entityseg_data.errors import ConfigError, DataError
from entityseg_data.evaluation.coco_io import gt_set
from entityseg_data.evaluation.image_eval import GTImage, PredImage, evaluate_pair, mask_ious
from entityseg_data.evaluation.matching import Params, accumulate, average_precision
from entityseg_data.io.coco import read_coco
from entityseg_data.io.files import json_source

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotatorSet:
    """One annotator's masks and names: ``images`` by image key, ``names`` aligned with each
    image's masks."""

    name: str
    images: dict[Any, GTImage]
    names: dict[Any, list[str | None]]
    file_names: dict[Any, str]


class PairRow(TypedDict):
    """One ordered annotator pair of :func:`consistency`'s ``pairs`` (``gt`` taken as ground
    truth, ``pred`` as prediction); mAP / accuracy in [0, 1] (-1 / None: undefined)."""

    gt: str
    pred: str
    mask_map: float
    mask_ap50: float
    category_accuracy: float | None
    matched: int
    named_pairs: int


def plain_canonical(raw: str) -> str:
    """Case- and spacing-normalised name (the fallback without the vocabulary)."""
    return " ".join(str(raw).strip().lower().split())


def default_canonical() -> Callable[[str], str]:
    """The vocabulary's ``canonical_name`` when importable, else lower-case/strip."""
    try:
        from entityseg_data.vocab import canonical_name
    except ImportError:
        log.info("vocabulary not available: names normalised by case and spaces only")
        return plain_canonical
    return canonical_name


def _from_coco(data: Mapping[str, Any], name: str, where: str | None = None) -> AnnotatorSet:
    """An annotator set of a COCO/EntitySeg dict (read by the strict :func:`read_coco`;
    ``where`` names the file in messages)."""
    ds = read_coco(data, what="annotations", name=where)
    cats = {c.id: c.name for c in ds.categories}
    # a class-agnostic file's single category ("entity"/"thing") is not a name
    if len(cats) <= 1 and set(cats.values()) <= {"entity", "thing", "object"}:
        cats = {}
    gt = gt_set(ds)
    names: dict[int, list[str | None]] = {im.id: [] for im in ds.images}
    for a in ds.annotations:
        n = a.name or (cats.get(a.category_id) if a.category_id is not None else None)
        names[a.image_id].append(n if isinstance(n, str) and n.strip() else None)
    return AnnotatorSet(name=name, images=gt.images, names=names, file_names=gt.file_names)


def _from_image_annotations(anns: Sequence[Any], name: str) -> AnnotatorSet:
    from entityseg_data.masks.store import annotations_to_coco

    return _from_coco(annotations_to_coco(list(anns)), name)


def _is_ls_export(data: Any) -> bool:
    """A Label Studio export: ``{"tasks": [...]}`` or a list of task objects (each with a
    ``data`` object; ``annotations``, when present, a list of objects with a ``result``)."""
    if isinstance(data, Mapping) and "tasks" in data:
        return True
    if not isinstance(data, list) or not data:
        return False
    for task in data:
        if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
            return False
        anns = task.get("annotations", [])
        if not isinstance(anns, list) or not all(
            isinstance(a, Mapping) and "result" in a for a in anns
        ):
            return False
    return True


def load_annotator_sets(
    sources: Sequence[Any], *, workspace: Workspace | None = None, stage: int = 1
) -> list[AnnotatorSet]:
    """Annotator sets of each source (a Label Studio export may yield several)."""
    sets: list[AnnotatorSet] = []
    for src in sources:
        if isinstance(src, AnnotatorSet):
            sets.append(src)
            continue
        if isinstance(src, str) and src.startswith("ws:"):
            if workspace is None:
                raise DataError(f"{src}: a workspace annotator id needs a workspace (--workspace)")
            from entityseg_data.masks.store import workspace_to_coco

            ann = src[3:]
            coco = workspace_to_coco(workspace, stage=stage, annotator=ann, statuses=None)
            if not coco["images"]:
                raise DataError(f"{src}: no stage-{stage} annotation files of {ann!r}")
            sets.append(_from_coco(coco, ann))
            continue
        data, where = json_source(src, "annotations")
        label = Path(src).stem if isinstance(src, str | Path) else where
        if _is_ls_export(data):
            from entityseg_data.io.labelstudio import ls_export_to_annotations

            try:
                per = ls_export_to_annotations(data, stage=stage)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DataError(f"{where}: malformed Label Studio export ({exc!r})") from None
            if not per:
                raise DataError(f"{where}: the Label Studio export has no annotations")
            for ann_name, anns in sorted(per.items()):
                sets.append(_from_image_annotations(anns, f"{label}:{ann_name}"))
        elif isinstance(data, Mapping):
            sets.append(_from_coco(data, label, where))
        else:
            kind = "a JSON list" if isinstance(data, list) else f"JSON {type(data).__name__}"
            raise DataError(
                f"{where}: neither a COCO/EntitySeg file (an object with 'images') nor a Label "
                f"Studio export (a list of tasks with 'data'): got {kind}"
            )
    names = [s.name for s in sets]
    if len(set(names)) != len(names):  # same stem twice: make names unique
        sets = [
            AnnotatorSet(f"{s.name}#{i + 1}", s.images, s.names, s.file_names)
            for i, s in enumerate(sets)
        ]
    return sets


def _rekey(sets: list[AnnotatorSet]) -> tuple[list[AnnotatorSet], list[Any], str]:
    common_ids = set.intersection(*(set(s.images) for s in sets))
    if common_ids:
        return sets, sorted(common_ids), "image_id"
    by_name = [{Path(fn).name: k for k, fn in s.file_names.items()} for s in sets]
    common = set.intersection(*(set(b) for b in by_name))
    if not common:
        raise DataError("the annotation sets have no image in common (by id or file name)")
    out = []
    order = sorted(common)
    for s, b in zip(sets, by_name):
        out.append(
            AnnotatorSet(
                s.name,
                {fn: s.images[b[fn]] for fn in order},
                {fn: s.names[b[fn]] for fn in order},
                {fn: fn for fn in order},
            )
        )
    return out, order, "file_name"


def match_pairs(ious: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """One-to-one (row, col, iou) matches with IoU >= threshold, greedy by decreasing IoU
    (ties: lower row, then lower column)."""
    if ious.size == 0:
        return []
    r, c = np.nonzero(ious >= threshold)
    order = np.lexsort((c, r, -ious[r, c]))
    used_r, used_c, out = set(), set(), []
    for i in order:
        a, b = int(r[i]), int(c[i])
        if a in used_r or b in used_c:
            continue
        used_r.add(a)
        used_c.add(b)
        out.append((a, b, float(ious[a, b])))
    return out


def consistency(
    sources: Sequence[Any],
    *,
    workspace: Workspace | None = None,
    stage: int = 1,
    iou_threshold: float = 0.5,
    canonical: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Pairwise consistency of two or more annotators.

    Args:
        sources: paths / dicts of COCO files or Label Studio exports, ``ws:<annotator>`` ids, or
            :class:`AnnotatorSet` objects.
        workspace: the Workspace for ``ws:`` ids.
        stage: annotation stage of Label Studio exports and workspace files.
        iou_threshold: mask match threshold for category accuracy.
        canonical: name normaliser (default :func:`default_canonical`).

    Returns:
        ``{"annotators": [names], "num_images", "image_key": "image_id" | "file_name",
        "images_not_shared": {name: images left out},
        "mask_map": {gt: {pred: AP}}, "mask_ap50": {gt: {pred: AP50}},
        "category_accuracy": {a: {b: acc | None}}, "matched_pairs": {a: {b: n}},
        "pairs": [{"gt", "pred", "mask_map", "mask_ap50", "category_accuracy", "matched",
        "named_pairs"}], "mean_mask_map", "mean_category_accuracy",
        "per_image": [{"image", "gt", "pred", "ap", "n_gt", "n_pred", "matched", "mean_iou",
        "category_accuracy"}]}``. AP values are fractions (-1 when undefined); accuracies are
        fractions or None when no named pair exists.
    """
    if not 0.0 < iou_threshold <= 1.0:  # (also False for NaN: probe 5.13)
        raise ConfigError(f"the IoU threshold must be in (0, 1], got {iou_threshold}")
    sets = load_annotator_sets(sources, workspace=workspace, stage=stage)
    if len(sets) < 2:
        raise DataError("consistency needs at least two annotators")
    all_sets = sets
    sets, keys, key_mode = _rekey(sets)
    not_shared = {s.name: len(s.images) - len(keys) for s in all_sets}
    if any(not_shared.values()):
        log.info("images not annotated by every annotator are left out: %s", not_shared)
    for s in sets[1:]:
        for k in keys:
            a, b = sets[0].images[k], s.images[k]
            if (a.height, a.width) != (b.height, b.width):
                raise DataError(
                    f"image {k}: size {a.height}x{a.width} ({sets[0].name}) differs from "
                    f"{b.height}x{b.width} ({s.name})"
                )
    canon = functools.lru_cache(maxsize=None)(canonical or default_canonical())
    params = Params()
    names = [s.name for s in sets]
    # annotator taken as GT -> annotator taken as prediction -> value
    mask_map: dict[str, dict[str, float]] = {a: {} for a in names}
    ap50: dict[str, dict[str, float]] = {a: {} for a in names}
    acc: dict[str, dict[str, float | None]] = {a: {} for a in names}
    matched_n: dict[str, dict[str, int]] = {a: {} for a in names}
    pairs: list[PairRow] = []
    per_image: list[dict[str, Any]] = []
    for i, g in enumerate(sets):
        for j, p in enumerate(sets):
            if i == j:
                continue
            results = []
            n_match = n_named = n_agree = 0
            for k in keys:
                gi = g.images[k]
                pi = p.images[k]
                # the predictions' crowd flags are irrelevant; every mask gets score 1
                pred = PredImage(rles=pi.rles, scores=np.ones(len(pi.rles)))
                res = evaluate_pair(gi, pred, params)
                results.append(res.segm)
                ious = mask_ious(list(pi.rles), list(gi.rles), [False] * len(gi.rles))
                m = match_pairs(ious.T, iou_threshold)  # rows = g, cols = p
                n_named_img = n_agree_img = 0
                for a_idx, b_idx, _ in m:
                    na, nb = g.names[k][a_idx], p.names[k][b_idx]
                    if na is None or nb is None:
                        continue
                    n_named_img += 1
                    n_agree_img += int(canon(na) == canon(nb))
                n_match += len(m)
                n_named += n_named_img
                n_agree += n_agree_img
                single = accumulate([res.segm], params)
                per_image.append(
                    {
                        "image": k,
                        "gt": g.name,
                        "pred": p.name,
                        "ap": average_precision(single, params, None, "all", 100),
                        "n_gt": len(gi.rles),
                        "n_pred": len(pi.rles),
                        "matched": len(m),
                        "mean_iou": float(np.mean([x[2] for x in m])) if m else 0.0,
                        "category_accuracy": n_agree_img / n_named_img if n_named_img else None,
                    }
                )
            a_all = accumulate(results, params)
            mask_map[g.name][p.name] = average_precision(a_all, params, None, "all", 100)
            ap50[g.name][p.name] = average_precision(a_all, params, 0.5, "all", 100)
            accuracy = n_agree / n_named if n_named else None
            acc[g.name][p.name] = accuracy
            matched_n[g.name][p.name] = n_match
            pairs.append(
                {
                    "gt": g.name,
                    "pred": p.name,
                    "mask_map": mask_map[g.name][p.name],
                    "mask_ap50": ap50[g.name][p.name],
                    "category_accuracy": accuracy,
                    "matched": n_match,
                    "named_pairs": n_named,
                }
            )
    maps = [x["mask_map"] for x in pairs if x["mask_map"] >= 0]
    accs = [x["category_accuracy"] for x in pairs if x["category_accuracy"] is not None]
    return {
        "annotators": names,
        "num_images": len(keys),
        "image_key": key_mode,
        "images_not_shared": not_shared,
        "iou_threshold": iou_threshold,
        "mask_map": mask_map,
        "mask_ap50": ap50,
        "category_accuracy": acc,
        "matched_pairs": matched_n,
        "pairs": pairs,
        "mean_mask_map": float(np.mean(maps)) if maps else -1.0,
        "mean_category_accuracy": float(np.mean(accs)) if accs else None,
        "per_image": per_image,
    }


def _pct(v: float | None) -> str:
    return "-" if v is None or v < 0 else f"{100 * v:.1f}"


def _matrix(names: Sequence[str], table: Mapping[str, Mapping[str, Any]], corner: str) -> list:
    lines = [f"| {corner} | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for a in names:
        cells = ["" if a == b else _pct(table[a][b]) for b in names]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(report: dict[str, Any], worst: int = 10) -> str:
    """The two Table-1 matrices (mask mAP with rows = ground truth, category accuracy) and the
    images with the lowest per-image AP."""
    names = report["annotators"]
    lines = [
        f"Consistency over {report['num_images']} images ({len(names)} annotators).",
        "",
        "Mask mAP (%), rows = taken as ground truth, columns = taken as predictions:",
        "",
        *_matrix(names, report["mask_map"], "GT \\ pred"),
        "",
        f"Category accuracy (%) on masks matched at IoU >= {report['iou_threshold']}:",
        "",
        *_matrix(names, report["category_accuracy"], ""),
    ]
    mean_acc = report["mean_category_accuracy"]
    lines += [
        "",
        f"Mean mask mAP: {_pct(report['mean_mask_map'])}; mean category accuracy: {_pct(mean_acc)}",
    ]
    rows = sorted((r for r in report["per_image"] if r["ap"] >= 0), key=lambda r: r["ap"])
    if rows and worst:
        lines += [
            "",
            f"Most disagreeing images (lowest per-image AP, {min(worst, len(rows))} shown):",
            "",
            "| image | GT | pred | AP | matched | GT masks | pred masks | category acc. |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows[:worst]:
            lines.append(
                f"| {r['image']} | {r['gt']} | {r['pred']} | {_pct(r['ap'])} | {r['matched']} | "
                f"{r['n_gt']} | {r['n_pred']} | {_pct(r['category_accuracy'])} |"
            )
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of dict rows (the ``pairs`` or ``per_image`` lists)."""
    import csv
    import io

    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()
