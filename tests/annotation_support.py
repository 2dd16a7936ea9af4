"""Annotation test helpers (``from annotation_support import add_test_images``: a module, not a
conftest, so that several test folders can run in one session). The real Label Studio of the test
session (fixture ``labelstudio``, session scope) lives in tests/labelstudio_support.py, loaded as
a plugin by tests/conftest.py.

The first session builds a migrated template data dir (first boot: ~30-70 s on 2 cores) with an
admin account and its personal access token, under ``$ENTITYSEG_LS_TEMPLATE`` or
``~/.cache/entityseg-data/ls-template-<version>``; every session copies it to a temporary folder
and starts Label Studio on a free loopback port (~6-10 s), then stops it at teardown. Tests that
use it are marked ``labelstudio`` (and skipped when label-studio is not installed).

Other test areas can use it too::

    @pytest.mark.labelstudio
    def test_x(labelstudio, tmp_path):
        ws = labelstudio.workspace("mine")          # a workspace wired to the server
        client = labelstudio.admin                  # LabelStudioClient as the admin
        tok = labelstudio.user_token("alice")       # signs alice up via the invite link
"""

from __future__ import annotations


def add_test_images(ws, sizes, *, seed=0, with_predictions=True, model_version="source:test"):
    """Add synthetic images (PNG, sizes as (h, w)) to the workspace catalog, each with a
    prediction file of non-overlapping blocks; returns the image ids."""
    import hashlib

    import numpy as np
    from PIL import Image

    from entityseg_data.catalog.predictions import write_prediction
    from entityseg_data.masks import rle as rle_utils

    rng = np.random.default_rng(seed)
    ids = []
    with ws.catalog() as cat:
        for k, (h, w) in enumerate(sizes):
            arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            path = ws.images_dir / f"tmp{k}.png"
            Image.fromarray(arr).save(path)
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            final = ws.images_dir / f"{sha}.png"
            path.rename(final)
            iid = cat.add_image(
                sha256=sha,
                source="test",
                source_id=str(k),
                width=w,
                height=h,
                file_path=ws.relpath(final),
                mime="image/png",
                bytes=final.stat().st_size,
            )
            ids.append(iid)
            if with_predictions:
                lm = np.zeros((h, w), np.uint16)
                lm[: h // 2, : w // 2] = 1
                lm[h // 2 :, :] = 2
                lm[: h // 3, w // 2 :] = 3
                rles = rle_utils.label_map_to_rles(lm)
                data = {
                    "image_id": iid,
                    "height": h,
                    "width": w,
                    "entities": [
                        {"id": str(i), "segmentation": r, "score": 0.5 + 0.1 * i}
                        for i, r in rles.items()
                    ],
                }
                write_prediction(ws.root, cat, data, model_version)
    return ids
