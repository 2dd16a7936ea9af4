"""SIMULATED annotators for demos, tutorials and tests (no human is present; every output of
these functions is labelled as simulated where it is shown).

Re-exports the pure simulation functions of :mod:`entityseg_data.annotation.simulate`:
:func:`simulate_masks` (seeded, realistic edits of a pre-annotation label map: moved
boundaries, merges, splits, missed entities, overlaps; an :class:`EditPlan` says how many) and
:func:`simulate_name` (a free-form stage-2 name with plurals, synonyms, case, typos and the
'unknown' / 'blurred' / '<supercategory>_other' flags). Submit the results as an annotator with
:meth:`Annotation.submit <entityseg_data.api.annotation.Annotation.submit>`, with a SIMULATED
lead time from :func:`simulated_seconds` (an assumed cost per edit, :class:`LeadTimeModel`) and
``simulated=True`` so the catalog and every report label it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from entityseg_data.annotation.simulate import (
    SIMULATION_LABEL,
    EditLog,
    EditPlan,
    LeadTimeModel,
    simulate_masks,
    simulate_name,
)

if TYPE_CHECKING:
    from entityseg_data.masks.types import ImageMasks


def simulated_seconds(
    seed: ImageMasks | None,
    drawn: ImageMasks,
    *,
    stage: int = 1,
    model: LeadTimeModel | None = None,
) -> float:
    """SIMULATED lead time (seconds) of a task whose seed was ``seed`` (None: no seed) and whose
    submission is ``drawn``: :class:`LeadTimeModel` applied to the edit breakdown
    (:func:`entityseg_data.annotation.rounds.edit_breakdown`). Record it with
    ``Annotation.submit(..., lead_time=..., simulated=True)``."""
    from entityseg_data.annotation.rounds import edit_breakdown
    from entityseg_data.annotation.simulate import simulated_lead_time
    from entityseg_data.api.annotation import as_annotation

    final = as_annotation(drawn, stage=stage, annotator="simulated")
    start = None if seed is None else as_annotation(seed, stage=stage, annotator="seed")
    return simulated_lead_time(edit_breakdown(start, final), stage=stage, model=model)


__all__ = [
    "SIMULATION_LABEL",
    "EditLog",
    "EditPlan",
    "LeadTimeModel",
    "simulate_masks",
    "simulate_name",
    "simulated_seconds",
]
