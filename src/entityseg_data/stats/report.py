"""Write the statistics of one or several datasets to a folder.

Outputs (``out_dir``)::

    stats.json            {"datasets": [{"name", "table2", "shape_measures", "classes",
                          "class_kinds", "errors"}]} (shape_measures = {name, definition})
    table2.csv / .md      one Table 2 row per dataset
    images.csv            one row per image (dataset, image_id, size, source, n_entities, ...)
    entities.csv          one row per entity (dataset, image_id, name, area, convexity, ...)
    classes.csv           per dataset and class: kind, entities, images, pixels
    fig3.png              resolution / entities per image / sources
    entity_shapes.png     convexity / simplicity / size distributions
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.io import atomic_open, atomic_write_json, atomic_write_text
from entityseg_data.stats.classes import class_counts, kind_totals
from entityseg_data.stats.measures import SHAPE_DEFINITIONS
from entityseg_data.stats.plots import plot_entity_shapes, plot_fig3
from entityseg_data.stats.table import TABLE2_COLUMNS, table2, to_csv, to_markdown

if TYPE_CHECKING:
    from entityseg_data.stats.engine import DatasetStats

IMAGE_COLUMNS = (
    "dataset",
    "image_id",
    "file_name",
    "height",
    "width",
    "megapixels",
    "source",
    "n_entities",
    "valid_area",
    "mean_convexity",
    "mean_simplicity",
)
ENTITY_COLUMNS = (
    "dataset",
    "image_id",
    "name",
    "area",
    "convex_area",
    "perimeter",
    "convexity",
    "simplicity",
)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def write_report(
    stats_list: Sequence[DatasetStats],
    out_dir: str | Path,
    *,
    is_thing: Callable[[str], bool | None] | None = None,
    class_of: Callable[[str], str] | None = None,
    plots: bool = True,
    entity_csv: bool = True,
) -> dict[str, Path]:
    """Write every output for the given :class:`DatasetStats`; returns ``{kind: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = table2(stats_list)
    paths: dict[str, Path] = {}
    datasets = []
    class_rows: list[dict[str, Any]] = []
    for s, row in zip(stats_list, rows):
        classes = class_counts(s, is_thing=is_thing, class_of=class_of)
        class_rows.extend({"dataset": s.name, **c} for c in classes)
        datasets.append(
            {
                "name": s.name,
                "table2": {k: _clean(v) for k, v in row.items()},
                "shape_measures": {
                    "name": row["shape_measures"],
                    "definition": SHAPE_DEFINITIONS.get(row["shape_measures"]),
                },
                "class_kinds": kind_totals(classes),
                "classes": classes,
                "errors": s.errors,
            }
        )
    paths["json"] = out / "stats.json"
    atomic_write_json(paths["json"], {"datasets": datasets}, indent=2)
    paths["table_csv"] = out / "table2.csv"
    atomic_write_text(paths["table_csv"], to_csv(rows, TABLE2_COLUMNS))
    paths["table_md"] = out / "table2.md"
    atomic_write_text(paths["table_md"], to_markdown(rows))
    paths["classes_csv"] = out / "classes.csv"
    atomic_write_text(
        paths["classes_csv"],
        to_csv(class_rows, ("dataset", "name", "kind", "entities", "images", "pixels")),
    )
    paths["images_csv"] = out / "images.csv"
    with atomic_open(paths["images_csv"], "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(IMAGE_COLUMNS)
        for s in stats_list:
            for r in s.images:
                w.writerow([s.name, *(r[c] for c in IMAGE_COLUMNS[1:])])
    if entity_csv:
        paths["entities_csv"] = out / "entities.csv"
        with atomic_open(paths["entities_csv"], "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(ENTITY_COLUMNS)
            for s in stats_list:
                e = s.entities
                for i in range(s.n_entities):
                    w.writerow(
                        [
                            s.name,
                            int(e["image_id"][i]),
                            s.names[i] if i < len(s.names) else None,
                            int(e["area"][i]),
                            f"{e['convex_area'][i]:.2f}",
                            f"{e['perimeter'][i]:.3f}",
                            f"{e['convexity'][i]:.6f}",
                            f"{e['simplicity'][i]:.6f}",
                        ]
                    )
    if plots:
        paths["fig3"] = plot_fig3(stats_list, out / "fig3.png")
        paths["shapes"] = plot_entity_shapes(stats_list, out / "entity_shapes.png")
    return paths
