"""Matching and accumulation against pycocotools' own evaluateImg/accumulate on random IoU
matrices full of ties (IoU ties, score ties, crowd GT, area ranges, empty images)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from entityseg_data.evaluation.matching import Params, accumulate, coco_stats, evaluate_image


def _random_image(rng, n_gt, n_dt):
    levels = np.array([0.0, 0.3, 0.5, 0.5, 0.55, 0.7, 0.7, 0.75, 0.9, 0.95, 1.0])
    ious = rng.choice(levels, size=(n_dt, n_gt))
    scores = rng.choice([0.2, 0.5, 0.5, 0.9], size=n_dt) if rng.random() < 0.7 else rng.random(n_dt)
    areas = rng.choice([10.0, 32.0**2, 2000.0, 96.0**2, 20000.0], size=n_gt)
    dt_areas = rng.choice([10.0, 32.0**2, 2000.0, 96.0**2, 20000.0], size=n_dt)
    crowd = rng.random(n_gt) < 0.2
    return ious, scores, areas, dt_areas, crowd


@pytest.mark.parametrize("seed", range(6))
def test_against_pycocotools_evaluateimg_and_accumulate(seed):
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(seed)
    max_dets = (1, 10, 100) if seed % 2 else (1, 5, 20)
    params = Params(max_dets=max_dets)
    ev = COCOeval(iouType="segm")
    ev.params.imgIds = list(range(1, 16))
    ev.params.catIds = [1]
    ev.params.maxDets = list(max_dets)
    ev._paramsEval = copy.deepcopy(ev.params)
    ours, ref_imgs = [], []
    dt_id = 1
    for img in ev.params.imgIds:
        n_gt = int(rng.integers(0, 7)) if img % 5 else 0
        n_dt = int(rng.integers(0, 30)) if img % 7 else 0
        ious, scores, areas, dt_areas, crowd = _random_image(rng, n_gt, n_dt)
        gts = [
            {
                "id": 100 * img + g + 1,
                "area": float(areas[g]),
                "iscrowd": int(crowd[g]),
                "ignore": int(crowd[g]),
            }
            for g in range(n_gt)
        ]
        dts = [
            {"id": dt_id + d, "score": float(scores[d]), "area": float(dt_areas[d])}
            for d in range(n_dt)
        ]
        dt_id += n_dt
        # pycocotools' computeIoU: rows in stable descending-score order, cut to maxDets[-1]
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")[: max_dets[-1]]
        ev._gts[img, 1] = gts
        ev._dts[img, 1] = dts
        ev.ious[img, 1] = ious[order] if n_gt and n_dt else []
        ref_imgs.append([ev.evaluateImg(img, 1, a, max_dets[-1]) for a in ev.params.areaRng])
        mine = evaluate_image(
            ious[order].reshape(len(order), n_gt),
            scores[order],
            dt_areas[order],
            areas,
            crowd,
            params,
        )
        ours.append(mine)
        for a, r in enumerate(ref_imgs[-1]):
            if r is None:
                assert mine is None
                continue
            m = mine[a]
            np.testing.assert_array_equal(m.dt_scores, r["dtScores"])
            np.testing.assert_array_equal(m.dt_matched, r["dtMatches"] > 0)
            np.testing.assert_array_equal(m.dt_ignore, r["dtIgnore"])
            np.testing.assert_array_equal(m.gt_ignore, r["gtIgnore"].astype(bool))
    # pycocotools' evalImgs layout: [category][area][image]
    ev.evalImgs = [ref_imgs[i][a] for a in range(4) for i in range(len(ref_imgs))]
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    acc = accumulate(ours, params)
    np.testing.assert_array_equal(acc.precision, ev.eval["precision"][:, :, 0])
    np.testing.assert_array_equal(acc.recall, ev.eval["recall"][:, 0])
    np.testing.assert_array_equal(acc.scores, ev.eval["scores"][:, :, 0])
    np.testing.assert_allclose(coco_stats(acc, params), ev.stats, atol=1e-12, rtol=0)
