"""Per-class counts (after stage 2 naming): entities, images and pixels per name, thing/stuff.

A class is the entity's open-vocabulary ``name`` (``category_id_ori`` in EntitySeg files) or,
when it has none, its category's name. Thing/stuff comes from ``is_thing(name)`` (e.g. the
vocabulary), else from the entity's own ``kind`` (e.g. carried in from COCO panoptic or ADE20K),
else from the category's ``isthing`` flag, else is unknown (None).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.errors import DataError

if TYPE_CHECKING:
    from entityseg_data.stats.engine import DatasetStats

log = logging.getLogger(__name__)


def class_counts(
    stats: DatasetStats,
    is_thing: Callable[[str], bool | None] | None = None,
    class_of: Callable[[str], str] | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{name, kind ("thing" | "stuff" | ""), entities, images, pixels}`` sorted by
    entities (descending) then name, for a :class:`~entityseg_data.stats.engine.DatasetStats`.
    ``class_of`` maps a raw name to its class (e.g. the vocabulary's merged class)."""
    names = list(stats.names)
    kinds = list(getattr(stats, "kinds", []))
    cats = stats.categories
    cat_ids = np.asarray(stats.category_ids)
    area = np.asarray(stats.entities.get("area", np.zeros(0)))
    image_ids = np.asarray(stats.entities.get("image_id", np.zeros(0)))
    ent: dict[str, int] = defaultdict(int)
    pix: dict[str, int] = defaultdict(int)
    imgs: dict[str, set[int]] = defaultdict(set)
    kind: dict[str, bool | None] = {}
    for i, raw in enumerate(names):
        cat = cats.get(int(cat_ids[i])) if i < cat_ids.size else None
        name = raw or (cat.name if cat is not None else None) or "unnamed"
        if class_of is not None:
            name = class_of(name)
        ent[name] += 1
        pix[name] += int(area[i]) if i < area.size else 0
        imgs[name].add(int(image_ids[i]) if i < image_ids.size else -1)
        if name not in kind or kind[name] is None:
            flag: bool | None = None
            if is_thing is not None:
                flag = is_thing(name)
            own = kinds[i] if i < len(kinds) else None  # the entity's own thing/stuff
            if flag is None and own is not None:
                flag = own == "thing"
            if flag is None and cat is not None and cat.isthing is not None:
                flag = cat.isthing
            kind[name] = flag
    rows: list[dict[str, Any]] = [
        {
            "name": n,
            "kind": "" if kind[n] is None else ("thing" if kind[n] else "stuff"),
            "entities": ent[n],
            "images": len(imgs[n]),
            "pixels": pix[n],
        }
        for n in ent
    ]
    rows.sort(key=lambda r: (-r["entities"], r["name"]))
    return rows


def kind_totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Number of classes and entities per kind: ``{"thing_classes", "stuff_classes",
    "unknown_classes", "thing_entities", "stuff_entities", "unknown_entities"}``."""
    out = {f"{k}_{w}": 0 for k in ("thing", "stuff", "unknown") for w in ("classes", "entities")}
    for r in rows:
        k = r["kind"] or "unknown"
        out[f"{k}_classes"] += 1
        out[f"{k}_entities"] += r["entities"]
    return out


def vocabulary_lookups(
    names: Iterable[str | None],
) -> tuple[Callable[[str], bool | None], Callable[[str], str]] | None:
    """``(is_thing, class_of)`` from the annotation vocabulary built on ``names``
    (:class:`entityseg_data.vocab.Vocabulary`; WordNet when available, else its
    rules only). None when the vocabulary cannot be built. 'special' classes (unknown,
    blurred) have no thing/stuff flag."""
    try:
        from entityseg_data.vocab import Vocabulary
    except ImportError:
        return None
    names = [n for n in names if n]
    voc = None
    for use_wordnet in (True, False):
        try:
            voc = Vocabulary(use_wordnet=use_wordnet).build(names)
            break
        except Exception as exc:  # WordNet missing or another build problem
            log.info("vocabulary (wordnet=%s) unavailable: %s", use_wordnet, exc)
    if voc is None:
        return None

    def is_thing(name: str) -> bool | None:
        try:
            kind = voc.class_of(name).kind
        except DataError:  # a name the vocabulary cannot place
            return None
        return None if kind == "special" else kind == "thing"

    def class_of(name: str) -> str:
        try:
            return voc.class_of(name).name
        except DataError:
            return name

    return is_thing, class_of
