"""A dataset workspace on disk.

Layout (all paths relative to the workspace root)::

    entityseg.yaml      the workspace config (WorkspaceConfig as YAML; secrets are not written)
    catalog.sqlite      the catalog (SQLite, WAL)
    images/             original image bytes, byte-exact, named by sha256
    images_norm/        normalised copies (upright RGB) where the original needed it
    masks/              annotation masks (COCO RLE JSON per image, stage and annotator)
    predictions/        model pre-annotations (COCO RLE JSON per image and model version)
    exports/            EntitySeg/COCO JSON, Hugging Face datasets, reports
    cache/              embeddings and other re-computable caches
    labelstudio/        data dir of a local Label Studio started by ``annotate server``

:class:`Workspace` is core: it imports no stage; every stage takes a ``Workspace``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from entityseg_data.catalog import Catalog, ImageRecord, PredictionRecord
from entityseg_data.catalog import predictions as _predictions
from entityseg_data.config.workspace import (
    WorkspaceConfig,
    load_workspace_config,
    save_workspace_config,
)
from entityseg_data.errors import WorkspaceError
from entityseg_data.masks.types import ImageMasks

CONFIG_FILE = "entityseg.yaml"
CATALOG_FILE = "catalog.sqlite"
_W = TypeVar("_W", bound="Workspace")  # create/open/find return the class they are called on
SUBDIRS = ("images", "images_norm", "masks", "predictions", "exports", "cache", "labelstudio")


@dataclass(frozen=True)
class Workspace:
    """A workspace root. Use :meth:`create` for a new one and :meth:`open` for an existing one."""

    root: Path

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls: type[_W],
        root: str | os.PathLike[str],
        config: WorkspaceConfig | None = None,
        exist_ok: bool = False,
    ) -> _W:
        """Create the folders, write the config and create the catalog.

        Raises WorkspaceError when ``root`` already holds a workspace and ``exist_ok`` is False.
        """
        root = Path(root).resolve()
        if (root / CONFIG_FILE).exists() and not exist_ok:
            raise WorkspaceError(f"{root} already holds a workspace ({CONFIG_FILE} exists)")
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        for sub in SUBDIRS:
            (root / sub).mkdir(exist_ok=True)
        ws = cls(root)
        if not (root / CONFIG_FILE).exists():
            save_workspace_config(config or WorkspaceConfig(name=root.name), ws.config_path)
        ws.catalog().close()
        return ws

    @classmethod
    def open(cls: type[_W], root: str | os.PathLike[str]) -> _W:
        root = Path(root).resolve()
        if not (root / CONFIG_FILE).exists():
            raise WorkspaceError(
                f"{root} is not a workspace (no {CONFIG_FILE}); create one with "
                f"'entityseg-data init {root}'"
            )
        return cls(root)

    @classmethod
    def find(cls: type[_W], start: str | os.PathLike[str] = ".") -> _W:
        """The workspace containing ``start`` (searching parent folders)."""
        path = Path(start).resolve()
        for candidate in (path, *path.parents):
            if (candidate / CONFIG_FILE).exists():
                return cls(candidate)
        raise WorkspaceError(
            f"no workspace found at or above {path}; pass --workspace DIR or run "
            f"'entityseg-data init DIR'"
        )

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def masks_dir(self) -> Path:
        return self.root / "masks"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def relpath(self, path: str | Path) -> str:
        """``path`` relative to the root, as stored in the catalog (posix separators)."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def abspath(self, rel: str) -> Path:
        return self.root / rel

    # ------------------------------------------------------------------ state
    def config(self, overrides: Iterable[str] = ()) -> WorkspaceConfig:
        """The config: file < environment < ``overrides``."""
        return load_workspace_config(self.config_path, overrides)

    def catalog(self, *, read_only: bool | None = None) -> Catalog:
        """Open the catalog (migrating it forward); close it when done (it is a context manager).

        ``read_only=None`` opens it read-only exactly when this user cannot write the workspace
        (an archived or shared workspace still answers ``status``, ``stats``, ``export``);
        ``True`` forces read-only, ``False`` requires write access."""
        if read_only is False and not self.writable:
            raise WorkspaceError(
                f"{self.root}: the workspace is not writable by this user; this command needs "
                "write access to the catalog"
            )
        return Catalog(self.catalog_path, read_only=read_only)

    @property
    def writable(self) -> bool:
        """Whether this process may write the catalog (file and folder)."""
        path = self.catalog_path
        return os.access(self.root, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))

    # ------------------------------------------------------------------ images and predictions
    def image_path(self, image: ImageRecord) -> Path:
        """The file to read an image's pixels from (the normalised copy when there is one)."""
        return self.abspath(image.path)

    def write_prediction(self, payload: ImageMasks | Mapping[str, Any], model_version: str) -> str:
        """Write a prediction file and its catalog row (see
        :mod:`entityseg_data.catalog.predictions`); returns the path relative to the root."""
        with self.catalog() as cat:
            return _predictions.write_prediction(self.root, cat, payload, model_version)

    def latest_prediction(
        self, image_id: int, model_version: str | None = None
    ) -> tuple[PredictionRecord, dict[str, Any]] | None:
        """The newest prediction of an image (of ``model_version``) with its payload, or None."""
        with self.catalog() as cat:
            return _predictions.latest_prediction(self.root, cat, image_id, model_version)

    def prediction_masks(
        self, image_id: int, model_version: str | None = None
    ) -> tuple[PredictionRecord, ImageMasks] | None:
        """The newest prediction of an image (of ``model_version``) as checked
        :class:`ImageMasks`, or None."""
        with self.catalog() as cat:
            rec = cat.latest_prediction(image_id, model_version)
        return None if rec is None else (rec, _predictions.prediction_masks(self.root, rec))

    def predicted_ids(self, model_version: str) -> set[int]:
        """Ids of the images that have a prediction file of ``model_version``."""
        with self.catalog() as cat:
            return _predictions.predicted_ids(self.root, cat, model_version)
