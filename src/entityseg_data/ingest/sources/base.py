"""The source interface: a source yields :class:`Item` records; the pipeline fetches them.

Adding a source is one small class: subclass :class:`Source`, set ``kind``, implement
:meth:`Source.items`, and register it in :data:`entityseg_data.ingest.sources.SOURCE_KINDS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# A callable run in a worker thread after the image is decoded. It receives the raw (pre-EXIF)
# size (H, W) and the EXIF orientation and returns a pre-annotation payload (see
# ``entityseg_data.ingest.preannotations``) or None.
PreAnnotationFn = Callable[[int, int, int], Any]


@dataclass(frozen=True)
class Item:
    """One candidate image from a source.

    Exactly one of ``path`` (a local file) and ``url`` (http/https) says where the bytes are;
    a local item may still carry the ``url`` it originally came from (provenance).

    Fields:
        source: adapter kind (``folder``, ``urls``, ``coco``, ``ade20k``, ``unsplash``, ``laion``).
        source_id: id unique within ``source`` (the resume key together with ``source``).
        declared_width / declared_height: size announced by the source's metadata (pixels), used
            only by pre-download filters; the stored size is always measured.
        declared_flags: source metadata flags used by pre-download filters (e.g. LAION ``NSFW``).
        extra: JSON-able metadata kept in ``images.extra`` (caption, similarity, ...).
        pre_annotation: optional callable producing pre-annotation masks (COCO sources).
        annotations_approved: the source's masks are approved annotations, not suggestions
            (``export convert``: written as approved stage-1 + stage-2 annotations by the
            annotator ``import`` instead of a prediction).
        problem: set when the source could not describe this entry properly (an unreadable
            sub-folder, a symlink loop, a malformed metadata row): the pipeline records the item
            as failed with ``problem_kind`` and this message and fetches nothing, so one bad
            entry is reported and never stops the rest of the source.
    """

    source: str
    source_id: str
    path: str | None = None
    url: str | None = None
    license: str | None = None
    author: str | None = None
    attribution: str | None = None
    domain_tags: tuple[str, ...] = ()
    declared_width: int | None = None
    declared_height: int | None = None
    declared_flags: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    pre_annotation: PreAnnotationFn | None = None
    pre_annotation_version: str | None = None
    annotations_approved: bool = False
    problem: str | None = None
    problem_kind: str = "bad_record"

    @property
    def is_remote(self) -> bool:
        return self.path is None


class Source(ABC):
    """A place images come from. Subclasses are small and cheap to construct.

    ``label`` names the source in reports (by default the spec it was built from).
    """

    kind: str = "source"

    def __init__(self, *, label: str | None = None) -> None:
        self.label = label or self.kind

    @abstractmethod
    def items(self) -> Iterator[Item]:
        """Yield the candidate items, streaming (never load a LAION-size list in memory)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


def text_id(value: str) -> str:
    """``value`` as valid UTF-8 text for the catalog: a file name that is not UTF-8 (a
    surrogate-escaped ``str`` from the file system) gets its bad bytes as ``\\xNN`` escapes."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def clean(value: Any) -> str | None:
    """Text of a metadata value, or None for empty/NaN/None."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    text = str(value).strip()
    return text or None


def to_int(value: Any) -> int | None:
    """An integer metadata value, or None when missing or unparsable."""
    try:
        if value is None or (isinstance(value, float) and value != value):
            return None
        return int(float(value))
    except (TypeError, ValueError):
        return None
