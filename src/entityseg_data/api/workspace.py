"""The public :class:`Workspace`: the core workspace plus the verbs of the curation loop.

>>> from entityseg_data import Workspace, LabelStudio, load_segmenter
>>> ws = Workspace.create("my_set")                     # or Workspace.open("my_set")
>>> ws.ingest(["folder:photos/", "urls:urls.txt"])      # IngestReport
>>> ws.predictions.add(load_segmenter("cropformer_hornet_3x"))
>>> ws.select(50, name="round-2")                       # what to annotate next
>>> with LabelStudio.start(ws) as ls:
...     ann = ws.annotation(ls); ann.push(stage=1, selection="round-2")  # people annotate
...     ann.pull(stages=(1,))
>>> ds = ws.dataset()                                   # typed approved entities
>>> ws.stats_report("report/"); ws.export_entityseg("release/"); ws.export_hf("release_hf/")

It IS a :class:`entityseg_data.workspace.Workspace` (a subclass adding methods), so it can be
passed to every stage function. The core class imports no stage; this one imports each stage
inside the verb that needs it, so ``import entityseg_data`` stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data import workspace as _core
from entityseg_data.api.annotation import Annotation, LabelStudio
from entityseg_data.api.predictions import Predictions
from entityseg_data.api.reports import Agreement, StatsReport
from entityseg_data.api.rounds import Rounds
from entityseg_data.dataset import Dataset
from entityseg_data.errors import DataError

if TYPE_CHECKING:
    from entityseg_data.annotation.backend import AnnotationBackend
    from entityseg_data.annotation.select import SelectionResult
    from entityseg_data.catalog import ImageRecord, SelectionItem, SelectionRecord
    from entityseg_data.config import IngestConfig, StatsConfig
    from entityseg_data.export.entityseg import ExportResult
    from entityseg_data.ingest.importers import ImportResult
    from entityseg_data.ingest.refilter import RefilterReport
    from entityseg_data.ingest.report import IngestReport, ProgressFn
    from entityseg_data.ingest.sources.base import Source
    from entityseg_data.ingest.sources.coco import CrowdPolicy, ImportOverlaps
    from entityseg_data.model.training.config import TrainConfig
    from entityseg_data.model.training.trainer import TrainResult
    from entityseg_data.stats.engine import DatasetStats


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace(_core.Workspace):
    """A dataset workspace with the verbs of the curation loop (module docstring).

    Construct with :meth:`create`, :meth:`open` or :meth:`find` (inherited: they return this
    class). Every verb reads the workspace's config (``entityseg.yaml``, then ``ENTITYSEG__*``
    variables); verbs that take ``overrides`` apply ``key=value`` changes for that call only.
    """

    @classmethod
    def of(cls, workspace: _core.Workspace | str | Path) -> Workspace:
        """The public workspace of a core one (or of a folder holding one)."""
        if isinstance(workspace, Workspace):
            return workspace
        if isinstance(workspace, _core.Workspace):
            return cls(workspace.root)
        return cls.open(workspace)

    # ------------------------------------------------------------------ images in
    def ingest(
        self,
        sources: Sequence[str | Source] | str | Source,
        *,
        tags: Sequence[str] = (),
        config: IngestConfig | None = None,
        overrides: Iterable[str] = (),
        retry_failed: str | None = None,
        progress: ProgressFn | None = None,
    ) -> IngestReport:
        """Collect images with provenance, de-duplication and filters.

        ``sources``: spec strings (``folder:photos/``, ``urls:list.csv``, ``coco:ann.json:imgs``,
        ``ade20k:DIR``, ``unsplash:TSV``, ``laion:PARQUET``; see docs/ingest.md) or
        :class:`~entityseg_data.ingest.sources.base.Source` objects; ``tags`` are added to
        every image's domain tags of spec sources. ``config``: the ingest section (default: the
        workspace's, with ``overrides`` such as ``ingest.min_side=1000``). Resumable; see
        :func:`entityseg_data.ingest.pipeline.ingest`."""
        from entityseg_data.ingest.pipeline import ingest
        from entityseg_data.ingest.sources import parse_source

        items = (
            [sources] if isinstance(sources, str) or not isinstance(sources, Sequence) else sources
        )
        built = [
            parse_source(s, domain_tags=tuple(tags)) if isinstance(s, str) else s for s in items
        ]
        cfg = config or self.config(list(overrides)).ingest
        return ingest(self, built, cfg, progress=progress, retry_failed=retry_failed)

    def refilter(
        self, *, config: IngestConfig | None = None, overrides: Iterable[str] = ()
    ) -> RefilterReport:
        """Re-apply the filters (resolution, aspect, NSFW from the cached CLIP embeddings) to
        the accepted and rejected images, with ``config`` (default: the workspace's ingest
        section with ``overrides``); see :func:`entityseg_data.ingest.refilter.refilter`."""
        from entityseg_data.ingest.refilter import refilter

        return refilter(self, config or self.config(list(overrides)).ingest)

    def ingest_failures(self, limit: int = 20) -> dict[str, dict[str, Any]]:
        """The ingest ledger's failed items by failure kind (all runs, current state):
        ``{kind: {"count", "retry", "examples"}}``; ``retry`` says what fetches them again
        (``transient``/``source``: a rerun; ``setting``: a rerun after that setting changed;
        ``permanent``: ``ingest(..., retry_failed=kind)``); up to ``limit`` examples
        ``{"source", "source_id", "url", "error", "attempts"}``."""
        from entityseg_data.ingest.report import failures_by_kind

        with self.catalog() as cat:
            return failures_by_kind(cat, limit=limit)

    def import_coco(
        self,
        annotations: str | Path,
        images_dir: str | Path | None = None,
        *,
        panoptic_dir: str | Path | None = None,
        crowd: CrowdPolicy = "drop",
        overlaps: ImportOverlaps = "smaller_wins",
        near_duplicates: bool = True,
        progress: Callable[[Any], None] | None = None,
    ) -> ImportResult:
        """Import a COCO instances / panoptic / EntitySeg JSON as APPROVED annotations (the
        annotator ``import``): an existing dataset joins the workspace without annotation
        rounds. ``crowd``: ``drop`` | ``keep``; ``overlaps``: ``smaller_wins`` |
        ``later_wins``; ``near_duplicates``: also drop perceptual-hash near duplicates (exact
        ones always). Filters and the NSFW model are off for imports."""
        from entityseg_data.ingest.importers import import_coco, import_config
        from entityseg_data.ingest.sources.coco import ImportPolicy

        policy = ImportPolicy(crowd=crowd, overlaps=overlaps)
        return import_coco(
            self,
            annotations,
            images_dir,
            panoptic_dir=panoptic_dir,
            policy=policy,
            config=import_config(self, near_duplicates=near_duplicates),
            progress=progress,
        )

    def import_label_maps(
        self,
        images_dir: str | Path,
        label_dir: str | Path,
        *,
        names: Mapping[int, str] | None = None,
        void_values: Sequence[int] = (0,),
        near_duplicates: bool = True,
        progress: Callable[[Any], None] | None = None,
    ) -> ImportResult:
        """Import an image folder + a folder of label-map PNGs (same stems; value -> entity,
        ``names`` value -> name) as approved annotations."""
        from entityseg_data.ingest.importers import import_config, import_label_maps

        return import_label_maps(
            self,
            images_dir,
            label_dir,
            names=names,
            void_values=void_values,
            config=import_config(self, near_duplicates=near_duplicates),
            progress=progress,
        )

    def images(
        self, status: str | None = "accepted", split: str | None = None
    ) -> list[ImageRecord]:
        """Catalog records of the images (``status`` None = every status), by id."""
        with self.catalog() as cat:
            return cat.images(status=status, split=split)

    # ------------------------------------------------------------------ predictions
    @property
    def predictions(self) -> Predictions:
        """The workspace's model predictions (add / latest / write)."""
        return Predictions(self)

    # ------------------------------------------------------------------ annotation
    def annotation(
        self,
        backend: AnnotationBackend | LabelStudio | None = None,
        *,
        overrides: Iterable[str] = (),
    ) -> Annotation:
        """Annotation rounds through ``backend`` (an :class:`AnnotationBackend` such as
        :class:`~entityseg_data.annotation.fake.InMemoryBackend`, or a :class:`LabelStudio`
        handle); default: the Label Studio server recorded in the workspace."""
        if backend is None:
            backend = LabelStudio.connect(self)
        return Annotation(self, backend, overrides=overrides)

    @property
    def rounds(self) -> Rounds:
        """The annotation rounds: what each push cost in time and edits, and what the
        pre-annotation saved (``ws.rounds.report(out_dir)``; docs/rounds.md)."""
        return Rounds(self)

    def select(
        self,
        n: int,
        *,
        name: str | None = None,
        strategy: str | None = None,
        quotas: Sequence[str] | None = None,
        seed: int | None = None,
        replace: bool = False,
        overrides: Iterable[str] = (),
        progress: Callable[[str, int, int], None] | None = None,
    ) -> SelectionResult:
        """Choose the next ``n`` images to annotate and store them as a named selection
        (push them with ``ws.annotation(...).push(1, selection=name)``).

        ``strategy``: ``uncertainty`` (default: low mean entity score, small covered area,
        full/crop view disagreement of the newest prediction, blended with k-center diversity
        on the cached CLIP image embeddings, near duplicates dropped) or ``random`` (seeded
        baseline). ``quotas``: ``["coco=10", "unsplash=0.25"]`` (most images per source).
        ``seed``: the random strategy's (default: the workspace seed). ``name``: default the
        first free ``<strategy>-<k>``. Settings: the ``selection`` config section with
        ``overrides``. CLIP embeddings missing from the cache are computed first with the
        ingest section's CLIP (``selection.embed_missing``). ``progress(step, done, total)``
        follows ``"embed"`` (images embedded) and ``"score"`` (predictions read). See
        docs/selection.md."""
        from entityseg_data.annotation.select import missing_embeddings, select_images

        extra = list(overrides)
        if strategy is not None:
            extra.append(f"selection.strategy={strategy}")
        if quotas is not None:
            extra.append(f"selection.quotas=[{', '.join(quotas)}]")
        cfg = self.config(extra)
        if cfg.selection.strategy == "uncertainty" and cfg.selection.embed_missing:
            todo = missing_embeddings(self, cfg.selection, cfg.ingest)
            if todo:
                log.info("select: embedding %d images missing from the CLIP cache", len(todo))
                _embed(self, cfg.ingest, todo, progress=progress)
        return select_images(
            self,
            cfg.selection,
            cfg.ingest,
            n=n,
            name=name,
            seed=cfg.seed if seed is None else seed,
            replace=replace,
            progress=None if progress is None else (lambda d, t: progress("score", d, t)),
        )

    def selection(self, name: str) -> tuple[SelectionItem, ...]:
        """The images of selection ``name`` in the order chosen, with scores and reasons."""
        with self.catalog() as cat:
            return cat.selection(name)

    def selections(self) -> list[SelectionRecord]:
        """Every stored selection, oldest first."""
        with self.catalog() as cat:
            return cat.selections()

    def annotators(self, stage: int = 1) -> list[str]:
        """Annotators with annotation files of ``stage`` (``import`` for imported datasets)."""
        from entityseg_data.masks.store import annotators

        return annotators(self.root, stage)

    # ------------------------------------------------------------------ the dataset
    def dataset(
        self,
        stage: int = 1,
        *,
        annotator: str | None = None,
        statuses: Sequence[str] | None = ("approved",),
        split: str | None = None,
    ) -> Dataset:
        """The annotated images as typed records (see :class:`~entityseg_data.dataset.Dataset`):
        by default the approved stage-1 masks with their stage-2 names."""
        return Dataset(self, stage=stage, annotator=annotator, statuses=statuses, split=split)

    # ------------------------------------------------------------------ measuring
    def stats(
        self,
        *,
        stage: int = 1,
        name: str | None = None,
        config: StatsConfig | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> DatasetStats:
        """The paper's Table 2 measures and Fig. 3 distributions of the approved annotations
        (with stage-2 names); see docs/statistics.md."""
        from entityseg_data.stats.engine import workspace_stats

        return workspace_stats(
            self,
            name=name,
            stage=stage,
            config=config or self.config().stats,
            progress=progress,
        )

    def stats_report(
        self,
        out_dir: str | Path,
        *,
        stage: int = 1,
        name: str | None = None,
        vocabulary: bool = True,
        plots: bool = True,
    ) -> StatsReport:
        """:meth:`stats` written to ``out_dir`` (stats.json, table2.md/.csv, classes.csv,
        images.csv, entities.csv, fig3.png, entity_shapes.png). ``vocabulary``: count classes
        through the annotation vocabulary (merged names, thing/stuff)."""
        from entityseg_data.api.stats import stats_report

        stats = self.stats(stage=stage, name=name)
        return stats_report([stats], out_dir, vocabulary=vocabulary, plots=plots)

    def agreement(
        self,
        annotators: Sequence[str] | None = None,
        *,
        stage: int = 1,
        iou_threshold: float = 0.5,
    ) -> Agreement:
        """Inter-annotator agreement (the paper's Table 1) on the images several annotators
        annotated: mask mAP of each annotator against each other, category accuracy of the
        stage-2 names of matched masks. ``annotators``: default every annotator with files of
        ``stage``."""
        from entityseg_data.api.evaluation import agreement

        names = list(annotators) if annotators is not None else self.annotators(stage)
        if len(names) < 2:
            raise DataError(f"agreement needs two or more annotators of stage {stage}, got {names}")
        return agreement(
            [f"ws:{n}" for n in names], workspace=self, stage=stage, iou_threshold=iou_threshold
        )

    def evaluate(
        self,
        model_version: str,
        *,
        stage: int = 1,
        boundary: bool = False,
        split: str | None = None,
    ) -> dict[str, Any]:
        """Class-agnostic AP^e / AR (and boundary AP) of the predictions of ``model_version``
        against the approved masks (images without a prediction count as empty). Returns the
        metrics dict of :mod:`entityseg_data.evaluation.metrics`."""
        from entityseg_data.api.evaluation import evaluate_entity

        ds = self.dataset(stage, split=split)
        if not len(ds):
            raise DataError(f"{self.root}: no approved stage-{stage} annotations to evaluate on")
        gt = ds.to_coco()
        preds: list[dict[str, Any]] = []
        for image_id in ds.image_ids:
            masks = self.predictions.latest(image_id, model_version)
            if masks is None:
                continue
            for e in masks.entities:
                preds.append(
                    {
                        "image_id": image_id,
                        "category_id": 1,
                        "segmentation": e.rle,
                        "score": 1.0 if e.score is None else float(e.score),
                    }
                )
        return evaluate_entity(gt, preds, boundary=boundary)

    # ------------------------------------------------------------------ exports
    def export_entityseg(
        self,
        out_dir: str | Path,
        *,
        seed: int | None = None,
        lr: bool = True,
        split: bool = True,
        overrides: Iterable[str] = (),
        progress: Callable[[int], object] | None = None,
    ) -> ExportResult:
        """The EntitySeg release layout: COCO JSON (compressed RLE, one ``entity`` category,
        free-form names) per split, hr images and the lr copy; splits are kept in the
        catalog. ``seed``: default the workspace's."""
        from entityseg_data.api.export import export_entityseg

        return export_entityseg(
            self, out_dir, seed=seed, lr=lr, split=split, overrides=overrides, progress=progress
        )

    def export_hf(
        self,
        out_dir: str | Path,
        *,
        push_to_hub: str | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, Any]:
        """A Hugging Face dataset (Parquet per split + ``out_dir/hf`` for
        ``datasets.load_from_disk``); see :func:`entityseg_data.api.export.export_hf`."""
        from entityseg_data.api.export import export_hf

        return export_hf(self, out_dir, push_to_hub=push_to_hub, progress=progress)

    def export_subsets(
        self,
        out_dir: str | Path,
        *,
        k_instance: int = 100,
        k_semantic: int = 100,
        k_panoptic: int = 100,
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, Path]:
        """The class-aware instance / semantic / panoptic subsets of the approved annotations
        (top-K classes; 0 skips one); see :func:`entityseg_data.api.export.export_subsets`."""
        from entityseg_data.api.export import export_subsets

        return export_subsets(
            self,
            out_dir,
            k_instance=k_instance,
            k_semantic=k_semantic,
            k_panoptic=k_panoptic,
            progress=progress,
        )

    # ------------------------------------------------------------------ model
    def train(
        self,
        config: TrainConfig | None = None,
        *,
        overrides: Iterable[str] | Mapping[str, Any] = (),
        resume: bool = True,
        progress: bool = False,
    ) -> TrainResult:
        """Fine-tune on this workspace's approved masks (``data.workspace`` is set to this
        workspace when the config names no data). ``resume``: continue from the run's last
        checkpoint."""
        from entityseg_data.api.training import load_train_config, train

        cfg = load_train_config(None, overrides) if config is None else config
        if config is not None and overrides:
            from entityseg_data.config import apply_overrides

            cfg = apply_overrides(cfg, overrides)
        if not (cfg.data.workspace or cfg.data.train_json):
            from entityseg_data.config import apply_overrides

            cfg = apply_overrides(cfg, {"data.workspace": str(self.root)})
        return train(cfg, resume=resume, progress=progress)


def _embed(
    ws: Workspace,
    ingest: IngestConfig,
    images: Sequence[ImageRecord],
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> int:
    """Compute and cache the CLIP image embeddings of ``images`` with the ingest section's CLIP
    (the cache the NSFW stage fills); returns how many are in the cache now."""
    from entityseg_data.catalog.embeddings import EmbeddingCache, cache_path
    from entityseg_data.ingest.filters.clip import load_clip
    from entityseg_data.ingest.filters.nsfw import embed_images

    clip = load_clip(
        ingest.clip_model,
        ingest.clip_pretrained,
        allow_random=ingest.allow_random_clip,
        device=ingest.clip_device,
    )
    items = [(r.sha256, str(ws.image_path(r))) for r in images]
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress("embed", done[0], len(items))

    with EmbeddingCache(cache_path(ws.cache_dir, clip.key)) as cache:
        found = embed_images(clip, cache, items, batch_size=ingest.clip_batch_size, progress=step)
    return len(found)
