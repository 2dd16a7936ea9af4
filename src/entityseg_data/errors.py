"""Exceptions with one clear, user-facing message each.

The CLI prints ``error: <message>`` and exits 1 for any :class:`EntitySegError` (2 for usage
errors and configuration errors);
``--debug`` shows the traceback. Messages name the file or record and the problem.
"""

from __future__ import annotations

from types import ModuleType


class EntitySegError(Exception):
    """Base class of the toolkit's expected, user-facing errors."""


class ConfigError(EntitySegError):
    """A configuration key, value or file is invalid."""


class WorkspaceError(EntitySegError):
    """A workspace is missing, not initialised, or inconsistent."""


class CatalogError(EntitySegError):
    """The catalog cannot be read or written (schema too new, corrupt database...)."""


class DataError(EntitySegError):
    """An input record or file is malformed (names the file/record and the problem)."""


class CheckpointError(EntitySegError):
    """A model checkpoint cannot be read, or does not match the architecture."""


class OfflineError(EntitySegError):
    """A resource (model weights, hub file) is not available offline; says how to provide it."""


class LabelStudioError(EntitySegError):
    """Label Studio could not be started, reached, or answered with an error."""


class MissingDependencyError(EntitySegError):
    """An optional dependency is not installed; says which extra installs it."""


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import an optional dependency, or raise MissingDependencyError naming the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'entityseg-data[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(
            f"'{module}' is needed here but not installed ({exc}); install it with: {hint}"
        ) from None


class RLEError(DataError):
    """A run-length encoded mask is corrupt (truncated, garbage, wrong size or wrong sum); the
    message names the record (file, image id, annotation id) when the caller knows it."""


class OverlapError(DataError):
    """Masks that must not overlap do; ``pairs`` maps ``(i, j)`` region indices (0-based, i < j)
    to the number of shared pixels."""

    def __init__(self, message: str, pairs: dict[tuple[int, int], int] | None = None) -> None:
        super().__init__(message)
        self.pairs = dict(pairs or {})
