"""Choose the next images to annotate and write them to the catalog as a named selection.

Candidates are the accepted images with no stage-1 annotation yet (no row, or only
``pending``) and, with ``selection.exclude_selected``, in no earlier selection. The
``uncertainty`` strategy scores each candidate's newest prediction
(:func:`~entityseg_data.annotation.selection.prediction_signals`), reads its CLIP image
embedding from the workspace cache written by the ingest NSFW stage
(:mod:`entityseg_data.catalog.embeddings`, keyed by the image's sha256 and the ingest section's
CLIP model), and runs :func:`~entityseg_data.annotation.selection.k_center_greedy` with the images
already annotated (and earlier selections) as centers, so the choice goes where nothing is
annotated yet. The ``random`` strategy draws with the seed. Both honour per-source quotas.

The selection (record + items with scores, signals and reasons) is stored in one transaction;
``annotate push --selection NAME`` then sends exactly those images (:mod:`.push`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entityseg_data.annotation.selection import (
    Duplicate,
    ImageSignals,
    UncertaintyWeights,
    k_center_greedy,
    parse_quotas,
    payload_signals,
    prediction_signals,
    random_pick,
    uncertainty,
)
from entityseg_data.catalog import Catalog, ImageRecord, SelectionItem, SelectionRecord
from entityseg_data.catalog.embeddings import EmbeddingCache, cache_key, cache_path
from entityseg_data.catalog.predictions import prediction_masks, read_prediction
from entityseg_data.config.ingest import IngestConfig
from entityseg_data.config.selection import SelectionConfig
from entityseg_data.errors import ConfigError, DataError, RLEError
from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)

STRATEGIES = ("uncertainty", "random")


@dataclass(frozen=True)
class SelectionResult:
    """What :func:`select_images` chose and why.

    ``record`` / ``items``: as stored in the catalog; ``candidates``: images that could be
    chosen; ``covered``: images counted as covered already (annotated, earlier selections);
    ``duplicates``: candidates dropped as near duplicates; ``skipped``: ``(image id, reason)``
    of candidates left out (no embedding); ``problems``: ``(image id, message)`` of unreadable
    predictions (scored as unpredicted); ``quota_full``: sources whose quota filled up."""

    record: SelectionRecord
    items: tuple[SelectionItem, ...]
    candidates: int
    covered: int
    duplicates: tuple[Duplicate, ...] = ()
    skipped: tuple[tuple[int, str], ...] = ()
    problems: tuple[tuple[int, str], ...] = ()
    quota_full: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def image_ids(self) -> list[int]:
        """The chosen image ids in the order chosen."""
        return [it.image_id for it in self.items]

    def to_json(self) -> dict[str, Any]:
        return {
            "selection": self.record.to_dict(),
            "items": [it.to_dict() for it in self.items],
            "candidates": self.candidates,
            "covered": self.covered,
            "duplicates": [vars(d) for d in self.duplicates],
            "skipped": [{"image_id": i, "reason": r} for i, r in self.skipped],
            "problems": [{"image_id": i, "error": e} for i, e in self.problems],
            "quota_full": list(self.quota_full),
        }


def annotated_ids(cat: Catalog) -> set[int]:
    """Images with a stage-1 annotation row beyond ``pending`` (pushed, pulled, approved...)."""
    return {r.image_id for r in cat.annotations(stage=1) if r.status != "pending"}


def selected_ids(cat: Catalog, *, but: str | None = None) -> set[int]:
    """Images in any stored selection (except the one named ``but``)."""
    out: set[int] = set()
    for rec in cat.selections():
        if rec.name != but:
            out.update(it.image_id for it in cat.selection(rec.name))
    return out


def candidates_and_covered(
    cat: Catalog, config: SelectionConfig, *, replacing: str | None = None
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """(candidates, covered): accepted images not annotated yet (and, with
    ``exclude_selected``, in no other selection), by id; and the accepted images that count as
    covered (annotated when ``avoid_annotated``, plus earlier selections' when excluded)."""
    images = cat.images(status="accepted")
    done = annotated_ids(cat)
    chosen = selected_ids(cat, but=replacing) if config.exclude_selected else set()
    cands = [r for r in images if r.id not in done and r.id not in chosen]
    cover_ids = (done if config.avoid_annotated else set()) | chosen
    covered = [r for r in images if r.id in cover_ids]
    return cands, covered


def embedding_file(ws: Workspace, ingest: IngestConfig) -> Path:
    """The CLIP embedding cache of the workspace's ingest CLIP model."""
    return cache_path(ws.cache_dir, cache_key(ingest.clip_model, ingest.clip_pretrained))


def load_embeddings(path: Path, images: Sequence[ImageRecord]) -> dict[int, np.ndarray]:
    """Image id -> L2-normalised embedding (D,) float32 of the images found in the cache file
    ``path`` (missing file: none)."""
    if not path.exists():
        return {}
    with EmbeddingCache(path) as cache:
        vecs = cache.get_images([r.sha256 for r in images])
    out = {}
    for r in images:
        v = vecs.get(r.sha256)
        if v is not None:
            v = np.asarray(v, dtype=np.float32)
            norm = float(np.linalg.norm(v.astype(np.float64)))
            out[r.id] = (v / np.float32(norm)) if norm > 0 else v
    return out


def missing_embeddings(
    ws: Workspace, config: SelectionConfig, ingest: IngestConfig
) -> list[ImageRecord]:
    """Candidates and covered images whose embedding is not in the cache (the API embeds them
    with the ingest CLIP when ``embed_missing``)."""
    with ws.catalog() as cat:
        cands, covered = candidates_and_covered(cat, config)
    wanted = cands + covered
    have = load_embeddings(embedding_file(ws, ingest), wanted)
    return [r for r in wanted if r.id not in have]


def image_signals(
    ws: Workspace, cat: Catalog, image_id: int, model_version: str
) -> tuple[ImageSignals | None, str | None]:
    """(signals of the image's newest prediction (of ``model_version`` when given) or None,
    problem text when the prediction file is unreadable)."""
    rec = cat.latest_prediction(image_id, model_version or None)
    if rec is None:
        return None, None
    try:
        fast = payload_signals(read_prediction(Path(ws.root), rec))
        if fast is not None:
            return fast, None
        return prediction_signals(prediction_masks(Path(ws.root), rec)), None
    except (DataError, RLEError) as exc:
        return None, str(exc)


def _phash(record: ImageRecord) -> int | None:
    """The image's 64-bit perceptual hash from the catalog (hex), or None."""
    try:
        return int(record.phash, 16) & 0xFFFFFFFFFFFFFFFF if record.phash else None
    except ValueError:
        return None


def default_name(cat: Catalog, strategy: str) -> str:
    """The first free ``<strategy>-<k>`` (k = 1, 2, ...)."""
    taken = {r.name for r in cat.selections()}
    k = 1
    while f"{strategy}-{k}" in taken:
        k += 1
    return f"{strategy}-{k}"


def dedup_distance(similarity: float) -> float:
    """Euclidean distance between unit vectors of cosine ``similarity`` (1 -> 0: off)."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * float(similarity)))


def select_images(
    ws: Workspace,
    config: SelectionConfig,
    ingest: IngestConfig,
    *,
    n: int,
    name: str | None = None,
    seed: int = 0,
    replace: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SelectionResult:
    """Choose up to ``n`` images and store them as selection ``name`` (default: the first free
    ``<strategy>-<k>``); see the module docstring. ``seed`` drives the random strategy.
    ``progress(done, total)`` follows the scoring of the candidates."""
    if n < 1:
        raise ConfigError(f"select: n must be at least 1, got {n}")
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"select: strategy must be one of {STRATEGIES}, got {config.strategy!r}")
    if name is not None and not name.strip():
        raise ConfigError("select: the selection name must not be empty")
    quotas = parse_quotas(config.quotas, n)
    weights = UncertaintyWeights(config.score_weight, config.area_weight, config.views_weight)
    with ws.catalog() as cat:
        name = name or default_name(cat, config.strategy)
        if cat.selection_info(name) is not None and not replace:
            raise ConfigError(
                f"a selection named {name!r} exists already: choose another --name or --replace"
            )
        cands, covered = candidates_and_covered(cat, config, replacing=name)
        by_id = {r.id: r for r in cands}
        signals: dict[int, tuple[ImageSignals | None, str | None]] = {}

        def score(ids: Sequence[int]) -> None:
            for k, i in enumerate(ids):
                signals[i] = image_signals(ws, cat, i, config.model_version)
                if progress is not None:
                    progress(k + 1, len(ids))

        skipped: list[tuple[int, str]] = []
        duplicates: tuple[Duplicate, ...] = ()
        quota_full: tuple[str, ...] = ()
        rows: list[tuple[int, float, float | None, float | None, tuple[str, ...]]] = []
        if config.strategy == "random":
            chosen = random_pick(
                [r.id for r in cands],
                n,
                seed=seed,
                groups=[r.source for r in cands],
                quotas=quotas,
            )
            score(chosen)
            for i in chosen:
                sig, _ = signals[i]
                u, why = uncertainty(sig, weights, missing=config.unpredicted_uncertainty)
                rows.append((i, 0.0, u, None, (f"random draw (seed {seed})", *why)))
            emb_key = None
        else:
            path = embedding_file(ws, ingest)
            emb_key = path.stem
            emb = load_embeddings(path, cands + covered)
            usable = [r for r in cands if r.id in emb]
            skipped = [(r.id, "no CLIP embedding in the cache") for r in cands if r.id not in emb]
            if cands and not usable:
                raise DataError(
                    f"select: none of the {len(cands)} candidate images has a CLIP embedding in "
                    f"{path} (the ingest NSFW stage caches them; `select` computes missing ones "
                    "unless selection.embed_missing=false)"
                )
            score([r.id for r in usable])
            us = []
            for r in usable:
                u, _ = uncertainty(
                    signals[r.id][0], weights, missing=config.unpredicted_uncertainty
                )
                us.append(u)
            centers = [r for r in covered if r.id in emb]
            greedy = k_center_greedy(
                np.stack([emb[r.id] for r in usable]) if usable else np.zeros((0, 1)),
                n,
                ids=[r.id for r in usable],
                uncertainty=np.asarray(us, dtype=np.float64),
                uncertainty_weight=config.uncertainty_weight,
                centers=np.stack([emb[r.id] for r in centers]) if centers else None,
                center_ids=[r.id for r in centers],
                min_distance=dedup_distance(config.dedup_similarity),
                groups=[r.source for r in usable],
                quotas=quotas,
                hashes=[_phash(r) for r in usable],
                center_hashes=[_phash(r) for r in centers],
                max_hash_distance=config.dedup_phash,
            )
            duplicates, quota_full = greedy.duplicates, greedy.quota_full
            for p in greedy.picks:
                _, why = uncertainty(
                    signals[p.image_id][0], weights, missing=config.unpredicted_uncertainty
                )
                where = (
                    "first pick: nothing annotated or chosen yet"
                    if p.distance is None
                    else f"embedding distance {p.distance:.3f} to the nearest annotated/chosen"
                )
                rows.append((p.image_id, p.gain, p.uncertainty, p.distance, (*why, where)))
        problems = [(i, e) for i, (_, e) in sorted(signals.items()) if e]
        items = tuple(
            SelectionItem(
                selection=name,
                rank=k + 1,
                image_id=i,
                source=by_id[i].source,
                score=round(float(gain), 6),
                uncertainty=None if u is None else round(float(u), 6),
                distance=None if d is None else round(float(d), 6),
                signals=(
                    signals[i][0].to_json()  # type: ignore[union-attr]
                    if signals[i][0] is not None
                    else {}
                ),
                reasons=reasons,
            )
            for k, (i, gain, u, d, reasons) in enumerate(rows)
        )
        record = SelectionRecord(
            name=name,
            strategy=config.strategy,
            n_requested=n,
            n_selected=len(items),
            seed=seed,
            model_version=config.model_version or None,
            params={
                "uncertainty_weight": config.uncertainty_weight,
                "weights": {
                    "score": config.score_weight,
                    "area": config.area_weight,
                    "views": config.views_weight,
                },
                "unpredicted_uncertainty": config.unpredicted_uncertainty,
                "dedup_similarity": config.dedup_similarity,
                "dedup_phash": config.dedup_phash,
                "quotas": quotas,
                "avoid_annotated": config.avoid_annotated,
                "exclude_selected": config.exclude_selected,
                "embedding_key": emb_key,
                "candidates": len(cands),
                "covered": len(covered),
            },
        )
        cat.add_selection(record, items, replace=replace)
        stored = cat.selection_info(name) or record
    for i, e in problems:
        log.warning("select: image %s: unreadable prediction (scored as unpredicted): %s", i, e)
    return SelectionResult(
        record=stored,
        items=items,
        candidates=len(cands),
        covered=len(covered),
        duplicates=duplicates,
        skipped=tuple(skipped),
        problems=tuple(problems),
        quota_full=quota_full,
    )


__all__ = [
    "STRATEGIES",
    "SelectionResult",
    "annotated_ids",
    "candidates_and_covered",
    "default_name",
    "embedding_file",
    "load_embeddings",
    "missing_embeddings",
    "select_images",
    "selected_ids",
]
