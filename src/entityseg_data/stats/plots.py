"""Fig. 3-style distributions as PNG (matplotlib, Agg backend; no display needed).

``fig3.png``: (a) image resolution (megapixels, one histogram per dataset), (b) entities per
image, (c) image sources (share of images per source, grouped bars per dataset).
``entity_shapes.png``: convexity and simplicity distributions of the entities.
Several datasets are drawn side by side (overlaid histograms with densities so sizes differ).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.io import atomic_open

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from entityseg_data.stats.engine import DatasetStats


def _figure(ncols: int, width: float = 5.0) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, 4.0), dpi=100)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    # fixed margins: tight_layout costs several extra draws
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.2, top=0.9, wspace=0.25)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _hist(ax: Any, series: Sequence[tuple[str, np.ndarray]], bins: np.ndarray, xlabel: str) -> None:
    for name, values in series:
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        if v.size:
            ax.hist(v, bins=bins, density=True, histtype="step", linewidth=1.8, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if series:
        ax.legend(fontsize=8)


def plot_fig3(stats_list: Sequence[DatasetStats], path: str | Path) -> Path:
    """Write the three Fig. 3 panels for one or several datasets; returns the PNG path."""
    fig, (ax_res, ax_cnt, ax_src) = _figure(3)
    mp = [(s.name, np.array([r["megapixels"] for r in s.images])) for s in stats_list]
    top = max([float(v.max()) for _, v in mp if v.size] + [1.0])
    _hist(ax_res, mp, np.linspace(0, top * 1.05, 31), "image resolution (megapixels)")
    ax_res.set_title("(a) image resolution")
    cnt = [(s.name, np.array([r["n_entities"] for r in s.images])) for s in stats_list]
    cmax = max([int(v.max()) for _, v in cnt if v.size] + [1])
    _hist(
        ax_cnt,
        cnt,
        np.arange(0, cmax + 2) - 0.5 if cmax < 60 else np.linspace(0, cmax, 41),
        "entities per image",
    )
    ax_cnt.set_title("(b) entities per image")
    sources: list[str] = []
    shares = []
    for s in stats_list:
        c = Counter(str(r["source"] or s.name) for r in s.images)
        total = max(1, sum(c.values()))
        shares.append({k: v / total for k, v in c.items()})
        sources.extend(k for k in c if k not in sources)
    x = np.arange(len(sources))
    width = 0.8 / max(1, len(stats_list))
    for i, (s, share) in enumerate(zip(stats_list, shares)):
        ax_src.bar(x + i * width, [share.get(k, 0.0) for k in sources], width, label=s.name)
    ax_src.set_xticks(x + width * (len(stats_list) - 1) / 2)
    ax_src.set_xticklabels(sources, rotation=30, ha="right", fontsize=8)
    ax_src.set_ylabel("share of images")
    ax_src.set_title("(c) image sources")
    if stats_list:
        ax_src.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_entity_shapes(stats_list: Sequence[DatasetStats], path: str | Path) -> Path:
    """Histograms of entity convexity, simplicity and relative area (log10 of area / image)."""
    fig, (a, b, c) = _figure(3)
    bins = np.linspace(0, 1, 41)
    _hist(
        a,
        [(s.name, s.entities.get("convexity", np.zeros(0))) for s in stats_list],
        bins,
        "convexity (area / convex-hull area)",
    )
    a.set_title("entity complexity")
    _hist(
        b,
        [(s.name, s.entities.get("simplicity", np.zeros(0))) for s in stats_list],
        bins,
        "simplicity sqrt(4 pi A) / P",
    )
    b.set_title("entity simplicity")
    rel = []
    for s in stats_list:
        size = {r["image_id"]: r["height"] * r["width"] for r in s.images}
        ids = s.entities.get("image_id", np.zeros(0, np.int64))
        denom = np.array([size.get(int(i), 1) for i in ids], dtype=np.float64)
        area = np.asarray(s.entities.get("area", np.zeros(0)), dtype=np.float64)
        with np.errstate(divide="ignore"):
            rel.append((s.name, np.log10(np.maximum(area, 1) / np.maximum(denom, 1))))
    _hist(c, rel, np.linspace(-7, 0, 36), "log10(entity area / image area)")
    c.set_title("entity size")
    return _save(fig, Path(path))
