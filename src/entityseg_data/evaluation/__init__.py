"""Class-agnostic entity evaluation (AP^e, AR, boundary AP) and annotator consistency.

Public API (imports are lazy so that ``import entityseg_data.evaluation`` stays cheap):

* :class:`Evaluator` -- streaming ``reset()`` / ``process(gt_image, predictions)`` / ``evaluate()``
* :func:`evaluate_files` -- GT JSON vs results JSON or label-map PNG folder
* :func:`consistency` -- pairwise annotator mask mAP and category accuracy
"""

from __future__ import annotations

from typing import Any

__all__ = ["Evaluator", "consistency", "evaluate_files"]


def __getattr__(name: str) -> Any:
    if name in ("Evaluator", "evaluate_files"):
        from entityseg_data.evaluation import evaluator

        return getattr(evaluator, name)
    if name == "consistency":
        from entityseg_data.evaluation.consistency import consistency

        return consistency
    raise AttributeError(name)
