"""The global filter as matrix products (model/backbones/spectral.py) against torch.fft."""

from __future__ import annotations

import pytest
import torch

from entityseg_data.model.backbones.hornet import GlobalLocalFilter
from entityseg_data.model.backbones.spectral import (
    apply_global_filter,
    dft_matrices,
    filter_plan,
)

SIZES = [(1, 1), (1, 6), (5, 1), (2, 3), (7, 8), (9, 13), (16, 16), (50, 68), (25, 34)]


def _fft_filter(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (B, H, W, C), weight (C, H, W//2+1) complex -> HorNet's filter, channels-last."""
    planes = x.permute(0, 3, 1, 2)
    h, w = planes.shape[-2:]
    spec = torch.fft.rfft2(planes, dim=(2, 3), norm="ortho") * weight
    return torch.fft.irfft2(spec, s=(h, w), dim=(2, 3), norm="ortho").permute(0, 2, 3, 1)


@pytest.mark.parametrize("size", SIZES)
def test_dft_matrices_are_the_transforms(size):
    h, w = size
    g = torch.Generator().manual_seed(h * 100 + w)
    fw, fh, ih, gw = dft_matrices(h, w)
    k = w // 2 + 1
    assert fw.shape == (2 * k, w) and gw.shape == (w, 2 * k)
    assert fh.shape == ih.shape == (2 * h, 2 * h)
    x = torch.randn((w, 3), generator=g, dtype=torch.float64)
    spec = torch.fft.rfft(x, dim=0)
    torch.testing.assert_close(fw @ x, torch.cat([spec.real, spec.imag]), rtol=0, atol=1e-12)
    # unnormalised round trips: w and h times the identity
    eye = torch.eye(max(w, 2 * h), dtype=torch.float64)
    torch.testing.assert_close(gw @ fw, w * eye[:w, :w], rtol=0, atol=1e-11)
    torch.testing.assert_close(ih @ fh, h * eye[: 2 * h, : 2 * h], rtol=0, atol=1e-11)
    # the imaginary parts of the 0 and Nyquist frequencies are ignored, as irfft does
    z = torch.randn((k,), generator=g, dtype=torch.complex128)
    ref = torch.fft.irfft(z, n=w, norm="forward")
    torch.testing.assert_close(gw @ torch.cat([z.real, z.imag]), ref, rtol=0, atol=1e-11)


@pytest.mark.parametrize("size", SIZES)
def test_products_equal_the_fft_filter_in_float64(size):
    """Exact arithmetic aside, the same filter: random complex weights (not Hermitian in the 0 /
    Nyquist columns, which the inverse must treat as irfft2 does), a channel slice of a larger
    channels-last map, a batch of 2."""
    h, w = size
    g = torch.Generator().manual_seed(7 + h * 100 + w)
    full = torch.randn((2, h, w, 11), generator=g, dtype=torch.float64)
    x = full[..., 3:8]  # strided: a channel slice
    weight = torch.randn((5, h, w // 2 + 1), generator=g, dtype=torch.complex128)
    got = apply_global_filter(x, filter_plan(weight, (h, w)))
    assert got.shape == x.shape and got.is_contiguous()
    torch.testing.assert_close(got, _fft_filter(x, weight), rtol=0, atol=1e-12)


def test_products_in_float32_are_within_rounding():
    g = torch.Generator().manual_seed(3)
    x = torch.randn((1, 50, 68, 96), generator=g)
    weight = torch.randn((96, 50, 35), generator=g, dtype=torch.complex64)
    got = apply_global_filter(x, filter_plan(weight, (50, 68)))
    ref = _fft_filter(x.double(), weight.to(torch.complex128))
    fft32 = _fft_filter(x, weight)
    err, err_fft = float((got - ref).abs().max()), float((fft32 - ref).abs().max())
    assert got.dtype == torch.float32
    # within a few times the FFT's own float32 error
    assert err <= max(4 * err_fft, 1e-5 * float(ref.abs().max())), (err, err_fft)


def test_plan_and_map_mismatches_are_refused():
    weight = torch.zeros((4, 6, 5), dtype=torch.complex64)
    with pytest.raises(ValueError, match="for 6x11 planes"):
        filter_plan(weight, (6, 11))
    plan = filter_plan(weight, (6, 8))
    with pytest.raises(ValueError, match="for a plan of"):
        apply_global_filter(torch.zeros((1, 6, 8, 3)), plan)


@pytest.mark.parametrize("size", [(24, 24), (20, 28), (9, 13), (3, 2)])
def test_layer_without_autograd_matches_the_fft_path(size):
    """GlobalLocalFilter takes the products without autograd on CPU float32 and the FFT with
    it: the same layer output within float32 rounding, the stored filter interpolated alike."""
    torch.manual_seed(0)
    gf = GlobalLocalFilter(dim=8, h=24, w=13).eval()
    with torch.no_grad():
        gf.complex_weight.normal_()
    x = torch.randn(2, *size, 8)
    ref = gf.forward_nhwc(x)
    assert ref.requires_grad  # the FFT path
    with torch.no_grad():
        got = gf.forward_nhwc(x)
    torch.testing.assert_close(got, ref.detach(), rtol=1e-5, atol=1e-5)
    assert "_plan_cache" in gf.__dict__
    # the cached plan follows the weight: an in-place update is seen
    with torch.no_grad():
        gf.complex_weight.mul_(-1.0)
        again = gf.forward_nhwc(x)
    torch.testing.assert_close(again, gf.forward_nhwc(x).detach(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(again, got)
