"""Mask2Former inference with TEST.DETECTIONS_PER_IMAGE < NUM_OBJECT_QUERIES (issue 16).

The official ``MaskFormer.instance_inference_nonoverlap`` keeps the top-k queries by entity
probability (k = ``TEST.DETECTIONS_PER_IMAGE``) BEFORE painting, so a query outside the top k never
takes pixels. Here: a tiny Mask2Former in the official key format (the oracle tiny CropFormer's
perturbed weights without the association module), an official-style YAML with Q = 16 and k = 8,
``model convert --config`` and the segmenter loaded from the converted folder, compared with a
re-implementation of the official function written from its source (below, independent of
``model/inference``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

K = 8


def official_instance_inference_nonoverlap(mask_cls, mask_pred, image_size, out_hw, topk):
    """The official Mask2Former entity inference of one image.

    ``mask_cls`` (Q, 2) logits [entity, no-object]; ``mask_pred`` (Q, Hp/4, Wp/4) mask logits;
    ``image_size`` the resized (unpadded) input size; ``out_hw`` the original size.
    Returns (masks (k, H, W) bool in descending class-score order, scores (k,), query index (k,)).
    """
    hp, wp = mask_pred.shape[-2] * 4, mask_pred.shape[-1] * 4
    # forward(): upsample to the padded input size
    m = F.interpolate(mask_pred[None], size=(hp, wp), mode="bilinear", align_corners=False)[0]
    # sem_seg_postprocess: cut the padding, resize to the original size
    m = m[:, : image_size[0], : image_size[1]]
    m = F.interpolate(m[None], size=out_hw, mode="bilinear", align_corners=False)[0]
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]  # num_classes = 1
    scores_per_image, topk_indices = scores.flatten(0, 1).topk(topk, sorted=False)
    m = m[topk_indices]
    pred_masks = (m > 0).float()
    logits_sig = m.sigmoid()
    mask_id = torch.zeros(out_hw, dtype=torch.int64)
    sorted_scores, ranks = torch.sort(scores_per_image)
    for r in ranks.tolist():
        mask_id[pred_masks[r] == 1] = r + 1
    order = ranks.flip(0).tolist()
    new_masks = torch.stack([(mask_id == r + 1).float() for r in order])
    new_logits = torch.stack([logits_sig[r] for r in order])
    mask_scores = (new_logits.sigmoid().flatten(1) * new_masks.flatten(1)).sum(1) / (
        new_masks.flatten(1).sum(1) + 1e-6
    )
    final = sorted_scores.flip(0) * mask_scores
    return new_masks.bool().numpy(), final.numpy(), topk_indices[order].numpy()


@pytest.fixture(scope="module")
def converted_mask2former(oracle_dir, tmp_path_factory):
    """(converted folder, official-style YAML) of a tiny Mask2Former with Q = 16, k = 8."""
    from click.testing import CliRunner

    from entityseg_data.cli.main import cli

    tmp = tmp_path_factory.mktemp("m2f")
    with np.load(oracle_dir / "tiny" / "weights.npz") as z:
        state = {k: torch.from_numpy(z[k]) for k in z.files if ".make_3d." not in k}
    torch.save({"model": state}, tmp / "model_final.pth")
    cfg = yaml.safe_load((oracle_dir / "tiny" / "cfg_test320.yaml").read_text())
    cfg["MODEL"]["META_ARCHITECTURE"] = "MaskFormer"
    cfg["MODEL"]["MASK_FORMER"]["TRANSFORMER_DECODER_NAME"] = "MultiScaleMaskedTransformerDecoder"
    cfg["TEST"]["DETECTIONS_PER_IMAGE"] = K
    (tmp / "m2f.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp / "converted"
    res = CliRunner().invoke(
        cli,
        [
            "model",
            "convert",
            "--src",
            str(tmp / "model_final.pth"),
            "--config",
            str(tmp / "m2f.yaml"),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_convert_carries_detections_per_image(converted_mask2former):
    data = json.loads((converted_mask2former / "config.json").read_text())
    assert data["model"]["batch_level"] is False
    assert data["model"]["num_queries"] == 16
    assert data["model"]["inference"]["mask2former_topk"] == K
    assert (data["model"]["views"]["min_size"], data["model"]["views"]["max_size"]) == (320, 512)


def test_mask2former_topk_equals_official_instance_inference(converted_mask2former, oracle_dir):
    from entityseg_data.model.inference.predictor import EntitySegmenter
    from entityseg_data.model.inference.preprocess import stack_views
    from entityseg_data.model.inference.views import build_views

    torch.set_num_threads(1)
    seg = EntitySegmenter.from_pretrained(
        converted_mask2former,
        score_mode="reference",
        score_thresh=0.0,
        min_area=0,
        max_entities=None,
        min_size=160,
        max_size=256,
    )
    assert seg.options.mask2former_topk == K
    # the oracle image at half size, views at 160 px (the converted config's 320 is checked above)
    rgb = Image.open(oracle_dir / "images" / "img_a_480x640.png").convert("RGB")
    image = np.asarray(rgb.resize((320, 240), Image.Resampling.BILINEAR))
    res = seg(image)
    geo = seg.geometry(*image.shape[:2])
    assert geo.num_views == 1
    x, _ = stack_views(
        [build_views(image, geo)],
        pixel_mean=seg.config.pixel_mean,
        pixel_std=seg.config.pixel_std,
    )
    with torch.inference_mode():
        out = seg.model(x, aux=False)
    lvl = out.image_level.final
    cls, masks = lvl.pred_logits[0, 0].float(), lvl.pred_masks[0, 0].float()
    ref_masks, ref_scores, ref_q = official_instance_inference_nonoverlap(
        cls, masks, geo.resized_hw[0], image.shape[:2], K
    )
    nonempty = ref_masks.reshape(K, -1).any(1)
    # the case is a real one: all 16 queries would leave more entities than the top 8
    all_q, _, _ = official_instance_inference_nonoverlap(
        cls, masks, geo.resized_hw[0], image.shape[:2], 16
    )
    assert all_q.reshape(16, -1).any(1).sum() > nonempty.sum()
    assert 0 < len(res) == int(nonempty.sum()) <= K
    assert sorted(res.query_index.tolist()) == sorted(ref_q[nonempty].tolist())
    for i, q in enumerate(res.query_index.tolist()):
        row = int(np.nonzero(ref_q == q)[0][0])
        assert np.array_equal(res.mask(i + 1), ref_masks[row])
        assert abs(float(res.scores[i]) - float(ref_scores[row])) < 1e-5
    # nothing outside the kept masks is painted
    assert (res.label_map > 0).sum() == ref_masks[nonempty].sum()
