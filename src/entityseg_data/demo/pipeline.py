"""The whole curation loop on bundled samples: what ``entityseg-data demo`` runs.

ingest (folder + loopback URL list, de-duplication, resolution and NSFW filters) -> stage-1
pre-annotations -> Label Studio (local server in the workspace, or one given by URL + token) ->
push stage 1 -> [simulated annotators] -> pull with QA -> push stage 2 -> [simulated names] -> pull
-> agreement (Table 1) -> statistics (Table 2 + plots) -> exports (EntitySeg hr + lr, Hugging Face)
-> fine-tune a tiny CropFormer -> pre-annotate again with it.

Every step is idempotent (the catalog and Label Studio are checked before anything is written), so
a killed demo rerun with the same folder completes without duplicates.

Without ``simulate`` the demo stops after the stage-1 push and tells the user how to annotate and
continue. With it, two SIMULATED annotators (clearly labelled: :mod:`entityseg_data.annotation.
simulate`) write annotations through the Label Studio API as two different users.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entityseg_data.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from entityseg_data.catalog import ImageRecord

log = logging.getLogger(__name__)

ANNOTATORS = ("alice", "bob")
BASELINE_VERSION = "baseline-felzenszwalb"
TUNED_VERSION = "cropformer-tiny-demo"
# concepts of the entities of the bundled photos (the simulated namers pick among them)
PHOTO_CONCEPTS = {
    "astronaut": ("person", "wall", "building"),
    "chelsea": ("cat", "table", "wall"),
    "coffee": ("cup", "table", "wall"),
    "rocket": ("rocket", "sky", "tree", "road"),
}


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does.

    ``directory`` becomes the workspace; ``labelstudio_url`` (with ``LABEL_STUDIO_API_KEY`` in the
    environment) uses an existing server instead of starting one in the workspace; ``port`` 0
    picks a free port; synthetic scenes are ``synthetic_hw`` (height, width) pixels;
    ``train_steps`` is the length of the tiny fine-tuning run.
    """

    directory: str
    simulate: bool = False
    labelstudio_url: str = ""
    port: int = 0
    n_synthetic: int = 3
    synthetic_hw: tuple[int, int] = (900, 1200)
    train_steps: int = 8
    seed: int = 0
    keep_server: bool = False
    wait: bool = True


@dataclass
class DemoResult:
    """Where everything is, and the headline numbers."""

    workspace: str = ""
    labelstudio_url: str = ""
    reports: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    stopped_after_push: bool = False


def _seed(*parts: Any) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


class Demo:
    """Runs the demo steps in order; ``echo`` receives the lines to print."""

    def __init__(self, options: DemoOptions, *, echo: Callable[[str], None] | None = None) -> None:
        self.opts = options
        self.echo = echo or log.info
        self.result = DemoResult()
        self.ws: Any = None
        self.server: Any = None
        self.client: Any = None
        self.layout: Any = None

    # ------------------------------------------------------------------ the loop
    def run(self) -> DemoResult:
        try:
            self.step_workspace()
            self.step_samples()
            self.step_ingest()
            self.step_preannotate()
            self.step_labelstudio()
            self.step_push(1)
            if not self.opts.simulate:
                self.result.stopped_after_push = True
                self.instructions()
                if self.server is not None and self.opts.wait:
                    self.wait_for_user()
                return self.result
            self.step_simulate_stage1()
            self.step_pull(1)
            self.step_push(2)
            self.step_simulate_stage2()
            self.step_pull(2)
            self.step_agreement()
            self.step_stats()
            self.step_export()
            self.step_train()
            self.step_preannotate_again()
            self.summary()
            return self.result
        finally:
            if self.server is not None and not self.opts.keep_server:
                self.server.stop()
                self._pid_file().unlink(missing_ok=True)

    def _heading(self, text: str) -> None:
        self.echo("")
        self.echo(f"== {text}")

    # ------------------------------------------------------------------ steps
    def step_workspace(self) -> None:
        from entityseg_data.config import WorkspaceConfig, apply_overrides
        from entityseg_data.workspace import Workspace

        self._heading("workspace")
        cfg = apply_overrides(
            WorkspaceConfig(name="entityseg-demo", seed=self.opts.seed),
            [
                "ingest.min_side=256",
                "ingest.clip_pretrained=",
                "ingest.allow_random_clip=true",
                "ingest.workers=4",
                # an untrained CLIP scores around 0.45: a high cut keeps the demo deterministic
                "ingest.nsfw_threshold=0.95",
                f"annotation.annotators=[{', '.join(ANNOTATORS)}]",
                "annotation.overlap_fraction=1.0",
                "annotation.overlap_annotators=2",
                "annotation.overlap_policy=smaller_wins",
                "export.val_fraction=0.3",
                "export.stratify_by_source=false",
            ],
        )
        self.ws = Workspace.create(self.opts.directory, cfg, exist_ok=True)
        self.result.workspace = str(self.ws.root)
        self.echo(f"workspace: {self.ws.root}")

    def step_samples(self) -> None:
        from entityseg_data.demo.samples import write_samples

        self._heading("bundled samples")
        h, w = self.opts.synthetic_hw
        self.layout = write_samples(
            self.ws.root / "samples",
            n_synthetic=self.opts.n_synthetic,
            synthetic_size=(h, w),
            seed=self.opts.seed,
        )
        n_folder = len(list(self.layout.folder.glob("*.png"))) + len(
            list(self.layout.folder.glob("*.jpg"))
        )
        self.echo(
            f"{n_folder} photos in {self.layout.folder} (scikit-image, CC0 / public domain; "
            "with an exact copy, a re-encoded copy and one too small), "
            f"{len(self.layout.url_names)} URLs to serve on 127.0.0.1 "
            f"({self.opts.n_synthetic} synthetic {h}x{w} scenes, one photo, one dead link)"
        )

    def step_ingest(self) -> None:
        from entityseg_data.demo.http_server import serve_folder
        from entityseg_data.demo.samples import write_url_list
        from entityseg_data.ingest.pipeline import ingest
        from entityseg_data.ingest.sources import parse_source

        self._heading("ingest")
        self.echo(
            "NSFW filter: CLIP ViT-B-32 built WITHOUT pretrained weights (none are available "
            "offline): its scores are meaningless and only show the filter running"
        )
        with serve_folder(self.layout.served) as base:
            urls = write_url_list(self.layout, base, self.ws.root / "samples" / "urls.csv")
            sources = [
                parse_source(f"folder:{self.layout.folder}", domain_tags=("photo",)),
                parse_source(f"urls:{urls}", domain_tags=("demo-url",)),
            ]
            report = ingest(self.ws, sources)
        for counts in [*report.sources.values(), report.totals()]:
            c = counts.to_dict()
            self.echo(
                f"  {c['label'][-48:]:<48} seen {c['seen']:>2}  fetched {c['fetched']:>2}  "
                f"skipped {c['skipped']:>2}  accepted {c['accepted']:>2}  "
                f"duplicates {c['duplicates'] or '-'}  filtered {c['filtered'] or '-'}  "
                f"failed {c['failed'] or '-'}"
            )
        path = self.ws.exports_dir / "reports" / "ingest.json"
        atomic_write_json(path, report.to_dict(), indent=2)
        self.result.reports["ingest"] = str(path)
        with self.ws.catalog() as cat:
            self.result.numbers["accepted_images"] = len(cat.images())
            self.result.numbers["duplicates"] = cat.count_duplicates()

    def _image_rgb(self, row: ImageRecord) -> np.ndarray:
        from entityseg_data.io.images import read_image

        return read_image(self.ws.image_path(row))

    def step_preannotate(self) -> None:
        from entityseg_data.annotation.ml_backend import felzenszwalb_segmenter

        self._heading("stage-1 pre-annotations")
        seg = felzenszwalb_segmenter(scale=900.0, sigma=0.8, min_size=600, max_side=400)
        done = self._predicted(BASELINE_VERSION)
        with self.ws.catalog() as cat:
            rows = cat.images()
        n = 0
        for row in rows:
            if row["id"] in done:
                continue
            label_map, scores = seg(self._image_rgb(row))
            self._write_prediction(row["id"], label_map, scores, BASELINE_VERSION)
            n += 1
        self.echo(
            f"{n} new pre-annotations ({len(done)} already there) from a non-learned "
            "segmenter (Felzenszwalb): no CropFormer weights are trained yet; the fine-tuned "
            "tiny CropFormer pre-annotates again at the end"
        )

    def _predicted(self, version: str) -> set[int]:
        from entityseg_data.model.inference.workspace_io import predicted_ids

        return predicted_ids(self.ws, version)

    def _write_prediction(
        self, image_id: int, label_map: np.ndarray, scores: np.ndarray, version: str
    ) -> None:
        from entityseg_data.masks import rle
        from entityseg_data.model.inference.workspace_io import write_prediction_payload

        rles = rle.label_map_to_rles(label_map)
        entities = [
            {"id": int(k), "segmentation": r, "score": float(scores[k - 1])}
            for k, r in sorted(rles.items())
        ]
        payload = {
            "image_id": int(image_id),
            "height": int(label_map.shape[0]),
            "width": int(label_map.shape[1]),
            "model_version": version,
            "entities": entities,
        }
        write_prediction_payload(self.ws, payload, version)

    def step_labelstudio(self) -> None:
        from entityseg_data.annotation.labelstudio import session
        from entityseg_data.annotation.labelstudio.server import free_port

        self._heading("Label Studio")
        if self.opts.labelstudio_url:
            self.client = session.connect(self.ws, self.opts.labelstudio_url)
            self.client.whoami()
            self.echo(f"using the server at {self.opts.labelstudio_url}")
        else:
            self.echo(
                "starting a local Label Studio in the workspace (first start: about a minute of "
                "database migrations)"
            )
            self._stop_stale_server()
            self.server, self.client = session.start_local_server(
                self.ws,
                port=self.opts.port or free_port(),
                die_with_parent=not self.opts.keep_server,
            )
            atomic_write_json(self._pid_file(), {"pid": self.server.process.pid})
            self.echo(f"Label Studio is up at {self.server.url}")
        self.result.labelstudio_url = self.client.url
        # the annotator accounts (simulated or human): each annotates with its own login
        session.create_annotators(self.ws, ANNOTATORS, admin=self.client)

    def _pid_file(self) -> Path:
        return self.ws.root / "labelstudio" / "demo_server.json"

    def _stop_stale_server(self) -> None:
        """A killed demo leaves its Label Studio running (own process group): stop it so the
        rerun does not start a second server on the same database."""
        import os
        import signal
        import time

        path = self._pid_file()
        if not path.exists():
            return
        pid = int(json.loads(path.read_text())["pid"])
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            path.unlink(missing_ok=True)
            return
        self.echo(f"stopping the Label Studio left running by an interrupted demo (pid {pid})")
        for _ in range(100):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
        path.unlink(missing_ok=True)

    def step_push(self, stage: int) -> None:
        from entityseg_data.annotation.labelstudio.session import open_backend
        from entityseg_data.annotation.push import push

        self._heading(f"push stage {stage}")
        wcfg = self.ws.config()
        backend = open_backend(self.ws, self.client, labelstudio=wcfg.labelstudio)
        report = push(self.ws, backend, wcfg.annotation, stage=stage, seed=wcfg.seed)
        info = report.to_json()
        self.echo(
            f"stage {stage}: {info['images']} images -> {info['tasks']} tasks in projects "
            f"{info['projects']} ({info['overlap_images']} images for several annotators); "
            f"errors: {len(info['errors'])}"
        )

    # ------------------------------------------------------------------ simulation
    def _annotated_by_me(self, client: Any, task_id: int) -> bool:
        me = client.whoami()["id"]
        return any(a.get("completed_by") == me for a in client.task_annotations(task_id))

    def _simulate(self, stage: int, make: Callable[[str, int], Any]) -> int:
        from entityseg_data.annotation.labelstudio import session

        n = 0
        for annotator in ANNOTATORS:
            client = session.annotator_client(self.ws, annotator, url=self.client.url)
            for row in session.tasks_for(self.ws, stage, annotator):
                if self._annotated_by_me(client, int(row["ls_task_id"])):
                    continue
                ann = make(annotator, int(row["image_id"]))
                if ann is None:
                    continue
                session.submit_annotation(
                    self.ws,
                    stage=stage,
                    annotator=annotator,
                    image_id=int(row["image_id"]),
                    annotation=ann,
                    client=client,
                )
                n += 1
        return n

    def _prediction_label_map(self, image_id: int) -> np.ndarray | None:
        from entityseg_data.masks import rle

        found = self.ws.latest_prediction(image_id, BASELINE_VERSION)
        if found is None:
            return None
        _, data = found
        segs = [e["segmentation"] for e in data["entities"]]
        ids = [int(e["id"]) for e in data["entities"]]
        return rle.rles_to_label_map(segs, data["height"], data["width"], ids=ids)

    def step_simulate_stage1(self) -> None:
        from entityseg_data.annotation.simulate import SIMULATION_LABEL, EditPlan, simulate_masks
        from entityseg_data.masks import rle
        from entityseg_data.masks.store import Entity, ImageAnnotation

        self._heading("stage 1 annotation (SIMULATED)")
        self.echo(SIMULATION_LABEL)
        plans = {
            "alice": EditPlan(moved_boundaries=1, merges=0, splits=0, missed=0, overlaps=0),
            "bob": EditPlan(moved_boundaries=2, merges=1, splits=1, missed=1, overlaps=1),
        }

        def make(annotator: str, image_id: int) -> Any:
            lm = self._prediction_label_map(image_id)
            if lm is None:
                return None
            masks, _ = simulate_masks(lm, seed=_seed(annotator, image_id), plan=plans[annotator])
            ents = tuple(
                Entity(id=f"{annotator[0]}{image_id}_{k}", segmentation=rle.encode(m))
                for k, m in enumerate(masks, 1)
            )
            return ImageAnnotation(
                image_id=image_id,
                height=lm.shape[0],
                width=lm.shape[1],
                stage=1,
                annotator=annotator,
                entities=ents,
            )

        n = self._simulate(1, make)
        self.echo(
            f"{n} annotations written through the Label Studio API as {', '.join(ANNOTATORS)} "
            "(alice: one moved boundary; bob: moved boundaries, a merge, a split, a missed "
            "entity and an overlap)"
        )

    def _concepts(self, image_id: int, ann: Any) -> dict[str, str | None]:
        """entity id -> the concept it shows (synthetic ground truth, or the photo's concepts)."""
        from PIL import Image

        from entityseg_data.masks import rle

        with self.ws.catalog() as cat:
            row = cat.image(image_id)
        name = Path(row["source_id"]).name
        stem = Path(name).stem
        out: dict[str, str | None] = {}
        gt = self.layout.synthetic_gt.get(name) if self.layout else None
        if gt:
            gt_map = np.asarray(Image.open(gt["label_map"]))
            names = {int(k): v for k, v in gt["names"].items()}
            for e in ann.entities:
                m = rle.decode(e.segmentation).astype(bool)
                vals, counts = np.unique(gt_map[m], return_counts=True)
                out[e.id] = names.get(int(vals[np.argmax(counts)])) if len(vals) else None
            return out
        concepts = PHOTO_CONCEPTS.get(stem.split("_")[0])
        for e in ann.entities:
            out[e.id] = concepts[_seed(image_id, e.id) % len(concepts)] if concepts else None
        return out

    def step_simulate_stage2(self) -> None:
        from dataclasses import replace

        from entityseg_data.annotation.simulate import SIMULATION_LABEL, simulate_name
        from entityseg_data.masks.store import load_annotation

        self._heading("stage 2 naming (SIMULATED)")
        self.echo(SIMULATION_LABEL)
        with self.ws.catalog() as cat:
            approved = {
                r["image_id"]: r["annotator"]
                for r in cat.annotations(stage=1)
                if r["status"] == "approved"
            }

        def make(annotator: str, image_id: int) -> Any:
            src = approved.get(image_id)
            base = load_annotation(self.ws.root, 1, src, image_id) if src else None
            if base is None:
                return None
            concepts = self._concepts(image_id, base)
            ents = []
            for e in base.entities:
                rng = np.random.default_rng(_seed(annotator, image_id, e.id))
                ents.append(replace(e, name=simulate_name(concepts.get(e.id), rng=rng)))
            return replace(base, stage=2, annotator=annotator, entities=tuple(ents))

        n = self._simulate(2, make)
        self.echo(
            f"{n} stage-2 annotations: free-form names with plurals, synonyms, case, "
            "misspellings, 'unknown', 'blurred' and '<supercategory>_other'"
        )

    # ------------------------------------------------------------------ after annotation
    def step_pull(self, stage: int) -> None:
        from entityseg_data.annotation.labelstudio.session import open_backend
        from entityseg_data.annotation.pull import pull

        self._heading(f"pull stage {stage} (with QA)")
        wcfg = self.ws.config()
        backend = open_backend(self.ws, self.client, labelstudio=wcfg.labelstudio)
        reports = pull(self.ws, backend, wcfg.annotation, stages=(stage,))
        rep = reports[stage]
        info = rep.to_json()
        path = self.ws.exports_dir / "reports" / f"pull_stage{stage}.json"
        atomic_write_json(path, info, indent=2)
        self.result.reports[f"pull_stage{stage}"] = str(path)
        keys = ("tasks", "pulled", "rejected", "unchanged", "unannotated", "approved")
        self.echo("  " + ", ".join(f"{k} {info.get(k)}" for k in keys if k in info))
        for annotator, found in sorted(info["findings"].items()):
            shown = ", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none"
            self.echo(f"  QA {annotator}: {shown}")
        self.result.numbers[f"approved_stage{stage}"] = info.get("approved")

    def step_agreement(self) -> None:
        from entityseg_data.evaluation.consistency import consistency, to_markdown

        self._heading("annotator agreement (the paper's Table 1)")
        out = self.ws.exports_dir / "reports"
        ids = [f"ws:{a}" for a in ANNOTATORS]
        masks = consistency(ids, workspace=self.ws, stage=1)
        names = consistency(ids, workspace=self.ws, stage=2)
        md = (
            "# Annotator agreement (SIMULATED annotators)\n\n## Stage 1: masks\n\n"
            + to_markdown(masks)
            + "\n\n## Stage 2: names\n\n"
            + to_markdown(names)
        )
        atomic_write_text(out / "agreement.md", md)
        atomic_write_json(out / "agreement.json", {"stage1": masks, "stage2": names}, indent=2)
        self.result.reports["agreement"] = str(out / "agreement.md")
        self.result.numbers["mask_map"] = masks["mean_mask_map"]
        self.result.numbers["category_accuracy"] = names["mean_category_accuracy"]
        self.echo(
            f"mean pairwise mask mAP {masks['mean_mask_map']:.3f}; mean category accuracy "
            f"{_fmt(names['mean_category_accuracy'])} (report: {out / 'agreement.md'})"
        )

    def step_stats(self) -> None:
        from entityseg_data.stats.engine import workspace_stats
        from entityseg_data.stats.report import write_report
        from entityseg_data.stats.table import table2, to_markdown

        self._heading("statistics (the paper's Table 2 and Fig. 3)")
        stats = workspace_stats(self.ws, name="demo")
        out = self.ws.exports_dir / "reports" / "stats"
        from entityseg_data.stats.classes import vocabulary_lookups

        found = vocabulary_lookups(n for n in stats.names)
        kwargs: dict[str, Any] = {}
        if found is not None:
            kwargs = {"is_thing": found[0], "class_of": found[1]}
        paths = write_report([stats], out, **kwargs)
        for line in to_markdown(table2([stats])).splitlines():
            self.echo("  " + line)
        self.result.reports["stats"] = str(out)
        self.result.reports.update({f"stats_{k}": str(v) for k, v in paths.items()})

    def step_export(self) -> None:
        from entityseg_data.export.entityseg import export_entityseg
        from entityseg_data.export.hf import export_hf

        self._heading("exports")
        es = export_entityseg(self.ws, self.ws.exports_dir / "entityseg", seed=self.opts.seed)
        hf = export_hf(self.ws, self.ws.exports_dir / "hf")
        self.result.reports["entityseg"] = str(self.ws.exports_dir / "entityseg")
        self.result.reports["hf"] = str(hf.get("hf") or self.ws.exports_dir / "hf")
        self.result.numbers["export_counts"] = es.counts
        self.echo(f"EntitySeg JSON (hr + lr): {self.ws.exports_dir / 'entityseg'}")
        self.echo(f"Hugging Face dataset: {hf.get('hf')} (rows {hf.get('rows')})")

    def step_train(self) -> None:
        from entityseg_data.model.training.config import load_train_config
        from entityseg_data.model.training.distributed import init_distributed
        from entityseg_data.model.training.trainer import Trainer

        self._heading("fine-tune a tiny CropFormer")
        steps = self.opts.train_steps
        out = self.ws.root / "runs" / "tiny"
        cfg = load_train_config(
            None,
            [
                "model=tiny_cpu",
                f"out_dir={out}",
                f"max_iter={steps}",
                "ims_per_batch=2",
                "device=cpu",
                "amp=fp32",
                f"checkpoint_period={max(1, steps // 2)}",
                "eval_period=0",
                "log_period=1",
                "tensorboard=false",
                "threads=2",
                f"data.workspace={self.ws.root}",
                "data.min_sizes=[160, 192]",
                "data.max_size=320",
                "data.num_workers=0",
                "loss.num_points=512",
                "optim.lr=0.0005",
            ],
        )
        trainer = Trainer(
            config=cfg, dist=init_distributed("cpu"), eval_fn=None, resume=True, progress=False
        )
        res = trainer.train()
        self.model_dir = res.model_dir
        if res.losses:
            self.echo(
                f"{res.iteration} steps on CPU (from {res.start_iteration}), last loss "
                f"{res.losses[-1]:.3f}; model: {res.model_dir}"
            )
        else:
            self.echo(f"already trained ({res.iteration} steps); model: {res.model_dir}")
        self.result.reports["model"] = str(res.model_dir)
        self.result.numbers["train_steps"] = res.iteration

    def step_preannotate_again(self) -> None:
        from entityseg_data.model.inference.batch import Job, run_predictions
        from entityseg_data.model.inference.inputs import InputItem
        from entityseg_data.model.inference.predictor import EntitySegmenter
        from entityseg_data.model.inference.workspace_io import workspace_images

        self._heading("pre-annotate again with the fine-tuned model")
        # the tiny model was trained at short side 160-192: predict at a matching size
        seg = EntitySegmenter.from_pretrained(
            str(self.model_dir), device="cpu", min_size=256, max_size=400
        )
        seg.model_version = TUNED_VERSION
        jobs = [Job(InputItem(p, p.parent), iid) for iid, p in workspace_images(self.ws)]
        summary = run_predictions(
            seg,
            jobs,
            output=None,
            formats=("png", "json"),
            skip_existing=True,
            workspace=self.ws,
        )
        info = summary.as_dict()
        self.echo(
            f"{info['done']} images pre-annotated ({info['skipped']} already), "
            f"{info['entities']} entities, {info['failed']} failed: the next `annotate push` "
            "sends them as stage-1 predictions"
        )
        self.result.numbers["repredicted"] = info["done"] + info["skipped"]

    # ------------------------------------------------------------------ messages
    def instructions(self) -> None:
        url = self.client.url if self.client else self.opts.labelstudio_url
        ws = self.ws.root
        a, b = ANNOTATORS
        self._heading("next: annotate by hand")
        self.echo(
            f"Open {url} and log in as {a}@... / {b}@... (e-mails and passwords are in "
            f"{ws / 'labelstudio' / 'entityseg_credentials.json'}); each has a stage-1 project "
            "with the pre-annotations: correct them so every entity has one mask, no overlaps."
        )
        self.echo("Then continue with:")
        for cmd in (
            f"entityseg-data -w {ws} annotate pull --stage 1",
            f"entityseg-data -w {ws} annotate push --stage 2   # name the approved masks",
            f"entityseg-data -w {ws} annotate pull --stage 2",
            f"entityseg-data -w {ws} consistency ws:{a} ws:{b}",
            f"entityseg-data -w {ws} consistency --stage 2 ws:{a} ws:{b}",
            f"entityseg-data -w {ws} stats --with-workspace --out {ws}/exports/reports/stats",
            f"entityseg-data -w {ws} export entityseg --out {ws}/exports/entityseg",
            f"entityseg-data train --set data.workspace={ws} --set model=tiny_cpu "
            f"--set max_iter=50 --set device=cpu --set data.min_sizes=[160,192] "
            f"--set data.max_size=320 --out {ws}/runs/tiny",
            f"entityseg-data -w {ws} predict --workspace-images --weights {ws}/runs/tiny/model",
        ):
            self.echo(f"  {cmd}")
        self.echo("Or rerun with --simulate to let two simulated annotators do it.")

    def wait_for_user(self) -> None:
        import time

        self.echo(f"Label Studio keeps running at {self.server.url}; press Ctrl-C to stop it.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            self.echo("stopping Label Studio")

    def summary(self) -> None:
        self._heading("done")
        self.echo(f"workspace:    {self.result.workspace}")
        self.echo(f"Label Studio: {self.result.labelstudio_url}")
        for key, path in sorted(self.result.reports.items()):
            self.echo(f"{key + ':':<14}{path}")
        atomic_write_json(
            self.ws.exports_dir / "reports" / "demo_summary.json",
            {
                "workspace": self.result.workspace,
                "labelstudio_url": self.result.labelstudio_url,
                "reports": self.result.reports,
                "numbers": self.result.numbers,
            },
            indent=2,
        )


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def run_demo(options: DemoOptions, *, echo: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demo; see the module docstring."""
    return Demo(options, echo=echo).run()
