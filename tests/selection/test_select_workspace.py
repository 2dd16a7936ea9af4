"""`select` on a workspace (unit tier): candidates, uncertainty + diversity from the stored
predictions and the cached CLIP embeddings, quotas, the random baseline, the catalog records,
determinism, and `push(selection=NAME)` sending exactly those images through the in-memory
backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from selection_support import Spec, cluster_specs, populate

import entityseg_data as esd
from entityseg_data.annotation.selection import coverage
from entityseg_data.cli.main import cli
from entityseg_data.config import WorkspaceConfig, apply_overrides
from entityseg_data.errors import CatalogError, ConfigError, DataError

CONFIG = ["annotation.annotators=[alice]", "annotation.overlap_fraction=0"]


def _ws(root, extra=()):
    return esd.Workspace.create(root, apply_overrides(WorkspaceConfig(), [*CONFIG, *extra]))


def test_selection_is_stored_with_scores_and_reasons(tmp_path):
    ws = _ws(tmp_path / "ws")
    e = (1.0, 0.0, 0.0)
    ids = populate(
        ws,
        [
            Spec("coco", 0.95, 16, e),  # confident, fully covered
            Spec("coco", 0.30, 4, (0.0, 1.0, 0.0)),  # unsure, small cover, elsewhere
            Spec("coco", None, 0, (0.0, 0.0, 1.0)),  # no prediction
        ],
    )
    res = ws.select(2, name="r1", overrides=["selection.uncertainty_weight=1.0"])
    assert res.name == "r1" and res.candidates == 3
    assert res.image_ids == [ids[2], ids[1]]  # unpredicted (u=1) first, then the unsure one
    items = ws.selection("r1")
    assert [it.image_id for it in items] == res.image_ids
    assert [it.rank for it in items] == [1, 2]
    unsure = items[1]
    assert unsure.uncertainty == pytest.approx(((1 - 0.30) + (1 - 4 / 16)) / 2)
    assert unsure.signals["mean_score"] == pytest.approx(0.30)
    assert unsure.signals["covered"] == pytest.approx(0.25)
    assert any("mean entity score 0.30" in r for r in unsure.reasons)
    assert any("covered area 25%" in r for r in unsure.reasons)
    assert any("no prediction" in r for r in items[0].reasons)
    (rec,) = ws.selections()
    assert (rec.name, rec.strategy, rec.n_requested, rec.n_selected) == ("r1", "uncertainty", 2, 2)
    assert rec.params["embedding_key"]
    with pytest.raises(ConfigError, match="exists already"):
        ws.select(2, name="r1")
    # exclude_selected: the next selection takes what is left, named by default
    res2 = ws.select(5)
    assert res2.name == "uncertainty-1" and res2.image_ids == [ids[0]]
    assert res2.covered == 2


def test_diversity_covers_clusters_better_than_random(tmp_path):
    specs, labels = cluster_specs(seed=1)
    ws = _ws(tmp_path / "ws")
    ids = populate(ws, specs)
    k = 5
    sel = ws.select(k, name="kc", overrides=["selection.uncertainty_weight=0"])
    pts = np.asarray([s.embedding for s in specs])
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    index = {iid: j for j, iid in enumerate(ids)}
    cov = coverage(pts, [index[i] for i in sel.image_ids], labels)
    assert cov.clusters_hit == 5  # one image in each of the 5 clusters
    hits, worst = [], []
    for seed in range(10):
        rnd = ws.select(
            k,
            name=f"rnd{seed}",
            strategy="random",
            seed=seed,
            overrides=["selection.exclude_selected=false"],
        )
        rc = coverage(pts, [index[i] for i in rnd.image_ids], labels)
        hits.append(rc.clusters_hit)
        worst.append(rc.max_distance)
        assert all(it.uncertainty is not None for it in ws.selection(f"rnd{seed}"))
        assert f"random draw (seed {seed})" in ws.selection(f"rnd{seed}")[0].reasons
    assert np.mean(hits) < 5
    assert cov.max_distance < np.mean(worst)


def test_same_inputs_same_selection(tmp_path):
    specs, _ = cluster_specs(seed=2)
    out = []
    for run in ("a", "b"):
        ws = _ws(tmp_path / run)
        populate(ws, specs)
        res = ws.select(6, overrides=["selection.quotas=[coco=4]"])
        rnd = ws.select(6, strategy="random", seed=3)
        out.append(
            (res.name, [(it.image_id, it.score, it.reasons) for it in res.items], rnd.image_ids)
        )
    assert out[0] == out[1]
    # replacing it in place gives the same again (once the random one, whose images now
    # count as covered, is gone)
    ws = esd.Workspace.open(tmp_path / "a")
    with ws.catalog() as cat:
        assert cat.delete_selection(out[0][0].replace("uncertainty", "random"))
    again = ws.select(6, name=out[0][0], replace=True, overrides=["selection.quotas=[coco=4]"])
    assert [(it.image_id, it.score, it.reasons) for it in again.items] == out[0][1]


def test_quotas_and_near_duplicates(tmp_path):
    ws = _ws(tmp_path / "ws")
    same = (1.0, 0.0, 0.0, 0.0)
    ids = populate(
        ws,
        [
            Spec("coco", 0.5, 8, same),
            Spec("coco", 0.5, 8, (1.0, 0.001, 0.0, 0.0)),  # a near duplicate of the first
            Spec("coco", 0.5, 8, (0.0, 1.0, 0.0, 0.0)),
            Spec("ade20k", 0.5, 8, (0.0, 0.0, 1.0, 0.0)),
            Spec("ade20k", 0.5, 8, (0.0, 0.0, 0.0, 1.0)),
        ],
    )
    res = ws.select(4, quotas=["coco=1"])
    srcs = [it.source for it in res.items]
    assert srcs.count("coco") == 1 and srcs.count("ade20k") == 2
    assert res.quota_full == ("coco",)
    res = ws.select(5, name="all", overrides=["selection.exclude_selected=false"])
    assert len(res.items) == 4
    assert [(d.image_id, d.of) for d in res.duplicates] in ([(ids[1], ids[0])], [(ids[0], ids[1])])


def test_annotated_images_are_not_candidates_and_count_as_covered(tmp_path):
    ws = _ws(tmp_path / "ws")
    a, b, c = (1.0, 0.0), (0.9, 0.1), (0.0, 1.0)
    ids = populate(ws, [Spec("x", 0.5, 8, a), Spec("x", 0.5, 8, b), Spec("x", 0.5, 8, c)])
    ann = ws.annotation(esd.InMemoryBackend())
    ann.push(1, image_ids=[ids[0]])
    res = ws.select(1, overrides=["selection.uncertainty_weight=0"])
    assert res.candidates == 2 and res.covered == 1
    assert res.image_ids == [ids[2]]  # far from the annotated one, not its neighbour
    assert res.items[0].distance == pytest.approx(np.sqrt(2.0), abs=1e-6)


def test_push_selection_with_limit_takes_the_first_ranked(tmp_path):
    specs, _ = cluster_specs(seed=7)
    ws = _ws(tmp_path / "ws")
    populate(ws, specs)
    sel = ws.select(5, name="r")
    assert sorted(sel.image_ids[:2]) != sorted(sel.image_ids)[:2]  # rank order is not id order
    ann = ws.annotation(esd.InMemoryBackend())
    rep = ann.push(1, selection="r", limit=2)
    assert rep.images == 2
    assert sorted(r.image_id for r in ann.tasks(1, "alice")) == sorted(sel.image_ids[:2])
    rep = ann.push(1, selection="r")  # the rest later
    assert rep.images == 3 and rep.not_eligible == sorted(sel.image_ids[:2])


def test_push_selection_sends_exactly_those(tmp_path):
    specs, _ = cluster_specs(seed=4)
    ws = _ws(tmp_path / "ws")
    populate(ws, specs)
    sel = ws.select(4, name="round-2")
    backend = esd.InMemoryBackend()
    ann = ws.annotation(backend)
    rep = ann.push(1, selection="round-2")
    assert rep.selection == "round-2" and rep.images == 4 and rep.not_eligible == []
    pushed = sorted(r.image_id for r in ann.tasks(1, "alice"))
    assert pushed == sorted(sel.image_ids)
    tasks = list(backend.tasks_by_id.values())
    assert sorted(t.spec.image_id for t in tasks) == sorted(sel.image_ids)
    # the round records the selection, so `rounds report` compares it with random rounds
    (rnd,) = ws.rounds.list(stage=1)
    assert rnd.id == rep.round_id and rnd.selection == "round-2"
    assert sorted(rnd.images) == sorted(sel.image_ids)
    # pushing the same selection again: nothing new, all reported as not eligible
    rep = ann.push(1, selection="round-2")
    assert rep.images == 0 and rep.not_eligible == sorted(sel.image_ids)
    with pytest.raises(CatalogError, match="no selection named 'nope'.*round-2"):
        ann.push(1, selection="nope")
    # the next selection avoids what is pushed
    nxt = ws.select(3)
    assert not set(nxt.image_ids) & set(sel.image_ids)


def test_missing_embeddings(tmp_path):
    ws = _ws(tmp_path / "ws", ["selection.embed_missing=false"])
    ids = populate(ws, [Spec("x", 0.5, 8, (1.0, 0.0)), Spec("x", 0.2, 8, None)])
    res = ws.select(2)
    assert res.image_ids == [ids[0]] and res.skipped == (
        (ids[1], "no CLIP embedding in the cache"),
    )
    ws2 = _ws(tmp_path / "ws2", ["selection.embed_missing=false"])
    populate(ws2, [Spec("x", 0.5, 8, None)])
    with pytest.raises(DataError, match="none of the 1 candidate images has a CLIP embedding"):
        ws2.select(1)
    assert ws2.select(1, strategy="random").image_ids  # random needs no embedding


def test_unreadable_prediction_is_reported_and_scored_as_unpredicted(tmp_path):
    ws = _ws(tmp_path / "ws")
    ids = populate(ws, [Spec("x", 0.9, 16, (1.0, 0.0)), Spec("x", 0.9, 16, (0.0, 1.0))])
    with ws.catalog() as cat:
        rec = cat.latest_prediction(ids[1])
    (ws.root / rec.path).write_text("{not json")
    res = ws.select(1, overrides=["selection.uncertainty_weight=1"])
    assert res.image_ids == [ids[1]]
    assert res.problems and res.problems[0][0] == ids[1] and "unreadable" in res.problems[0][1]


def test_cli_select_list_show(tmp_path):
    specs, _ = cluster_specs(seed=5)
    ws = _ws(tmp_path / "ws")
    populate(ws, specs)
    run = CliRunner()
    base = ["-w", str(ws.root), "select"]
    res = run.invoke(cli, [*base, "--n", "3", "--name", "s1", "--quota", "coco=1"])
    assert res.exit_code == 0, res.output
    assert "selection s1 (uncertainty): 3 of 3 images" in res.output
    assert "annotate push --stage 1 --selection s1" in res.output
    res = run.invoke(cli, [*base, "--n", "3", "--strategy", "random", "--seed", "7", "--json"])
    data = json.loads(res.output)
    assert data["selection"]["name"] == "random-1" and data["selection"]["seed"] == 7
    assert [it["image_id"] for it in data["items"]] == [
        it.image_id for it in ws.selection("random-1")
    ]
    res = run.invoke(cli, [*base, "--list"])
    assert res.exit_code == 0 and "s1" in res.output and "random-1" in res.output
    res = run.invoke(cli, [*base, "--show", "s1"])
    assert res.exit_code == 0 and res.output.count("image ") == 3
    items = ws.selection("s1")
    assert sum(1 for it in items if it.source == "coco") <= 1
    res = run.invoke(cli, [*base, "--n", "2", "--quota", "coco"])
    assert res.exit_code != 0 and "selection.quotas" in str(res.exception)
    res = run.invoke(cli, [*base])
    assert res.exit_code == 2 and "--n" in res.output


def test_phash_twins_from_the_catalog_are_dropped(tmp_path):
    ws = _ws(tmp_path / "ws")
    ids = populate(
        ws,
        [
            Spec("x", 0.5, 8, (1.0, 0.0, 0.0)),
            Spec("x", 0.5, 8, (0.0, 1.0, 0.0)),
            Spec("x", 0.5, 8, (0.0, 0.0, 1.0)),
        ],
    )
    with ws.catalog() as cat:
        cat.update_image(ids[0], phash="ffff0000ffff0000")
        cat.update_image(ids[1], phash="ffff0000ffff0001")  # 1 bit away
        cat.update_image(ids[2], phash="0000ffff0000ffff")
    res = ws.select(3)
    assert len(res.items) == 2
    ((dup),) = res.duplicates
    assert dup.kind == "phash" and {dup.image_id, dup.of} == {ids[0], ids[1]}
    res = ws.select(
        3, name="off", overrides=["selection.dedup_phash=-1", "selection.exclude_selected=false"]
    )
    assert len(res.items) == 3
