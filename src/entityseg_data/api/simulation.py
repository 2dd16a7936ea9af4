"""SIMULATED annotators for demos, tutorials and tests (no human is present; every output of
these functions is labelled as simulated where it is shown).

Re-exports the pure simulation functions of :mod:`entityseg_data.annotation.simulate`:
:func:`simulate_masks` (seeded, realistic edits of a pre-annotation label map: moved
boundaries, merges, splits, missed entities, overlaps; an :class:`EditPlan` says how many) and
:func:`simulate_name` (a free-form stage-2 name with plurals, synonyms, case, typos and the
'unknown' / 'blurred' / '<supercategory>_other' flags). Submit the results as an annotator with
:meth:`Annotation.submit <entityseg_data.api.annotation.Annotation.submit>`.
"""

from __future__ import annotations

from entityseg_data.annotation.simulate import (
    SIMULATION_LABEL,
    EditLog,
    EditPlan,
    simulate_masks,
    simulate_name,
)

__all__ = ["SIMULATION_LABEL", "EditLog", "EditPlan", "simulate_masks", "simulate_name"]
