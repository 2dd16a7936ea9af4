"""Statistics and checks of annotation files, beside the workspace's own
(:meth:`Workspace.stats <entityseg_data.api.workspace.Workspace.stats>`): the ``stats`` and
``data validate`` commands.

>>> coco = coco_stats("coco/instances_val2017.json", name="COCO")     # DatasetStats
>>> mine = ws.stats()
>>> rep = stats_report([mine, coco], "reports/compare")               # Table 2 side by side
>>> validate_annotations("entityseg_val.json", images_dir="images/").ok
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.api.reports import StatsReport

if TYPE_CHECKING:
    from entityseg_data.config.stats import StatsConfig
    from entityseg_data.stats.engine import DatasetStats
    from entityseg_data.stats.validate import ValidationReport
    from entityseg_data.workspace import Workspace

#: ``progress(done, total)``: images done of the images to do
Progress = Callable[[int, int], object]


def _counter(total: int, progress: Progress | None) -> Callable[[int], object] | None:
    """A per-image step callback (what the stats stage calls) feeding ``progress(done, total)``;
    ``progress(0, total)`` is called at once."""
    if progress is None:
        return None
    done = [0]
    progress(0, total)

    def step(n: int = 1) -> None:
        done[0] += n
        progress(done[0], total)

    return step


def coco_stats(
    coco: str | Path | dict[str, Any],
    *,
    name: str | None = None,
    images_dir: str | Path | None = None,
    config: StatsConfig | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> DatasetStats:
    """The paper's Table 2 measures and Fig. 3 distributions of a COCO / EntitySeg JSON (path
    or dict; RLE or polygons), read strictly (one DataError naming the file and record).

    ``name``: the dataset's name in tables (default: the file's stem); ``images_dir``: the
    folder of the ``file_name`` entries, read only for images without a size; ``config``: the
    ``stats`` config section (default its defaults); ``limit``: only the first images.
    Images that cannot be measured are skipped and listed in ``errors``."""
    from entityseg_data.stats.engine import compute_stats, load_coco

    if name is None:
        name = Path(coco).stem if isinstance(coco, str | Path) else "dataset"
    data = load_coco(coco)
    n = len(data.get("images", []))
    total = n if limit is None else min(n, limit)
    return compute_stats(
        data,
        name=name,
        images_dir=images_dir,
        config=config,
        progress=_counter(total, progress),
        limit=limit,
    )


def stats_report(
    datasets: Sequence[DatasetStats],
    out_dir: str | Path,
    *,
    vocabulary: bool = False,
    plots: bool = True,
) -> StatsReport:
    """Measured datasets written side by side to ``out_dir``: stats.json, table2.md/.csv,
    classes.csv, images.csv, entities.csv and (``plots``) fig3.png, entity_shapes.png.
    ``vocabulary``: count classes through the annotation vocabulary built on the names
    (merged names, thing/stuff from WordNet when available: 10-30 s to load) instead of raw
    names. See :class:`~entityseg_data.api.reports.StatsReport`."""
    from entityseg_data.errors import DataError
    from entityseg_data.stats.classes import class_counts, kind_totals, vocabulary_lookups
    from entityseg_data.stats.measures import SHAPE_DEFINITIONS
    from entityseg_data.stats.report import write_report
    from entityseg_data.stats.table import table2, to_markdown

    datasets = tuple(datasets)
    if not datasets:
        raise DataError("stats_report: no measured dataset")
    kwargs: dict[str, Any] = {}
    found = vocabulary_lookups(n for s in datasets for n in s.names) if vocabulary else None
    if found is not None:
        kwargs = {"is_thing": found[0], "class_of": found[1]}
    paths = write_report(list(datasets), out_dir, plots=plots, **kwargs)
    rows = table2(list(datasets))
    classes = class_counts(datasets[0], **kwargs)
    return StatsReport(
        stats=datasets[0],
        paths=paths,
        table=rows,
        table_markdown=to_markdown(rows),
        classes=classes,
        class_kinds=kind_totals(classes),
        datasets=datasets,
        shape_definitions={
            r["shape_measures"]: SHAPE_DEFINITIONS[r["shape_measures"]] for r in rows
        },
    )


def validate_annotations(
    source: str | Path | dict[str, Any] | Workspace,
    *,
    images_dir: str | Path | None = None,
    stage: int = 1,
    expect_rle: bool = True,
    max_offenders: int = 10,
    progress: Progress | None = None,
) -> ValidationReport:
    """Check a COCO / EntitySeg JSON (path or dict), or a workspace's approved annotations of
    ``stage``: overlapping and empty masks, RLE sizes that differ from the image, missing or
    unreadable images (when ``images_dir`` is given; a workspace's default is its root),
    polygons where RLE is expected (``expect_rle``), duplicate ids, malformed records. Every
    problem is counted (``counts``) and the first ``max_offenders`` of each kind kept;
    ``ok`` is True when none was found."""
    from entityseg_data.io import read_json
    from entityseg_data.masks.store import workspace_to_coco
    from entityseg_data.stats.validate import validate_coco
    from entityseg_data.workspace import Workspace as CoreWorkspace

    name: str | None = None
    if isinstance(source, CoreWorkspace):
        coco: Any = workspace_to_coco(source, stage=stage, statuses=("approved",))
        images_dir = images_dir or source.root
    elif isinstance(source, str | Path):
        coco, name = read_json(source, "COCO annotations"), str(source)
    else:
        coco = source
    total = len(coco.get("images") or []) if isinstance(coco, dict) else 0
    return validate_coco(
        coco,
        name=name,
        images_dir=images_dir,
        expect_rle=expect_rle,
        max_offenders=max_offenders,
        progress=_counter(total, progress),
    )
