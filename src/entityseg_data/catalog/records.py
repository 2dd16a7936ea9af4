"""Typed, frozen records returned by the :class:`~entityseg_data.catalog.store.Catalog`.

One record type per table: :class:`ImageRecord` (``images``), :class:`VerdictRecord`
(``verdicts``), :class:`AnnotationRecord` (``annotations``), :class:`PredictionRecord`
(``predictions``), :class:`LedgerItem` (``items``, the ingest resume ledger) and
:class:`DuplicateRecord` (``duplicates``). JSON columns come back decoded (``extra``, ``qa``,
``meta`` as mappings, ``domain_tags`` as a tuple); paths are relative to the workspace root.

Deprecated: records still answer ``record["field"]`` and ``record.get("field")`` (code written
against the old dict rows), with a ``DeprecationWarning`` naming the attribute to use; the toolkit
and its tests use attributes only (the test suite turns the warning into an error), and the
dict-style access goes in the next release.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sqlite3
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

from entityseg_data.errors import DataError

ImageStatus = Literal["accepted", "rejected", "duplicate"]
AnnotationStatus = Literal["pending", "pushed", "submitted", "pulled", "approved", "rejected"]
LedgerState = Literal["pending", "done", "failed", "duplicate", "rejected"]

R = TypeVar("R", bound="_Record")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen_mapping(value: Any) -> Mapping[str, Any]:
    if value is None or value == "":
        return _EMPTY
    if isinstance(value, str):
        value = json.loads(value)
    return MappingProxyType(dict(value))


def _dict_access(cls: type, key: str) -> None:
    warnings.warn(
        f"dict-style access to catalog records is deprecated: use {cls.__name__}.{key} "
        f"(record[{key!r}] and record.get({key!r}) go in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )


class _Record:
    """Construction from a SQLite row and the deprecated dict-style access."""

    _json: ClassVar[tuple[str, ...]] = ()
    # every record is a dataclass (declared for the type checker; set by @dataclass)
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def from_row(cls: type[R], row: sqlite3.Row | Mapping[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: row[k] for k in row.keys() if k in names}  # noqa: SIM118 (sqlite3.Row)
        for key in cls._json:
            if key in data:
                data[key] = _frozen_mapping(data[key])
        return cls(**data)

    def __getitem__(self, key: str) -> Any:
        _dict_access(type(self), key)
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        _dict_access(type(self), key)
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (mappings copied)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class ImageRecord(_Record):
    """One image of the catalog.

    Fields:
        id: catalog id.
        sha256: of the original bytes, as fetched (the exact de-dup key).
        source / source_id: the adapter (``folder``, ``urls``, ``coco``...) and the id within it.
        width / height: upright (EXIF-applied) size in pixels.
        file_path: the original bytes, relative to the workspace.
        norm_path: the normalised copy (upright RGB), relative to the workspace, when the
            original needed one; :attr:`path` picks the file to read pixels from.
        status: ``accepted`` | ``rejected`` | ``duplicate``.
        split: ``train`` | ``val`` | ``test`` | None.
        phash: 64-bit perceptual hash, 16 hex digits.
        orig_orientation: EXIF orientation tag of the original (1 = none).
        extra: source metadata (caption, raw size, normalisation steps...).
    """

    id: int
    sha256: str
    source: str
    source_id: str
    width: int | None = None
    height: int | None = None
    file_path: str | None = None
    norm_path: str | None = None
    status: str = "accepted"
    split: str | None = None
    phash: str | None = None
    url: str | None = None
    license: str | None = None
    author: str | None = None
    attribution: str | None = None
    orig_orientation: int | None = None
    mime: str | None = None
    bytes: int | None = None
    domain_tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    created_at: str | None = None

    _json: ClassVar[tuple[str, ...]] = ("extra",)

    @classmethod
    def from_row(cls, row: sqlite3.Row | Mapping[str, Any]) -> ImageRecord:
        rec = super().from_row(row)
        tags = rec.domain_tags
        if isinstance(tags, str):
            tags = json.loads(tags)
        return dataclasses.replace(rec, domain_tags=tuple(tags or ()))

    @property
    def path(self) -> str:
        """The file to read the pixels from, relative to the workspace: the normalised copy
        when there is one, else the original. Raises DataError when the image has no file."""
        rel = self.norm_path or self.file_path
        if not rel:
            raise DataError(f"image {self.id}: no file in the workspace (file_path is empty)")
        return rel


@dataclass(frozen=True)
class VerdictRecord(_Record):
    """One filter's verdict on one image (``verdict`` is ``pass`` or ``reject``)."""

    image_id: int
    filter: str
    verdict: str
    reason: str | None = None
    score: float | None = None
    created_at: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


@dataclass(frozen=True)
class AnnotationRecord(_Record):
    """Annotation state of one (image, stage, annotator).

    ``mask_path`` is the annotation file relative to the workspace (see
    :mod:`entityseg_data.masks.store`); ``qa`` the QA findings (``{"passed": bool, ...}``)."""

    image_id: int
    stage: int
    annotator: str
    status: str = "pending"
    ls_project_id: int | None = None
    ls_task_id: int | None = None
    ls_annotation_id: int | None = None
    mask_path: str | None = None
    n_entities: int | None = None
    qa: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    updated_at: str | None = None
    round_id: int | None = None

    _json: ClassVar[tuple[str, ...]] = ("qa",)

    @property
    def qa_passed(self) -> bool:
        return bool(self.qa.get("passed", False))


@dataclass(frozen=True)
class PredictionRecord(_Record):
    """A model's pre-annotation of one image: ``path`` is the prediction file relative to the
    workspace (see :mod:`entityseg_data.catalog.predictions`)."""

    image_id: int
    model_version: str
    path: str
    n_entities: int | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class RoundRecord(_Record):
    """One annotation round: a push that created tasks (issue 18).

    Fields:
        id: catalog id (rounds are numbered in push order).
        stage: 1 (masks) or 2 (names).
        model_version: the model version of the pre-annotations used as seeds (stage 1; the most
            common one when images had different ones), None when no image had a seed or for
            stage 2 (seeded with the approved stage-1 masks).
        seed_versions: seed version -> number of images pushed with it (``""``: no seed;
            stage 2: ``stage1:<annotator>``).
        selection: the name of the selection the images came from, None for a push that was
            not given one (every eligible image, by id).
        annotators: who got tasks in this round.
        images: the image ids pushed in this round.
        n_tasks: tasks created (a tiled image has several per annotator).
        created_at: when the round was recorded (UTC, ISO 8601).
    """

    id: int
    stage: int
    model_version: str | None = None
    seed_versions: Mapping[str, int] = field(default_factory=lambda: _EMPTY, hash=False)
    selection: str | None = None
    annotators: tuple[str, ...] = ()
    images: tuple[int, ...] = ()
    n_tasks: int = 0
    created_at: str | None = None

    _json: ClassVar[tuple[str, ...]] = ("seed_versions",)

    @classmethod
    def from_row(cls, row: sqlite3.Row | Mapping[str, Any]) -> RoundRecord:
        rec = super().from_row(row)
        names, ids = rec.annotators, rec.images
        names = json.loads(names) if isinstance(names, str) else names
        ids = json.loads(ids) if isinstance(ids, str) else ids
        return dataclasses.replace(
            rec,
            annotators=tuple(str(a) for a in names or ()),
            images=tuple(int(i) for i in ids or ()),
        )


IOU_BINS: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 1.0)
"""Edges of the IoU bins of edited entities: [0.50, 0.75), [0.75, 0.90), [0.90, 0.95),
[0.95, 1.00) (an IoU of exactly 1 is 'unchanged')."""


def iou_bin_labels(edges: tuple[float, ...] = IOU_BINS) -> tuple[str, ...]:
    """``("0.50-0.75", "0.75-0.90", ...)``: the keys of :attr:`EditRecord.iou_bins`."""
    return tuple(f"{a:.2f}-{b:.2f}" for a, b in itertools.pairwise(edges))


@dataclass(frozen=True)
class EditRecord(_Record):
    """One pulled submission: the time spent and the edits against the seed it started from.

    Fields:
        image_id / stage / annotator / submission: whose submission (``submission`` is the
            annotation tool's id; a rework resubmission is a new row).
        round_id: the round the task was pushed in (None: pushed before rounds were recorded).
        seed_version: the seed the task started from (stage 1: the model version of the
            pre-annotation, ``""`` for none; stage 2: ``stage1:<annotator>``).
        status: ``pulled`` or ``rejected``: the QA verdict when it was pulled.
        lead_time: seconds the annotator spent, as the tool recorded it (Label Studio's
            ``lead_time``), None when the tool has none.
        lead_time_source: ``tool`` (recorded by the annotation tool) or ``simulated`` (a
            simulated annotator's modelled time: demos and tests; reports label it), None
            without a lead time.
        created_at / updated_at: the submission's times from the tool.
        n_seed / n_final: entities in the seed and in the submission (after the overlap rule).
        unchanged / edited / deleted / added: seed entities accepted pixel for pixel, matched
            but changed, without a match; submission entities without a match (the matching
            rule: :func:`entityseg_data.annotation.rounds.edit_breakdown`).
        iou_bins: edited entities by IoU with their seed (keys :func:`iou_bin_labels`).
        pixels_changed / pixels_total: pixels whose entity differs from the seed's (matched
            entities count as the same), of the image's height x width.
        seed_ap / seed_ap50 / seed_ar / seed_boundary_ap: the seed scored as predictions against
            this submission as ground truth (class-agnostic AP^e, AP at IoU 0.5, AR@100,
            boundary AP; fractions), None when not measured.
        pulled_at: when the pull stored this row.
    """

    image_id: int
    stage: int
    annotator: str
    submission: str
    round_id: int | None = None
    seed_version: str = ""
    status: str | None = None
    lead_time: float | None = None
    lead_time_source: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    n_seed: int = 0
    n_final: int = 0
    unchanged: int = 0
    edited: int = 0
    deleted: int = 0
    added: int = 0
    iou_bins: Mapping[str, int] = field(default_factory=lambda: _EMPTY, hash=False)
    pixels_changed: int = 0
    pixels_total: int = 0
    seed_ap: float | None = None
    seed_ap50: float | None = None
    seed_ar: float | None = None
    seed_boundary_ap: float | None = None
    pulled_at: str | None = None

    _json: ClassVar[tuple[str, ...]] = ("iou_bins",)

    @property
    def simulated(self) -> bool:
        """Whether the lead time is a simulated annotator's (never a person's)."""
        return self.lead_time_source == "simulated"


@dataclass(frozen=True)
class LedgerItem(_Record):
    """One candidate item a source produced, in the ingest resume ledger.

    ``state``: pending | done | failed | duplicate | rejected; ``error_kind`` the failure or
    rejection kind (``http_404``, ``too_large``, ``prefilter:resolution``...); ``meta`` holds
    the source label and, for failures decided by a setting, the setting's value then (see
    docs/design.md, failure policy)."""

    id: int
    source: str
    source_id: str
    state: str
    url: str | None = None
    image_id: int | None = None
    error_kind: str | None = None
    error: str | None = None
    attempts: int = 0
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    updated_at: str | None = None

    _json: ClassVar[tuple[str, ...]] = ("meta",)


@dataclass(frozen=True)
class DuplicateRecord(_Record):
    """A dropped duplicate: the candidate (``dropped_*``) and the image kept in its place;
    ``kind`` is ``exact`` (same sha256) or ``near`` (pHash distance ``distance`` bits)."""

    id: int
    kept_image_id: int
    dropped_source: str
    dropped_source_id: str
    kind: str
    dropped_sha256: str | None = None
    distance: int | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class SelectionRecord(_Record):
    """A named selection of images to annotate next (``selections`` table).

    ``strategy``: ``uncertainty`` (model uncertainty + k-center diversity) or ``random`` (the
    seeded baseline); ``n_requested`` the N asked for, ``n_selected`` how many were found;
    ``model_version`` the predictions scored (None = each image's newest); ``params`` the
    settings used (weights, quotas, embedding key, ...)."""

    name: str
    strategy: str
    n_requested: int
    n_selected: int
    seed: int = 0
    model_version: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    created_at: str | None = None

    _json: ClassVar[tuple[str, ...]] = ("params",)


@dataclass(frozen=True)
class SelectionItem(_Record):
    """One image of a selection, in the order chosen (``rank`` 1 = first).

    ``score``: the gain it was chosen with (see docs/selection.md); ``uncertainty`` in [0, 1]
    (None for the random strategy); ``distance``: its embedding distance to the nearest image
    annotated or chosen before it (None when unknown); ``signals``: the uncertainty signals
    (``mean_score``, ``covered``, ``view_disagreement``...); ``reasons``: short sentences."""

    selection: str
    rank: int
    image_id: int
    source: str = ""
    score: float = 0.0
    uncertainty: float | None = None
    distance: float | None = None
    signals: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    reasons: tuple[str, ...] = ()

    _json: ClassVar[tuple[str, ...]] = ("signals",)

    @classmethod
    def from_row(cls, row: sqlite3.Row | Mapping[str, Any]) -> SelectionItem:
        data = {k: row[k] for k in row.keys()}  # noqa: SIM118 (sqlite3.Row)
        reasons = data.get("reasons") or "[]"
        return cls(
            selection=str(data["selection"]),
            rank=int(data["rank"]),
            image_id=int(data["image_id"]),
            source=str(data.get("source") or ""),
            score=float(data.get("score") or 0.0),
            uncertainty=None if data.get("uncertainty") is None else float(data["uncertainty"]),
            distance=None if data.get("distance") is None else float(data["distance"]),
            signals=_frozen_mapping(data.get("signals")),
            reasons=tuple(json.loads(reasons) if isinstance(reasons, str) else reasons),
        )


__all__ = [
    "AnnotationRecord",
    "AnnotationStatus",
    "DuplicateRecord",
    "EditRecord",
    "IOU_BINS",
    "ImageRecord",
    "ImageStatus",
    "LedgerItem",
    "LedgerState",
    "PredictionRecord",
    "RoundRecord",
    "SelectionItem",
    "SelectionRecord",
    "VerdictRecord",
    "iou_bin_labels",
]
