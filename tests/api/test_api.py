"""The public API end to end in the unit tier: ingest, pre-annotate with a segmenter, two
annotation rounds through the in-memory backend with simulated annotators, the typed dataset,
agreement, statistics, evaluation and the EntitySeg export — only through ``entityseg_data``'s
exports (the same loop against a real Label Studio is the demo, tests/demo/test_demo_e2e.py)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import entityseg_data as esd
from entityseg_data.api.simulation import EditPlan, simulate_masks, simulate_name
from entityseg_data.synthetic import make_scene

SIZES = [(96, 128), (120, 90), (100, 100)]
CONFIG = [
    "ingest.nsfw_enabled=false",
    "ingest.min_side=64",
    "ingest.workers=1",
    "ingest.phash_threshold=-1",
    "annotation.annotators=[alice, bob]",
    "annotation.overlap_fraction=1.0",
    "annotation.overlap_annotators=2",
    "annotation.max_uncovered_fraction=0.5",
    "export.val_fraction=0.34",
    "export.stratify_by_source=false",
]


def _photos(folder: Path) -> None:
    folder.mkdir(parents=True)
    for k, (h, w) in enumerate(SIZES):
        rgb, _, _ = make_scene(k, h, w, boundary_detail=False)
        Image.fromarray(rgb).save(folder / f"scene{k}.png")


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """The whole loop once; the tests below read what it left."""
    from entityseg_data.config import WorkspaceConfig, apply_overrides

    root = tmp_path_factory.mktemp("api")
    _photos(root / "photos")
    ws = esd.Workspace.create(root / "ws", apply_overrides(WorkspaceConfig(), CONFIG))
    out = {"ws": ws, "root": root}
    out["ingest"] = ws.ingest([f"folder:{root / 'photos'}"], tags=["test"])
    seg = esd.FelzenszwalbSegmenter(scale=300.0, min_size=80, max_side=128)
    out["predict"] = ws.predictions.add(seg)
    out["predict_again"] = ws.predictions.add(seg)

    backend = esd.InMemoryBackend()
    ann = ws.annotation(backend)
    out["push1"] = ann.push(1)
    plan = EditPlan(moved_boundaries=1, merges=1, splits=0, missed=0, overlaps=0)
    for annotator in ("alice", "bob"):
        for rec in ann.tasks(1, annotator):
            pred = ws.predictions.latest(rec.image_id)
            assert pred is not None
            lm = pred.label_map()
            if annotator == "alice":  # alice accepts the pre-annotation as it is
                masks = [lm == i for i in range(1, len(pred) + 1)]
            else:
                masks, _ = simulate_masks(lm, seed=rec.image_id, plan=plan)
            drawn = esd.ImageMasks.from_label_map(_paint(masks, lm.shape))
            submitted = ann.submit(1, annotator, _annotation(rec.image_id, drawn, annotator))
            assert submitted
    # a second submission of the same task is skipped (idempotent scripts)
    rec0 = ann.tasks(1, "alice")[0]
    pred0 = ws.predictions.latest(rec0.image_id)
    out["resubmitted"] = ann.submit(1, "alice", _annotation(rec0.image_id, pred0, "alice"))
    out["pull1"] = ann.pull(stages=(1,))[1]

    out["push2"] = ann.push(2)
    for annotator in ("alice", "bob"):
        for rec in ann.tasks(2, annotator):
            base = ws.dataset(1)[rec.image_id]
            rng = np.random.default_rng(rec.image_id + (annotator == "bob"))
            named = tuple(
                replace(e, name=simulate_name(("sky", "tree", "car")[k % 3], rng=rng))
                for k, e in enumerate(base.masks.entities)
            )
            masks = replace(base.masks, entities=named)
            ann.submit(2, annotator, _annotation(rec.image_id, masks, annotator, new_ids=False))
    out["pull2"] = ann.pull(stages=(2,))[2]
    out["status"] = ann.status()
    return out


def _paint(masks, shape) -> np.ndarray:
    lm = np.zeros(shape, np.uint16)
    for k, m in enumerate(masks, start=1):
        lm[(np.asarray(m) > 0) & (lm == 0)] = k
    return lm


def _annotation(
    image_id: int, masks: esd.ImageMasks, annotator: str, *, new_ids: bool = True
) -> esd.ImageAnnotation:
    """Stage 1: new region ids (drawn); stage 2: the approved masks' own ids (named)."""
    ents = tuple(
        esd.Entity(
            id=f"{annotator[0]}{image_id}_{e.id}" if new_ids else str(e.id),
            rle=e.rle,
            name=e.name,
        )
        for e in masks.entities
    )
    return esd.ImageAnnotation(
        image_id=image_id,
        height=masks.height,
        width=masks.width,
        stage=1,
        annotator=annotator,
        entities=ents,
    )


def test_ingest_and_predictions(loop):
    ws = loop["ws"]
    assert loop["ingest"].totals().accepted == len(SIZES)
    assert [(r.height, r.width) for r in ws.images()] == SIZES
    assert all("test" in r.domain_tags for r in ws.images())
    rep, again = loop["predict"], loop["predict_again"]
    assert (rep.done, rep.skipped, rep.failed) == (len(SIZES), 0, [])
    assert (again.done, again.skipped) == (0, len(SIZES))  # resumable
    assert ws.predictions.versions() == {"baseline-felzenszwalb": len(SIZES)}
    for r in ws.images():
        masks = ws.predictions.latest(r.id, "baseline-felzenszwalb")
        assert masks is not None and (masks.height, masks.width) == (r.height, r.width)
        assert masks.overlap_pixels() == 0 and int(masks.areas().sum()) == r.height * r.width
        scores = [e.score for e in masks.entities]
        assert all(0 < s < 1 for s in scores) and scores == sorted(scores, reverse=True)


def test_annotation_rounds(loop):
    n = len(SIZES)
    assert loop["push1"].images == n and loop["push1"].tasks == 2 * n  # everyone overlaps
    assert loop["resubmitted"] is False
    p1, p2 = loop["pull1"], loop["pull2"]
    assert (p1.pulled, p1.rejected, p1.approved) == (2 * n, 0, n), p1.to_json()
    assert loop["push2"].images == n
    assert (p2.pulled, p2.rejected, p2.approved) == (2 * n, 0, n), p2.to_json()
    status = loop["status"]
    for stage in (1, 2):
        statuses = status[(stage, "alice")] + status[(stage, "bob")]
        assert statuses["approved"] == n and sum(statuses.values()) == 2 * n


def test_dataset_is_typed_and_equals_the_workspace_coco(loop):
    from entityseg_data.io.coco import workspace_coco

    ws = loop["ws"]
    ds = ws.dataset()
    assert isinstance(ds, esd.Dataset) and len(ds) == len(SIZES)
    assert ds.image_ids == [r.id for r in ws.images()]
    for s in ds:
        assert isinstance(s, esd.Sample) and isinstance(s.masks, esd.ImageMasks)
        assert s.load_image().shape == (s.height, s.width, 3)
        lm = s.label_map()
        assert lm.shape == (s.height, s.width) and lm.max() == len(s.masks)
        for k, e in enumerate(s.masks.entities, start=1):
            np.testing.assert_array_equal(lm == k, e.mask().astype(bool))
        assert all(isinstance(n, str) and n for n in s.names)  # stage-2 names merged in
    assert sum(ds.name_counts().values()) == ds.count_entities()
    assert ds.to_coco() == workspace_coco(ws)
    assert len(ws.dataset(annotator="bob", statuses=None)) == len(SIZES)


@pytest.mark.slow
def test_agreement_stats_evaluation_export(loop, tmp_path):
    ws = loop["ws"]
    agree = ws.agreement(["alice", "bob"])
    # bob moved a boundary and merged two entities on every image: below perfect, above chance
    assert agree.num_images == len(SIZES) and 0.2 < agree.mean_mask_map < 0.99
    assert "| GT \\ pred |" in agree.to_markdown()
    names = ws.agreement(stage=2)
    assert names.mean_mask_map == pytest.approx(1.0)  # both named the same approved masks
    assert names.mean_category_accuracy is not None

    stats = ws.stats()
    assert stats.n_images == len(SIZES) and stats.n_entities == ws.dataset().count_entities()
    report = ws.stats_report(tmp_path / "stats", vocabulary=False, plots=False)
    assert report.paths["table_md"].read_text().startswith("|")
    assert "| ws |" in report.table_markdown

    # predictions equal to the approved masks score AP 1; the baseline's less
    for s in ws.dataset():
        scored = replace(s.masks, entities=tuple(replace(e, score=0.9) for e in s.masks.entities))
        ws.predictions.write(s.image_id, scored, "oracle")
    assert ws.evaluate("oracle")["segm"]["AP"] == pytest.approx(1.0)
    base = ws.evaluate("baseline-felzenszwalb")["segm"]["AP"]
    assert 0.0 < base < 1.0

    res = ws.export_entityseg(tmp_path / "release")
    files = sorted(p.name for p in (tmp_path / "release" / "annotations").glob("*.json"))
    assert files == [
        "entityseg_train.json",
        "entityseg_train_lr.json",
        "entityseg_val.json",
        "entityseg_val_lr.json",
    ]
    images = sum(res.counts[k]["images"] for k in ("train", "val"))
    assert images == len(SIZES)
    train = json.loads((tmp_path / "release" / "annotations" / "entityseg_train.json").read_text())
    assert all(a["name"] for a in train["annotations"])


def test_dataset_names_a_missing_mask_file(loop, tmp_path):
    import shutil

    ws = esd.Workspace.open(shutil.copytree(loop["ws"].root, tmp_path / "copy"))
    ds = ws.dataset()
    iid = ds.image_ids[0]
    path = ws.masks_dir / "stage1" / ds.annotator_of(iid) / f"{iid}.json"
    path.unlink()
    with pytest.raises(esd.DataError, match=str(path)):
        ds[iid]


def test_public_names_resolve_and_are_typed():
    """Every lazily exported name resolves to the object the TYPE_CHECKING block imports, so
    IDEs and mypy see the same types as the runtime."""
    init = Path(esd.__file__)
    tree = ast.parse(init.read_text())
    typed = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                typed.update({a.name: imp.module for a in imp.names})
    assert typed == esd._EXPORTS
    assert set(esd.__all__) == {"__version__", *esd._EXPORTS}
    for name, module in esd._EXPORTS.items():
        assert getattr(esd, name) is getattr(__import__(module, fromlist=[name]), name)
    assert issubclass(esd.Workspace, __import__("entityseg_data.workspace").workspace.Workspace)


def test_import_is_light():
    code = (
        "import sys, entityseg_data as e, entityseg_data.api\n"
        "e.Workspace, e.Dataset, e.LabelStudio, e.InMemoryBackend\n"
        "heavy = [m for m in ('torch', 'label_studio_sdk', 'open_clip', 'datasets', 'pandas',"
        " 'scipy', 'skimage', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.slow
def test_entity_segmenter_is_a_segmenter(oracle_dir, tmp_path):
    """EntitySegmenter.segment (the Segmenter protocol) gives the same entities as its
    SegmentationResult, and Predictions.add stores them (tiny oracle weights)."""
    import torch

    from entityseg_data.masks import rle as rle_utils

    torch.set_num_threads(1)
    seg = esd.load_segmenter(
        oracle_dir / "tiny" / "weights.npz", preset="tiny_swin", min_size=128, max_size=160
    )
    assert isinstance(seg, esd.Segmenter)
    rgb, _, _ = make_scene(3, 120, 160, boundary_detail=False)
    masks = seg.segment(rgb)
    res = seg.predict_arrays([rgb])[0]
    assert len(masks) == len(res) and (masks.height, masks.width) == (120, 160)
    for i, e in enumerate(masks.entities):
        assert e.id == i + 1 and e.score == pytest.approx(float(res.scores[i]))
        np.testing.assert_array_equal(rle_utils.decode(e.rle).astype(bool), res.mask(i + 1))
    # one config: settings change through new segmenters sharing the model, never in place
    from dataclasses import replace as _replace

    from entityseg_data.model.inference.postprocess import PostprocessOptions

    assert PostprocessOptions is esd.InferenceConfig
    strict = seg.with_options(score_thresh=0.5)
    assert strict.model is seg.model and strict is not seg
    assert (seg.options.score_thresh, strict.config.inference.score_thresh) == (0.0, 0.5)
    assert all(e.score >= 0.5 for e in strict.segment(rgb).entities)
    small = seg.with_config(_replace(seg.config, views=_replace(seg.config.views, min_size=96)))
    assert (small.min_size, seg.min_size) == (96, 128)
    with pytest.raises(esd.ConfigError, match="num_queries"):
        seg.with_config(_replace(seg.config, num_queries=3))


def test_train_config_holds_a_model_config(tmp_path):
    """TrainConfig.model is a ModelConfig section started from a preset (YAML ``model: NAME``
    or ``preset``), changed by ``model.*`` keys; the old ``model_overrides`` strings still read."""
    from entityseg_data.model.presets import get_preset

    cfg = esd.load_train_config(None, ["model=tiny_swin", "model.num_queries=8"])
    assert isinstance(cfg.model, esd.ModelConfig) and cfg.preset == "tiny_swin"
    assert cfg.model == replace(get_preset("tiny_swin"), num_queries=8)
    path = tmp_path / "t.yaml"
    path.write_text(
        "preset: tiny_cpu\nmodel:\n  dec_layers: 2\n  backbone:\n    drop_path_rate: 0.0\n"
    )
    cfg = esd.load_train_config(path, {"model.num_queries": 8})
    base = get_preset("tiny_cpu")
    assert cfg.model == replace(
        base, dec_layers=2, num_queries=8, backbone=replace(base.backbone, drop_path_rate=0.0)
    )
    legacy = esd.load_train_config(None, ['model_overrides=["num_queries=8", "dec_layers=2"]'])
    assert legacy.model == replace(base, num_queries=8, dec_layers=2)
    with pytest.raises(esd.ConfigError, match="num_querys"):
        esd.load_train_config(None, ["model.num_querys=8"])
    with pytest.raises(esd.ConfigError, match="nheads"):  # the section validates itself
        esd.load_train_config(None, ["model.nheads=7"])
