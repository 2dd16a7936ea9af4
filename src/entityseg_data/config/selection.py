"""Selection settings: how ``entityseg-data select`` chooses the next images to annotate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from entityseg_data.config_fields import Checked, bounded

QUOTA_PATTERN = r"[^=\s]+=([0-9]+|0?\.[0-9]+)"


@dataclass(frozen=True)
class SelectionConfig(Checked):
    """Choosing what to annotate next (docs/selection.md).

    Attributes:
        strategy: ``uncertainty`` (model uncertainty blended with k-center diversity over the
            cached CLIP image embeddings) or ``random`` (the seeded baseline, for comparison).
        uncertainty_weight: ``w`` in [0, 1]: each pick maximises ``(1 - w) * distance / max
            distance + w * uncertainty`` (0 = diversity alone, 1 = uncertainty alone).
        score_weight / area_weight / views_weight: weights of the uncertainty terms
            ``1 - mean entity score``, ``1 - covered area fraction`` and the full/crop view
            disagreement (a term the prediction does not carry is left out).
        unpredicted_uncertainty: uncertainty of an image without a prediction.
        model_version: score this model's predictions ('' = each image's newest).
        dedup_similarity: drop a candidate whose embedding has at least this cosine similarity
            with an image annotated or chosen (1 = off).
        dedup_phash: drop a candidate whose perceptual hash (from ingest) is within this many
            bits of an image annotated or chosen (-1 = off; ingest's own near-duplicate rule
            uses 6 by default, so this catches what a laxer ingest let through).
        quotas: the most images per source, ``SOURCE=COUNT`` or ``SOURCE=FRACTION`` of N.
        avoid_annotated: the images already annotated (pushed or approved) count as covered,
            so the choice goes where nothing is annotated yet.
        exclude_selected: images in an earlier selection are not candidates (and count as
            covered).
        embed_missing: compute the CLIP embeddings missing from the cache (with the ingest
            section's CLIP) before choosing; off: candidates without one are skipped.
    """

    strategy: Literal["uncertainty", "random"] = "uncertainty"
    uncertainty_weight: float = bounded(0.25, ge=0, le=1)
    score_weight: float = bounded(1.0, ge=0)
    area_weight: float = bounded(1.0, ge=0)
    views_weight: float = bounded(1.0, ge=0)
    unpredicted_uncertainty: float = bounded(1.0, ge=0, le=1)
    model_version: str = ""
    dedup_similarity: float = bounded(0.98, ge=0, le=1)
    dedup_phash: int = bounded(6, ge=0, le=64, off=-1)
    quotas: tuple[str, ...] = bounded(
        (), pattern=QUOTA_PATTERN, text="SOURCE=COUNT or SOURCE=FRACTION entries"
    )
    avoid_annotated: bool = True
    exclude_selected: bool = True
    embed_missing: bool = True
