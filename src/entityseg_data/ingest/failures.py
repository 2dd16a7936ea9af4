"""The ingest failure policy: which failed items a rerun fetches again.

Every item a source yields gets a ledger entry (the catalog's ``items`` table). A failed item
keeps its failure ``kind``; on the next run of its source the item is

* **retried** when the cause may have gone away by itself (:data:`TRANSIENT`: timeouts, resets,
  HTTP 429/5xx, DNS, local I/O errors, and ``internal_error``, a bug or an unforeseen
  condition), unless ``ingest.retry_failed`` is false;
* **re-read** when the cause is the source entry itself (:data:`SOURCE_ENTRY`: ``bad_record``,
  a ragged CSV row or a row without a URL): no download is involved, so a row fixed in the list
  is ingested by the next run, and a row still broken fails again at no cost;
* **re-evaluated** when the cause is a setting (:data:`SETTING_KEYS`: ``too_large`` depends on
  ``max_bytes``, ``too_many_pixels`` on ``max_pixels``, ``content_type`` on ``allowed_mime``,
  ``too_many_redirects`` on ``max_redirects``): the ledger keeps the setting's value at the
  time, and the item is fetched again as soon as the setting differs (an entry without the
  stored value, from an older version, is re-evaluated once);
* **permanent** otherwise: the cause is in the data (HTTP 404, not an image, a corrupt file, a
  bad URL, a source id used twice...), and only ``ingest --retry-failed[=KIND]`` fetches it
  again.

Documented in docs/design.md ("Failure policy").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from entityseg_data.config.ingest import IngestConfig

# failures whose cause may pass without any change to the data or the settings
TRANSIENT = frozenset(
    {"timeout", "connection", "truncated", "http_429", "dns", "io_error", "internal_error"}
)
# failures decided from the source entry alone (nothing fetched): re-read on every run
SOURCE_ENTRY = frozenset({"bad_record"})
# failures decided by a setting: the config keys that decided them
SETTING_KEYS: Mapping[str, tuple[str, ...]] = {
    "too_large": ("max_bytes",),
    "too_many_pixels": ("max_pixels",),
    "content_type": ("allowed_mime",),
    "too_many_redirects": ("max_redirects",),
}
# the ledger ``meta`` key holding the settings a setting-caused failure was decided with
SETTINGS_META = "settings"

FailureClass = Literal["transient", "source", "setting", "permanent"]


def failure_class(kind: str | None) -> FailureClass:
    """``transient``, ``source``, ``setting`` or ``permanent`` (see the module doc)."""
    kind = kind or ""
    if kind in TRANSIENT or kind.startswith("http_5") or kind == "http_408":
        return "transient"
    if kind in SOURCE_ENTRY:
        return "source"
    if kind in SETTING_KEYS:
        return "setting"
    return "permanent"


def settings_snapshot(kind: str | None, config: IngestConfig) -> dict[str, Any]:
    """The values of the settings that decided a failure of ``kind`` (empty for others), as
    stored in the ledger entry's meta."""
    keys = SETTING_KEYS.get(kind or "", ())
    return {k: _plain(getattr(config, k)) for k in keys}


def should_retry(kind: str | None, meta: Mapping[str, Any], config: IngestConfig) -> bool:
    """Whether a rerun fetches a failed item of ``kind`` again (its ledger ``meta`` holds the
    settings it failed with)."""
    cls = failure_class(kind)
    if cls == "transient":
        return config.retry_failed
    if cls == "source":
        return True
    if cls == "setting":
        stored = meta.get(SETTINGS_META)
        return not isinstance(stored, Mapping) or dict(stored) != settings_snapshot(kind, config)
    return False


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


__all__ = [
    "SETTINGS_META",
    "SETTING_KEYS",
    "SOURCE_ENTRY",
    "TRANSIENT",
    "FailureClass",
    "failure_class",
    "settings_snapshot",
    "should_retry",
]
