"""Evaluation of predictions and agreement between annotators, on files (the ``eval`` and
``consistency`` commands; a workspace's own are :meth:`Workspace.evaluate
<entityseg_data.api.workspace.Workspace.evaluate>` and :meth:`Workspace.agreement
<entityseg_data.api.workspace.Workspace.agreement>`).

>>> m = evaluate_entity("val.json", "coco_instances_results.json", boundary=True)
>>> entity_metrics_table(m)                     # rows for printing (values x100)
>>> evaluate_instance("subsets/instance.json", "results.json")["per_category"]
>>> evaluate_panoptic("subsets/panoptic.json", "pred/panoptic.json")["All"]["PQ"]
>>> evaluate_semantic("subsets/semantic_categories.json", "pred/semantic/")["mIoU"]
>>> agreement(["ann_a.json", "ann_b.json"]).to_markdown()

Every function returns the metrics dict documented in docs/evaluation.md (fractions; -1 where
a value is undefined); ``progress`` shows a tqdm bar on stderr.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.api.reports import Agreement

if TYPE_CHECKING:
    from entityseg_data.workspace import Workspace

#: detections per image for AR (AP uses 100), as COCO
MAX_DETS = (1, 10, 100)


def evaluate_entity(
    gt: str | Path | Mapping[str, Any],
    pred: str | Path | list[Any] | Mapping[str, Any],
    *,
    boundary: bool = False,
    max_dets: Sequence[int] = MAX_DETS,
    dilation_ratio: float = 0.02,
    fix_overlaps: bool = False,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Class-agnostic entity evaluation (the paper's AP^e on non-overlapping predictions, AR,
    and with ``boundary`` boundary AP) of ``pred`` (a COCO results JSON / list, or a folder of
    label-map PNGs) against a COCO / EntitySeg instance ``gt``; categories are ignored.
    ``dilation_ratio``: boundary band width as a fraction of the image diagonal;
    ``fix_overlaps``: make each image's predictions disjoint by score first (else overlaps are
    counted in ``info``: the numbers are AP, not AP^e); ``workers``: processes (0 = this one)."""
    from entityseg_data.evaluation.evaluator import evaluate_files

    return evaluate_files(
        gt,
        pred,
        boundary=boundary,
        max_dets=tuple(max_dets),
        dilation_ratio=dilation_ratio,
        fix_overlaps=fix_overlaps,
        workers=workers,
        progress=progress,
    )


def entity_metrics_table(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rows ``{metric, segm, boundary}`` of :func:`evaluate_entity`'s metrics, values as
    percentages to 3 decimals, for printing."""
    from entityseg_data.evaluation.metrics import format_table

    return format_table(dict(metrics))


def evaluate_instance(
    gt: str | Path | Mapping[str, Any],
    pred: str | Path | list[Any] | Mapping[str, Any],
    *,
    max_dets: Sequence[int] = MAX_DETS,
    progress: bool = False,
) -> dict[str, Any]:
    """Class-aware mask AP of a COCO results file (with ``category_id``) against a COCO
    instances GT (e.g. ``export subsets``' instance.json): pycocotools ``COCOeval(segm)``
    numbers (``segm``) and AP per category (``per_category``). ``max_dets`` per category."""
    from entityseg_data.evaluation.instance_eval import evaluate_instance_files

    return evaluate_instance_files(gt, pred, max_dets=tuple(max_dets), progress=progress)


def evaluate_panoptic(
    gt: str | Path | Mapping[str, Any],
    pred: str | Path | Mapping[str, Any],
    *,
    gt_folder: str | Path | None = None,
    pred_folder: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """panopticapi's PQ / SQ / RQ for ``All``, ``Things`` and ``Stuff`` (and per category) of a
    COCO panoptic prediction against a COCO panoptic GT; the PNG folders default to ``X`` for
    ``X.json``, as panopticapi. Every GT image needs a prediction."""
    from entityseg_data.evaluation.panoptic_eval import evaluate_panoptic_files

    return evaluate_panoptic_files(
        gt, pred, gt_folder=gt_folder, pred_folder=pred_folder, progress=progress
    )


def evaluate_semantic(
    gt: str | Path | Mapping[str, Any],
    pred_folder: str | Path,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """mIoU, fwIoU, mean and pixel accuracy (and IoU per class) of a folder of predicted label
    PNGs, named like the GT's, against ``export subsets``' semantic_categories.json."""
    from entityseg_data.errors import DataError
    from entityseg_data.evaluation.semantic_eval import evaluate_semantic_files

    if not Path(pred_folder).is_dir():
        raise DataError(f"{pred_folder}: the semantic predictions must be a folder of label PNGs")
    return evaluate_semantic_files(gt, pred_folder, progress=progress)


def agreement(
    sources: Sequence[str | Path | Mapping[str, Any]],
    *,
    workspace: Workspace | None = None,
    stage: int = 1,
    iou_threshold: float = 0.5,
    plain_names: bool = False,
) -> Agreement:
    """Inter-annotator agreement (the paper's Table 1) of two or more annotators: each taken as
    ground truth against each other one (mask mAP), and the category accuracy of the names of
    masks matched at IoU >= ``iou_threshold`` (in (0, 1]).

    ``sources``: COCO / EntitySeg JSON files or dicts, Label Studio JSON exports (each
    annotator in an export counts separately), or ``ws:NAME`` for an annotator's files in
    ``workspace``; ``stage``: of the exports and workspace files (2 = names). Names are
    compared through the vocabulary, or with ``plain_names`` by case and spacing only."""
    from entityseg_data.evaluation.consistency import consistency, plain_canonical

    report = consistency(
        list(sources),
        workspace=workspace,
        stage=stage,
        iou_threshold=iou_threshold,
        canonical=plain_canonical if plain_names else None,
    )
    return Agreement(stage=stage, report=report)
