"""Gradient checkpointing changes memory only: same outputs and gradients (with drop path on)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from entityseg_data.model.backbones import HORNET_ORACLE_TINY, SWIN_ORACLE_TINY, build_backbone


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(SWIN_ORACLE_TINY, id="swin", marks=pytest.mark.slow),
        pytest.param(HORNET_ORACLE_TINY, id="hornet"),
    ],
)
def test_checkpointing_gives_same_outputs_and_gradients(cfg):
    cfg = dataclasses.replace(cfg, drop_path_rate=0.5)
    torch.manual_seed(0)
    plain = build_backbone(cfg).train()
    ckpt = build_backbone(dataclasses.replace(cfg, gradient_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    with torch.no_grad():  # make the layer-scale gammas matter
        for m in (plain, ckpt):
            for name, p in m.named_parameters():
                if "gamma" in name:
                    p.fill_(0.5)
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(123)
        out = model(x)
        loss = sum((v.float() ** 2).mean() for v in out.values())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (out_a, grad_a), (out_b, grad_b) = results
    for k in out_a:
        torch.testing.assert_close(out_a[k], out_b[k], rtol=0, atol=1e-6)
    assert set(grad_a) == set(grad_b) and len(grad_a) > 0
    for n in grad_a:
        torch.testing.assert_close(grad_a[n], grad_b[n], rtol=1e-4, atol=1e-6, msg=n)
