"""The paper's Table 2 columns for one or several datasets.

Columns (definitions in docs/statistics.md):

- ``images``, ``entities``: counts (crowd annotations excluded).
- ``image_res``: the paper's single "ImageRes (avg)" number = the mean over images of
  ``sqrt(height * width)`` (the side of the square with the image's pixel count).
- ``avg_height``, ``avg_width``, ``avg_resolution`` ("H x W" of the means), ``avg_megapixels``.
- ``entities_per_image_avg``, ``entities_per_image_max``.
- ``complexity``: mean convexity (area / convex-hull area) over all entities.
- ``simplicity``: mean sqrt(4 pi area) / perimeter over all entities.
- ``valid_area``: mean over images of the fraction of pixels covered by at least one entity.
- ``shape_measures``: the definition set behind complexity / simplicity
  (:data:`~entityseg_data.stats.measures.SHAPE_DEFINITIONS`; "paper" by default).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from entityseg_data.stats.measures import DEFAULT_SHAPE_DEFINITION, SHAPE_DEFINITIONS

TABLE2_COLUMNS: tuple[str, ...] = (
    "dataset",
    "images",
    "entities",
    "image_res",
    "avg_resolution",
    "avg_height",
    "avg_width",
    "avg_megapixels",
    "entities_per_image_avg",
    "entities_per_image_max",
    "complexity",
    "simplicity",
    "valid_area",
    "shape_measures",
)


def _mean(values: Any) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def table_row(stats: Any) -> dict[str, Any]:
    """Table 2 row of a :class:`~entityseg_data.stats.engine.DatasetStats`."""
    imgs = stats.images
    h = _mean([r["height"] for r in imgs])
    w = _mean([r["width"] for r in imgs])
    counts = [r["n_entities"] for r in imgs]
    return {
        "dataset": stats.name,
        "images": len(imgs),
        "entities": int(sum(counts)),
        "image_res": _mean([math.sqrt(r["height"] * r["width"]) for r in imgs]),
        "avg_resolution": f"{h:.0f}x{w:.0f}" if imgs else "",
        "avg_height": h,
        "avg_width": w,
        "avg_megapixels": _mean([r["megapixels"] for r in imgs]),
        "entities_per_image_avg": _mean(counts),
        "entities_per_image_max": int(max(counts)) if counts else 0,
        "complexity": _mean(stats.entities.get("convexity", [])),
        "simplicity": _mean(stats.entities.get("simplicity", [])),
        "valid_area": _mean([r["valid_area"] for r in imgs]),
        "shape_measures": getattr(stats, "shape_measures", DEFAULT_SHAPE_DEFINITION),
    }


def table2(stats_list: Sequence[Any]) -> list[dict[str, Any]]:
    """One Table 2 row per dataset, in order."""
    return [table_row(s) for s in stats_list]


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of rows (floats with full precision)."""
    cols = list(columns or (rows[0].keys() if rows else TABLE2_COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buf.getvalue()


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The paper-style table as Markdown (valid area in %), followed by one line per shape-measure
    definition used, naming it."""
    head = (
        "| Dataset | #Images | #Entities | ImageRes (avg) | Avg. H x W | Entities/img (avg / max) "
        "| Complexity (convexity) | Simplicity | Valid area | Shape measures |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['images']} | {r['entities']} | {_fmt(r['image_res'], 1)} | "
            f"{r['avg_resolution']} | "
            f"{_fmt(r['entities_per_image_avg'], 1)} / {r['entities_per_image_max']} | "
            f"{_fmt(r['complexity'])} | {_fmt(r['simplicity'])} | "
            f"{_fmt(100 * r['valid_area'], 1)}% | {r['shape_measures']} |"
        )
    used = dict.fromkeys(r["shape_measures"] for r in rows)
    lines.append("")
    lines.append("ImageRes = mean over images of sqrt(height x width), px.")
    for name in used:
        lines.append(f"Shape measures `{name}`: {SHAPE_DEFINITIONS.get(name, '?')}.")
    return "\n".join(lines) + "\n"
