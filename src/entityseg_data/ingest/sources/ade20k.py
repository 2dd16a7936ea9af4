"""ADE20K source, for both public layouts:

* SceneParsing / ``ADEChallengeData2016``: ``images/{training,validation}/ADE_*.jpg`` and
  ``sceneCategories.txt`` (``ADE_train_00000001 airport_terminal`` per line);
* the full dataset (``ADE20K_2021_17_01``): ``images/ADE/{training,validation}/<group>/<scene>/
  ADE_*.jpg`` beside ``*_seg.png`` / ``*.json`` (the scene is the parent folder).

Each image gets the domain tags ``ade20k``, its split and its scene category.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from entityseg_data.errors import DataError
from entityseg_data.ingest.sources.base import Item, Source

ADE20K_LICENSE = (
    "ADE20K terms of use (MIT CSAIL; research and education; images keep their own copyright)"
)


class Ade20kSource(Source):
    """Images of an ADE20K folder (``DIR`` is the dataset root holding ``images/``)."""

    kind = "ade20k"

    def __init__(
        self,
        *,
        root: str | os.PathLike[str],
        license: str = ADE20K_LICENSE,
        domain_tags: tuple[str, ...] = ("ade20k",),
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"ade20k:{root}")
        self.root = Path(root)
        self.license = license
        self.domain_tags = tuple(domain_tags)
        if not (self.root / "images").is_dir():
            raise DataError(
                f"ade20k source: {self.root} has no images/ folder (expected the "
                f"ADEChallengeData2016 or ADE20K_2021_17_01 root)"
            )

    def _scenes(self) -> dict[str, str]:
        scenes = {}
        table = self.root / "sceneCategories.txt"
        if table.exists():
            for line in table.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    scenes[parts[0]] = parts[1]
        return scenes

    def items(self) -> Iterator[Item]:
        scenes = self._scenes()
        images = self.root / "images"
        for dirpath, dirnames, filenames in os.walk(images):
            dirnames.sort()
            for name in sorted(filenames):
                if not (name.startswith("ADE_") and name.lower().endswith(".jpg")):
                    continue
                path = Path(dirpath) / name
                stem = path.stem
                rel = path.relative_to(images).parts
                split = next((p for p in rel if p in ("training", "validation")), None)
                scene = scenes.get(stem)
                if scene is None and len(rel) >= 3 and rel[0] == "ADE":
                    scene = rel[-2]
                tags = tuple(t for t in (*self.domain_tags, split, scene and f"scene:{scene}") if t)
                yield Item(
                    source=self.kind,
                    source_id=stem,
                    path=str(path.resolve()),
                    license=self.license,
                    attribution=f"ADE20K {stem}",
                    domain_tags=tags,
                    extra={k: v for k, v in (("scene", scene), ("split", split)) if v},
                )
