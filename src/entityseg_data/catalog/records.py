"""Typed, frozen records returned by the :class:`~entityseg_data.catalog.store.Catalog`.

One record type per table: :class:`ImageRecord` (``images``), :class:`VerdictRecord`
(``verdicts``), :class:`AnnotationRecord` (``annotations``), :class:`PredictionRecord`
(``predictions``), :class:`LedgerItem` (``items``, the ingest resume ledger) and
:class:`DuplicateRecord` (``duplicates``). JSON columns come back decoded (``extra``, ``qa``,
``meta`` as mappings, ``domain_tags`` as a tuple); paths are relative to the workspace root.

Transitional: records also answer ``record["field"]`` and ``record.get("field")`` so that code
written against the old dict rows keeps working while it moves to attributes; new code uses
attributes (the type checker sees them).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
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


class _Record:
    """Construction from a SQLite row and the transitional dict-style access."""

    _json: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_row(cls: type[R], row: sqlite3.Row | Mapping[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        data = {k: row[k] for k in row.keys() if k in names}  # noqa: SIM118 (sqlite3.Row)
        for key in cls._json:
            if key in data:
                data[key] = _frozen_mapping(data[key])
        return cls(**data)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (mappings copied)."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
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


__all__ = [
    "AnnotationRecord",
    "AnnotationStatus",
    "DuplicateRecord",
    "ImageRecord",
    "ImageStatus",
    "LedgerItem",
    "LedgerState",
    "PredictionRecord",
    "VerdictRecord",
]
