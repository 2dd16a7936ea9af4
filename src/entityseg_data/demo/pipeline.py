"""The whole curation loop on bundled samples, written on the public API: what
``entityseg-data demo`` runs.

ingest (folder + loopback URL list, de-duplication, resolution and NSFW filters) -> stage-1
pre-annotations (Felzenszwalb) -> Label Studio (local server in the workspace, or one given by
URL + token) -> round 1: a random selection of half the images, push stage 1 -> [simulated
annotators] -> pull with QA -> fine-tune a tiny CropFormer on the approved masks -> pre-annotate
with it -> round 2: the rest, chosen and ranked by model uncertainty, pushed with the fine-tuned
model's seeds -> [simulated annotators] -> pull -> push stage 2 -> [simulated names] -> pull ->
agreement (Table 1) -> statistics (Table 2 + plots) -> exports (EntitySeg hr + lr, Hugging Face)
-> the round report (minutes per image and entity, edits, seed AP^e per round and model).

Every step is idempotent (the API skips what the catalog and Label Studio already hold), so a
killed demo rerun with the same folder completes without duplicates. Without ``simulate`` the
demo stops after the stage-1 push and says how to annotate and continue; with it, two SIMULATED
annotators (clearly labelled) submit through Label Studio as two different users, each task with
a SIMULATED lead time (an assumed cost per edit against the task's seed, ``LeadTimeModel``),
labelled as simulated in the catalog and in the round report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import entityseg_data as esd
from entityseg_data import procs
from entityseg_data.api.simulation import (
    SIMULATION_LABEL,
    EditPlan,
    LeadTimeModel,
    simulate_masks,
    simulate_name,
    simulated_seconds,
)
from entityseg_data.config import WorkspaceConfig, apply_overrides
from entityseg_data.demo.http_server import serve_folder
from entityseg_data.demo.samples import SampleLayout, write_samples, write_url_list
from entityseg_data.io import atomic_write_json, atomic_write_text
from entityseg_data.masks import rle

log = logging.getLogger(__name__)

ANNOTATORS = ("alice", "bob")
BASELINE_VERSION = "baseline-felzenszwalb"
TUNED_VERSION = "cropformer-tiny-demo"
ROUND_SELECTIONS = ("round-1-random", "round-2-uncertainty")
# alice accepts the pre-annotation with one moved boundary; bob makes every kind of edit
PLANS = {
    "alice": EditPlan(moved_boundaries=1, merges=0, splits=0, missed=0, overlaps=0),
    "bob": EditPlan(moved_boundaries=2, merges=1, splits=1, missed=1, overlaps=1),
}
# concepts of the entities of the bundled photos (the simulated namers pick among them)
PHOTO_CONCEPTS = {
    "astronaut": ("person", "wall", "building"),
    "chelsea": ("cat", "table", "wall"),
    "coffee": ("cup", "table", "wall"),
    "rocket": ("rocket", "sky", "tree", "road"),
}
SETTINGS = [
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
]


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does. ``directory`` becomes the workspace; ``labelstudio_url`` (with
    ``LABEL_STUDIO_API_KEY``) uses a running server instead of starting one; ``port`` 0 = a free
    port; synthetic scenes are ``synthetic_hw`` (height, width) pixels; ``train_steps`` is the
    length of the tiny fine-tuning run."""

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


def run_demo(options: DemoOptions, *, echo: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demo (module docstring); ``echo`` receives the lines to print."""
    out = echo or log.info
    opts, res = options, DemoResult()

    def heading(text: str) -> None:
        out("")
        out(f"== {text}")

    heading("workspace")
    config = apply_overrides(WorkspaceConfig(name="entityseg-demo", seed=opts.seed), SETTINGS)
    ws = esd.Workspace.create(opts.directory, config, exist_ok=True)
    res.workspace = str(ws.root)
    reports = ws.exports_dir / "reports"
    out(f"workspace: {ws.root}")

    heading("bundled samples")
    h, w = opts.synthetic_hw
    samples = write_samples(
        ws.root / "samples", n_synthetic=opts.n_synthetic, synthetic_size=(h, w), seed=opts.seed
    )
    n_photos = sum(1 for p in samples.folder.iterdir() if p.suffix in (".png", ".jpg"))
    out(
        f"{n_photos} photos in {samples.folder} (scikit-image, CC0 / public domain; with an "
        f"exact copy, a re-encoded copy and one too small), {len(samples.url_names)} URLs to "
        f"serve on 127.0.0.1 ({opts.n_synthetic} synthetic {h}x{w} scenes, one photo, one dead "
        "link)"
    )

    heading("ingest")
    out(
        "NSFW filter: CLIP ViT-B-32 built WITHOUT pretrained weights (none are available "
        "offline): its scores are meaningless and only show the filter running"
    )
    with serve_folder(samples.served) as base:
        urls = write_url_list(samples, base, ws.root / "samples" / "urls.csv")
        report = ws.ingest(
            [
                esd.source(f"folder:{samples.folder}", tags=["photo"]),
                esd.source(f"urls:{urls}", tags=["demo-url"]),
            ]
        )
    for counts in [*report.sources.values(), report.totals()]:
        c = counts.to_dict()
        out(
            f"  {c['label'][-48:]:<48} seen {c['seen']:>2}  fetched {c['fetched']:>2}  "
            f"skipped {c['skipped']:>2}  accepted {c['accepted']:>2}  "
            f"duplicates {c['duplicates'] or '-'}  filtered {c['filtered'] or '-'}  "
            f"failed {c['failed'] or '-'}"
        )
    atomic_write_json(reports / "ingest.json", report.to_dict(), indent=2)
    res.reports["ingest"] = str(reports / "ingest.json")
    res.numbers["accepted_images"] = len(ws.images())
    with ws.catalog() as cat:
        res.numbers["duplicates"] = cat.count_duplicates()

    heading("stage-1 pre-annotations")
    baseline = esd.FelzenszwalbSegmenter(model_version=BASELINE_VERSION)
    pre = ws.predictions.add(baseline)
    out(
        f"{pre.done} new pre-annotations ({pre.skipped} already there) from a non-learned "
        "segmenter (Felzenszwalb): no CropFormer weights are trained yet; the fine-tuned tiny "
        "CropFormer pre-annotates again at the end"
    )

    heading("Label Studio")
    if opts.labelstudio_url:
        ls = esd.LabelStudio.connect(ws, opts.labelstudio_url)
        out(f"using the server at {opts.labelstudio_url}")
    else:
        out(
            "starting a local Label Studio in the workspace (first start: about a minute of "
            "database migrations)"
        )
        _stop_stale_server(ws, out)
        ls = esd.LabelStudio.start(ws, port=opts.port, die_with_parent=not opts.keep_server)
        atomic_write_json(_pid_file(ws), {"pid": ls.pid})
        out(f"Label Studio is up at {ls.url}")
    res.labelstudio_url = ls.url
    try:
        ls.create_annotators(ANNOTATORS)  # simulated or human, each with its own login
        ann = ws.annotation(ls)
        n_images = len(ws.images())
        heading("round 1: choose the images")
        first = _selection(ws, ROUND_SELECTIONS[0], (n_images + 1) // 2, "random", out)
        _push(ann, 1, out, heading, selection=ROUND_SELECTIONS[0])
        if not opts.simulate:
            res.stopped_after_push = True
            _instructions(ws, ls.url, out, heading)
            if ls.server is not None and opts.wait:
                _wait_for_user(ls.url, out)
            return res

        heading("stage 1 annotation (SIMULATED)")
        _simulate_stage1(ws, ann, first, BASELINE_VERSION, out)
        _pull(ws, ann, 1, res, out, heading)

        run = _fine_tune(ws, opts, res, out, heading)
        heading("pre-annotate with the fine-tuned model")
        # the tiny model was trained at short side 160-192: predict at a matching size
        tuned = esd.load_segmenter(
            str(run.model_dir), min_size=256, max_size=400, model_version=TUNED_VERSION
        )
        again = ws.predictions.add(tuned)
        out(
            f"{again.done} images pre-annotated ({again.skipped} already), {again.entities} "
            f"entities, {len(again.failed)} failed: the seeds of round 2"
        )
        res.numbers["repredicted"] = again.done + again.skipped

        rest = n_images - len(first)
        if rest > 0:
            heading("round 2: choose the images by model uncertainty")
            second = _selection(
                ws,
                ROUND_SELECTIONS[1],
                rest,
                "uncertainty",
                out,
                overrides=[f"selection.model_version={TUNED_VERSION}"],
            )
            _push(ann, 1, out, heading, selection=ROUND_SELECTIONS[1])
            heading("stage 1 annotation, round 2 (SIMULATED)")
            _simulate_stage1(ws, ann, second, TUNED_VERSION, out)
            _pull(ws, ann, 1, res, out, heading)
        _push(ann, 2, out, heading)

        heading("stage 2 naming (SIMULATED)")
        out(SIMULATION_LABEL)
        approved = ws.dataset(1)
        n = 0
        for annotator in ANNOTATORS:
            for task in ann.tasks(2, annotator):
                if task.image_id in approved:
                    named = _simulated_names(approved[task.image_id], annotator, samples)
                    seconds = simulated_seconds(None, named, stage=2)
                    n += ann.submit(2, annotator, named, lead_time=seconds, simulated=True)
        out(
            f"{n} stage-2 annotations: free-form names with plurals, synonyms, case, "
            "misspellings, 'unknown', 'blurred' and '<supercategory>_other' (SIMULATED lead "
            f"times: {LeadTimeModel().stage2_base:.0f} s + {LeadTimeModel().per_named:.0f} s "
            "per name)"
        )
        _pull(ws, ann, 2, res, out, heading)
    finally:
        if not opts.keep_server and ls.server is not None:
            ls.stop()
            _pid_file(ws).unlink(missing_ok=True)

    heading("annotator agreement (the paper's Table 1)")
    masks, names = ws.agreement(ANNOTATORS, stage=1), ws.agreement(ANNOTATORS, stage=2)
    md = (
        "# Annotator agreement (SIMULATED annotators)\n\n## Stage 1: masks\n\n"
        f"{masks.to_markdown()}\n\n## Stage 2: names\n\n{names.to_markdown()}"
    )
    atomic_write_text(reports / "agreement.md", md)
    both = {"stage1": masks.report, "stage2": names.report}
    atomic_write_json(reports / "agreement.json", both, indent=2)
    res.reports["agreement"] = str(reports / "agreement.md")
    res.numbers["mask_map"] = masks.mean_mask_map
    res.numbers["category_accuracy"] = names.mean_category_accuracy
    acc = names.mean_category_accuracy
    out(
        f"mean pairwise mask mAP {masks.mean_mask_map:.3f}; mean category accuracy "
        f"{'n/a' if acc is None else f'{acc:.3f}'} (report: {reports / 'agreement.md'})"
    )

    heading("statistics (the paper's Table 2 and Fig. 3)")
    stats = ws.stats_report(reports / "stats", name="demo")
    for line in stats.table_markdown.splitlines():
        out("  " + line)
    res.reports["stats"] = str(reports / "stats")
    res.reports.update({f"stats_{k}": str(v) for k, v in stats.paths.items()})

    heading("exports")
    es = ws.export_entityseg(ws.exports_dir / "entityseg", seed=opts.seed)
    hf = ws.export_hf(ws.exports_dir / "hf")
    res.reports["entityseg"] = str(ws.exports_dir / "entityseg")
    res.reports["hf"] = str(hf.get("hf") or ws.exports_dir / "hf")
    res.numbers["export_counts"] = es.counts
    out(f"EntitySeg JSON (hr + lr): {ws.exports_dir / 'entityseg'}")
    out(f"Hugging Face dataset: {hf.get('hf')} (rows {hf.get('rows')})")

    heading("annotation rounds: what pre-annotation saved (SIMULATED lead times)")
    rounds = ws.rounds.report(reports / "rounds")
    m = LeadTimeModel()
    out(
        f"lead times are SIMULATED: {m.base:.0f} s per task + {m.per_seed_entity:.0f} s per "
        f"seed entity + {m.per_edited:.0f} s per edited, {m.per_deleted:.0f} s per deleted, "
        f"{m.per_added:.0f} s per added entity (assumed costs, not measurements)"
    )
    for line in rounds.markdown.split("## Stage 1 by seed")[0].splitlines()[2:]:
        if line.startswith("|"):
            out("  " + line)
    stage1 = [r for r in rounds.report.rounds if r.stage == 1 and r.summary.minutes_per_image]
    if len(stage1) >= 2:
        a, b = stage1[0], stage1[-1]
        ratio = (b.summary.minutes_per_image or 0.0) / (a.summary.minutes_per_image or 1.0)
        verdict = "saved time" if ratio < 1 else "did NOT save time yet"
        out(
            f"{b.label} (seeds {b.round.model_version if b.round else '-'}) took {ratio:.2f}x "
            f"the minutes per image of {a.label} (seeds "
            f"{a.round.model_version if a.round else '-'}): the fine-tuned model {verdict} "
            f"(SIMULATED times; a {res.numbers.get('train_steps')}-step model)"
        )
    res.reports["rounds"] = str(rounds.paths["markdown"])
    res.numbers["rounds"] = [
        {
            "round": r.round.id if r.round is not None else None,
            "stage": r.stage,
            "seeds": r.round.model_version if r.round is not None else None,
            "selection": r.round.selection if r.round is not None else None,
            "annotations": r.summary.annotations,
            "minutes_per_image": r.summary.minutes_per_image,
            "minutes_per_entity": r.summary.minutes_per_entity,
            "simulated": r.summary.simulated,
            "accepted": r.summary.accepted,
            "seed_ap": r.summary.seed.ap if r.summary.seed is not None else None,
        }
        for r in rounds.report.rounds
    ]

    heading("done")
    out(f"workspace:    {res.workspace}")
    out(f"Label Studio: {res.labelstudio_url}")
    for key, path in sorted(res.reports.items()):
        out(f"{key + ':':<14}{path}")
    summary = {
        "workspace": res.workspace,
        "labelstudio_url": res.labelstudio_url,
        "reports": res.reports,
        "numbers": res.numbers,
    }
    atomic_write_json(reports / "demo_summary.json", summary, indent=2)
    return res


# ---------------------------------------------------------------------- annotation rounds
def _push(
    ann: esd.Annotation,
    stage: int,
    out: Callable[[str], None],
    heading: Any,
    *,
    selection: str | None = None,
) -> None:
    heading(f"push stage {stage}" + (f" (selection {selection})" if selection else ""))
    rep = ann.push(stage, selection=selection)
    out(
        f"stage {stage}: {rep.images} images -> {rep.tasks} tasks in projects {rep.projects} "
        f"({rep.overlap_images} images for several annotators); errors: {len(rep.errors)}"
        + (f"; recorded as round {rep.round_id}" if rep.round_id else "")
    )


def _selection(
    ws: esd.Workspace,
    name: str,
    n: int,
    strategy: str,
    out: Callable[[str], None],
    *,
    overrides: list[str] | None = None,
) -> list[int]:
    """The images of selection ``name`` (made now with ``strategy`` unless a killed run made
    it already)."""
    if not any(s.name == name for s in ws.selections()):
        ws.select(n, name=name, strategy=strategy, overrides=overrides or [])
    items = ws.selection(name)
    ids = [it.image_id for it in items]
    out(f"selection {name!r} ({strategy}): images {ids}")
    return ids


def _simulate_stage1(
    ws: esd.Workspace,
    ann: esd.Annotation,
    image_ids: list[int],
    seed_version: str,
    out: Callable[[str], None],
) -> None:
    """SIMULATED stage 1 of a round: each annotator draws their masks (the same whatever the
    seed: what they mean to draw) and is given a lead time from the edits against the task's
    seed (``seed_version``'s prediction)."""
    out(SIMULATION_LABEL)
    wanted = set(image_ids)
    n = 0
    seconds: list[float] = []
    for annotator in ANNOTATORS:
        for task in ann.tasks(1, annotator):
            if task.image_id not in wanted:
                continue
            drawn = _simulated_masks(ws, task.image_id, annotator)
            if drawn is None:
                continue
            t = simulated_seconds(ws.predictions.latest(task.image_id, seed_version), drawn)
            seconds.append(t)
            n += ann.submit(1, annotator, drawn, lead_time=t, simulated=True)
    mean = sum(seconds) / len(seconds) if seconds else 0.0
    out(
        f"{n} annotations written through the Label Studio API as {', '.join(ANNOTATORS)} "
        "(alice: one moved boundary; bob: moved boundaries, a merge, a split, a missed "
        f"entity and an overlap); SIMULATED lead time {mean:.0f} s per task on average "
        f"against the {seed_version} seeds"
    )


def _fine_tune(
    ws: esd.Workspace,
    opts: DemoOptions,
    res: DemoResult,
    out: Callable[[str], None],
    heading: Any,
) -> Any:
    """Fine-tune the tiny CropFormer on the approved stage-1 masks so far (round 1)."""
    heading("fine-tune a tiny CropFormer on round 1")
    steps = opts.train_steps
    run = ws.train(
        overrides=[
            "model=tiny_cpu",
            f"out_dir={ws.root / 'runs' / 'tiny'}",
            f"max_iter={steps}",
            "ims_per_batch=2",
            "device=cpu",
            "amp=fp32",
            f"checkpoint_period={max(1, steps // 2)}",
            "eval_period=0",
            "log_period=1",
            "tensorboard=false",
            "threads=2",
            # every approved image so far (no split yet: the export assigns splits later)
            "data.workspace_split=",
            "data.min_sizes=[160, 192]",
            "data.max_size=320",
            "data.num_workers=0",
            "loss.num_points=512",
            "optim.lr=0.0005",
        ],
        resume=True,
    )
    if run.losses:
        out(
            f"{run.iteration} steps on CPU (from {run.start_iteration}), last loss "
            f"{run.losses[-1]:.3f}; model: {run.model_dir}"
        )
    else:
        out(f"already trained ({run.iteration} steps); model: {run.model_dir}")
    res.reports["model"] = str(run.model_dir)
    res.numbers["train_steps"] = run.iteration
    return run


def _pull(
    ws: esd.Workspace,
    ann: esd.Annotation,
    stage: int,
    res: DemoResult,
    out: Callable[[str], None],
    heading: Any,
) -> None:
    heading(f"pull stage {stage} (with QA)")
    info = ann.pull(stages=(stage,))[stage].to_json()
    path = ws.exports_dir / "reports" / f"pull_stage{stage}.json"
    atomic_write_json(path, info, indent=2)
    res.reports[f"pull_stage{stage}"] = str(path)
    keys = ("tasks", "pulled", "rejected", "unchanged", "unannotated", "approved")
    out("  " + ", ".join(f"{k} {info.get(k)}" for k in keys if k in info))
    for annotator, found in sorted(info["findings"].items()):
        shown = ", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none"
        out(f"  QA {annotator}: {shown}")
    res.numbers[f"approved_stage{stage}"] = info.get("approved")


def _simulated_masks(ws: esd.Workspace, image_id: int, annotator: str) -> esd.ImageMasks | None:
    """SIMULATED stage 1: the annotator's seeded edits of the baseline pre-annotation."""
    pred = ws.predictions.latest(image_id, BASELINE_VERSION)
    if pred is None:
        return None
    drawn, _ = simulate_masks(
        pred.label_map(), seed=_seed(annotator, image_id), plan=PLANS[annotator]
    )
    ents = tuple(
        esd.Entity(id=f"{annotator[0]}{image_id}_{k}", rle=rle.encode(m))
        for k, m in enumerate(drawn, 1)
    )
    return esd.ImageMasks(image_id=image_id, height=pred.height, width=pred.width, entities=ents)


def _simulated_names(sample: esd.Sample, annotator: str, samples: SampleLayout) -> esd.ImageMasks:
    """SIMULATED stage 2: a free-form name per approved mask, drawn around the concept it shows
    (the synthetic scene's ground truth, or the photo's concepts)."""
    from entityseg_data.io.images import read_label_array

    name = Path(sample.image.source_id).name
    gt = samples.synthetic_gt.get(name)
    concepts: list[str | None] = []
    if gt:
        gt_map = read_label_array(gt.label_map, "ground-truth label map")
        gt_names = gt.names
        for e in sample.entities:
            vals, counts = np.unique(gt_map[e.mask().astype(bool)], return_counts=True)
            concepts.append(gt_names.get(int(vals[np.argmax(counts)])) if len(vals) else None)
    else:
        photo = PHOTO_CONCEPTS.get(Path(name).stem.split("_")[0])
        for e in sample.entities:
            concepts.append(photo[_seed(sample.image_id, e.id) % len(photo)] if photo else None)
    named = []
    for e, concept in zip(sample.entities, concepts):
        rng = np.random.default_rng(_seed(annotator, sample.image_id, e.id))
        named.append(replace(e, name=simulate_name(concept, rng=rng)))
    return replace(sample.masks, entities=tuple(named))


# ---------------------------------------------------------------------- the local server
def _pid_file(ws: esd.Workspace) -> Path:
    return ws.root / "labelstudio" / "demo_server.json"


def _stop_stale_server(ws: esd.Workspace, out: Callable[[str], None]) -> None:
    """A killed demo may leave its Label Studio (own process group) behind: stop it so the
    rerun does not start a second server on the same database."""
    path = _pid_file(ws)
    if not path.exists():
        return
    pid = int(json.loads(path.read_text())["pid"])
    # a group of zombies only (the killed demo's server died with it, but nobody reaped it:
    # PID 1 of some containers does not) is not a running server
    if not procs.group_alive(pid):
        path.unlink(missing_ok=True)
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return
    out(f"stopping the Label Studio left running by an interrupted demo (pid {pid})")
    for _ in range(100):
        if not procs.group_alive(pid):
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)


def _instructions(ws: esd.Workspace, url: str, out: Callable[[str], None], heading: Any) -> None:
    root = ws.root
    a, b = ANNOTATORS
    heading("next: annotate by hand")
    out(
        f"Open {url} and log in as {a}@... / {b}@... (e-mails and passwords are in "
        f"{root / 'labelstudio' / 'entityseg_credentials.json'}); each has a stage-1 project "
        "with the pre-annotations: correct them so every entity has one mask, no overlaps."
    )
    out("Then continue with:")
    for cmd in (
        f"entityseg-data -w {root} annotate pull --stage 1",
        f"entityseg-data -w {root} annotate push --stage 2   # name the approved masks",
        f"entityseg-data -w {root} annotate pull --stage 2",
        f"entityseg-data -w {root} consistency ws:{a} ws:{b}",
        f"entityseg-data -w {root} consistency --stage 2 ws:{a} ws:{b}",
        f"entityseg-data -w {root} stats --with-workspace --out {root}/exports/reports/stats",
        f"entityseg-data -w {root} export entityseg --out {root}/exports/entityseg",
        f"entityseg-data train --set data.workspace={root} --set model=tiny_cpu "
        f"--set max_iter=50 --set device=cpu --set data.min_sizes=[160,192] "
        f"--set data.max_size=320 --out {root}/runs/tiny",
        f"entityseg-data -w {root} predict --workspace-images --weights {root}/runs/tiny/model",
    ):
        out(f"  {cmd}")
    out("Or rerun with --simulate to let two simulated annotators do it.")


def _wait_for_user(url: str, out: Callable[[str], None]) -> None:
    out(f"Label Studio keeps running at {url}; press Ctrl-C to stop it.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        out("stopping Label Studio")
