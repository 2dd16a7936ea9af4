"""The open vocabulary of entity names (core: imports no stage).

:mod:`.vocabulary` normalises free-form stage-2 names and organises them into classes along a
WordNet tree; :mod:`.wordnet` provides the offline WordNet 3.0 it uses. Stats, evaluation and the
annotation workflow import it from here.
"""

from __future__ import annotations

from entityseg_data.vocab.vocabulary import (
    SPECIAL,
    VocabClass,
    Vocabulary,
    canonical_name,
    load_mapping,
    normalise_text,
    physical_synset,
)

__all__ = [
    "SPECIAL",
    "VocabClass",
    "Vocabulary",
    "canonical_name",
    "load_mapping",
    "normalise_text",
    "physical_synset",
]
