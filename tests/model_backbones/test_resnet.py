"""ResNet backbone: res2..res5 contract, freezing, loading a local torchvision state_dict."""

from __future__ import annotations

import pytest
import torch

from entityseg_data.errors import CheckpointError
from entityseg_data.model.backbones import RESNET50, ResNetConfig, build_backbone

LEVELS = ("res2", "res3", "res4", "res5")


def test_resnet50_output_contract_and_param_count():
    torch.manual_seed(0)
    model = build_backbone(RESNET50).eval()
    assert model.out_channels == {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
    assert model.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    assert model.size_divisibility == 32
    # torchvision resnet50 has 25,557,032 parameters; minus fc (2048*1000 + 1000); with frozen BN
    # the 53,120 BN affine values are buffers (counted on the meta device: no values needed)
    with torch.device("meta"):
        trainable_bn = build_backbone(ResNetConfig(norm="bn"))
    assert sum(p.numel() for p in trainable_bn.parameters()) == 25_557_032 - 2_049_000
    assert sum(p.numel() for p in model.parameters()) == 25_557_032 - 2_049_000 - 53_120
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 96))
    for k in LEVELS:
        s = model.out_strides[k]
        assert out[k].shape == (2, model.out_channels[k], 64 // s, 96 // s)


def test_resnet_freeze_and_trainable_bn():
    with torch.device("meta"):  # requires_grad flags only: no values needed
        frozen = build_backbone(ResNetConfig(norm="frozen_bn", freeze_at=2))
    assert not any(p.requires_grad for p in frozen.conv1.parameters())
    assert not any(p.requires_grad for p in frozen.layer1.parameters())
    assert all(p.requires_grad for p in frozen.layer2.parameters())
    trainable = build_backbone(ResNetConfig(norm="bn", freeze_at=0))
    assert all(p.requires_grad for p in trainable.parameters())
    trainable.train()
    out = trainable(torch.randn(2, 3, 64, 64))
    out["res5"].mean().backward()
    assert trainable.conv1.weight.grad is not None


@pytest.mark.slow
def test_resnet_loads_local_torchvision_weights(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(1)
    src = resnet50(weights=None)
    path = tmp_path / "r50.pth"
    torch.save(src.state_dict(), path)
    model = build_backbone(ResNetConfig(norm="bn", weights_path=str(path)))
    torch.testing.assert_close(model.layer3[2].conv2.weight, src.layer3[2].conv2.weight)
    frozen = build_backbone(ResNetConfig(norm="frozen_bn", weights_path=str(path))).eval()
    src.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        ref = src.layer4(
            src.layer3(src.layer2(src.layer1(src.maxpool(src.relu(src.bn1(src.conv1(x)))))))
        )
        torch.testing.assert_close(frozen(x)["res5"], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_resnet_weight_errors_name_the_problem(tmp_path):
    from torchvision.models import resnet50

    sd = resnet50(weights=None).state_dict()
    bad = dict(sd)
    bad["layer1.0.conv1.weight"] = torch.zeros(3, 3)
    p = tmp_path / "bad.pth"
    torch.save(bad, p)
    with pytest.raises(CheckpointError, match=r"layer1\.0\.conv1\.weight has shape \(3, 3\)"):
        build_backbone(ResNetConfig(weights_path=str(p)))
    missing = {k: v for k, v in sd.items() if k != "layer4.2.bn3.bias"}
    torch.save(missing, p)
    with pytest.raises(CheckpointError, match="missing key 'layer4.2.bn3.bias'"):
        build_backbone(ResNetConfig(weights_path=str(p)))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: cannot read"):
        build_backbone(ResNetConfig(weights_path=str(tmp_path / "junk.pth")))
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone(ResNetConfig(weights_path=str(tmp_path / "nope.pth")))
