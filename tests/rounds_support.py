"""Round-test helpers (``from rounds_support import build_history``): a workspace with two
annotation rounds of hand-built submissions with known lead times and edits, through the public
API and the in-memory backend (tests/rounds/test_rounds_fake.py documents the numbers).

Images are 40 x 60 with the seed of tests/annotation_support.py: entity 1 = rows 0-19 x cols
0-29 (600 px), entity 2 = rows 20-39 (1200 px), entity 3 = rows 0-12 x cols 30-59 (390 px);
rows 13-19 x cols 30-59 (210 px) unlabelled.
"""

from __future__ import annotations

import numpy as np
from annotation_support import add_test_images

import entityseg_data as esd
from entityseg_data.catalog.predictions import write_prediction
from entityseg_data.masks import rle

H, W = 40, 60
SETTINGS = [
    "annotation.annotators=[alice, bob]",
    "annotation.overlap_fraction=0.0",
    "annotation.overlap_images=0",
]


def _seed_masks() -> dict[str, np.ndarray]:
    lm = np.zeros((H, W), np.uint16)
    lm[: H // 2, : W // 2] = 1
    lm[H // 2 :, :] = 2
    lm[: H // 3, W // 2 :] = 3
    return {str(k): lm == k for k in (1, 2, 3)}


def _masks(image_id: int, masks: dict[str, np.ndarray]) -> esd.ImageMasks:
    ents = tuple(
        esd.Entity(id=f"{image_id}_{k}", rle=rle.encode(m.astype(np.uint8)))
        for k, m in masks.items()
    )
    return esd.ImageMasks(image_id=image_id, height=H, width=W, entities=ents)


def _who(ann: esd.Annotation, image_id: int) -> str:
    for a in ("alice", "bob"):
        if any(t.image_id == image_id for t in ann.tasks(1, a)):
            return a
    raise AssertionError(f"image {image_id} not pushed")


def build_history(root):
    """Round 1 (seeds source:test, no selection): image A accepted as is in 60 s; image B
    first submitted empty (180 s, rejected, sent back), then fixed in 30 s: entity 1 shrunk by
    one column (IoU 580/600), the unlabelled strip added. Round 2 (seeds v2, a stored random
    selection "rand", SIMULATED lead times): image C accepted in 30 s, image D with entity 3
    deleted in 90 s."""
    ws = esd.Workspace.create(root)
    a, b, c, d = add_test_images(ws, [(H, W)] * 4)
    backend = esd.InMemoryBackend()
    ann = ws.annotation(backend, overrides=SETTINGS)
    rep1 = ann.push(1, image_ids=[a, b])
    seed = _seed_masks()

    assert ann.submit(1, _who(ann, a), _masks(a, seed), lead_time=60)
    assert ann.submit(1, _who(ann, b), _masks(b, {}), lead_time=180)
    ann.pull(stages=(1,))  # B rejected (no entities) and sent back for rework
    fixed = dict(seed)
    fixed["1"] = seed["1"].copy()
    fixed["1"][:, 29] = False
    strip = np.zeros((H, W), bool)
    strip[13:20, 30:] = True
    fixed["new"] = strip
    assert ann.submit(1, _who(ann, b), _masks(b, fixed), lead_time=30)
    ann.pull(stages=(1,))

    with ws.catalog() as cat:  # newer pre-annotations of C and D: the next round's seeds
        for iid in (c, d):
            lm = np.zeros((H, W), np.uint16)
            for k, m in seed.items():
                lm[m] = int(k)
            ents = [
                {"id": str(k), "segmentation": r, "score": 0.5 + 0.1 * k}
                for k, r in rle.label_map_to_rles(lm).items()
            ]
            data = {"image_id": iid, "height": H, "width": W, "entities": ents}
            write_prediction(ws.root, cat, data, "v2")
    chosen = ws.select(2, name="rand", strategy="random")  # the two images not annotated yet
    assert sorted(it.image_id for it in ws.selection("rand")) == [c, d], chosen
    rep2 = ann.push(1, selection="rand")
    assert ann.submit(1, _who(ann, c), _masks(c, seed), lead_time=30, simulated=True)
    dropped = {k: v for k, v in seed.items() if k != "3"}
    assert ann.submit(1, _who(ann, d), _masks(d, dropped), lead_time=90, simulated=True)
    ann.pull(stages=(1,))
    return ws, ann, (a, b, c, d), (rep1, rep2)
