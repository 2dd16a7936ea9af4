"""HorNet's global filter as matrix products over a channels-last map.

The filter is ``irfft2(rfft2(x, norm="ortho") * weight, norm="ortho")`` per channel on (H, W)
planes. On CPU, for the maps HorNet-L sees (50 x 68 and 25 x 34 planes at 800x1088), the FFT
libraries' transforms are short and run per plane over a channels-first copy; written as dense
discrete Fourier transforms along each axis the same filter is four matrix products over the
channels-last map itself (no layout copy; 1.7 GFLOP for 720 planes of 50 x 68, at the matmul
rate):

1. ``A = Fw @ x``: along W, real to half spectrum. x (B, H, W, C) -> A (B, H, 2K, C), K = W//2+1,
   rows ``[Re_0..Re_{K-1}, Im_0..Im_{K-1}]``.
2. ``Y^T = A^T @ Fh^T``: along H, complex, the real and imaginary parts as a 2H x 2H real
   matrix; computed transposed so that the result (B, K, C, H, 2) holds each complex value's
   two parts side by side: the filter is then one complex multiplication in place.
3. ``V = Ih @ Y``: the inverse along H, back to (B, H, 2K, C).
4. ``out = Gw @ V``: along W, half spectrum to real (B, H, W, C). Like ``irfft`` (a complex
   inverse along H, then a complex-to-real one along W), the imaginary parts of the 0 and
   Nyquist frequencies are ignored.

Both "ortho" scales (1 / sqrt(H W) each) are folded into the filter. The values equal the FFT
path within float32 rounding of the products (inner sizes W, 2H, 2H and 2K: a few 1e-7 of the
values' magnitude).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def dft_matrices(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four real matrices of the module docstring for (h, w) planes, float64:
    ``fw`` (2K, w), ``fh`` (2h, 2h), ``ih`` (2h, 2h), ``gw`` (w, 2K), K = w // 2 + 1.

    ``fh`` / ``ih`` act on rows ordered (h, part) with part 0 = real, 1 = imaginary. Angles are
    reduced exactly in integers (``k * n mod N``) before the trigonometry; the sines of the 0
    and Nyquist frequencies along W are exact zeros. Unnormalised: forward then inverse gives
    ``h * w`` times the input.
    """
    k = w // 2 + 1
    kk = torch.arange(k, dtype=torch.int64)[:, None]
    ww = torch.arange(w, dtype=torch.int64)[None, :]
    ang = (2 * math.pi / w) * ((kk * ww) % w).double()  # (K, w)
    cos, sin = torch.cos(ang), torch.sin(ang)
    sin[0] = 0.0
    if w % 2 == 0:
        sin[-1] = 0.0
    fw = torch.cat([cos, -sin], dim=0)
    # irfft: the frequencies 1 .. ceil(w/2)-1 stand for their conjugates too
    mult = torch.full((k, 1), 2.0, dtype=torch.float64)
    mult[0] = 1.0
    if w % 2 == 0:
        mult[-1] = 1.0
    gw = torch.cat([mult * cos, -mult * sin], dim=0).t().contiguous()
    uu = torch.arange(h, dtype=torch.int64)[:, None]
    hh = torch.arange(h, dtype=torch.int64)[None, :]
    a = (2 * math.pi / h) * ((uu * hh) % h).double()
    c, s = torch.cos(a), torch.sin(a)
    fh = torch.empty((2 * h, 2 * h), dtype=torch.float64)
    ih = torch.empty_like(fh)
    # forward e^{-i a}: (C - iS)(re + i im) = (C re + S im) + i (C im - S re)
    fh[0::2, 0::2], fh[0::2, 1::2], fh[1::2, 0::2], fh[1::2, 1::2] = c, s, -s, c
    # inverse e^{+i a}: (C + iS)(re + i im) = (C re - S im) + i (C im + S re)
    ih[0::2, 0::2], ih[0::2, 1::2], ih[1::2, 0::2], ih[1::2, 1::2] = c, -s, s, c
    return fw, fh, ih, gw


@dataclass(frozen=True)
class FilterPlan:
    """Everything :func:`apply_global_filter` needs for one plane size, on one device:
    the :func:`dft_matrices` in the map's dtype and the filter as (K, C, H) complex, scaled by
    ``1 / (H W)`` (both "ortho" normalisations)."""

    size: tuple[int, int]
    fw: torch.Tensor
    fh: torch.Tensor
    ih: torch.Tensor
    gw: torch.Tensor
    weight: torch.Tensor


def filter_plan(weight: torch.Tensor, size: tuple[int, int]) -> FilterPlan:
    """``weight``: the complex filter (C, H, K) for (H, W) = ``size`` planes (``K = W//2+1``)."""
    h, w = size
    if tuple(weight.shape[1:]) != (h, w // 2 + 1):
        raise ValueError(f"filter of shape {tuple(weight.shape)} for {h}x{w} planes")
    real = torch.float32 if weight.dtype == torch.complex64 else torch.float64
    fw, fh, ih, gw = (m.to(device=weight.device, dtype=real) for m in dft_matrices(h, w))
    scaled = (weight / (h * w)).permute(2, 0, 1).contiguous()
    return FilterPlan((h, w), fw=fw, fh=fh, ih=ih, gw=gw, weight=scaled)


def apply_global_filter(x: torch.Tensor, plan: FilterPlan) -> torch.Tensor:
    """x (B, H, W, C) real (any strides with a unit channel stride, e.g. a channel slice of a
    larger map) -> the filtered map, a new contiguous (B, H, W, C) tensor."""
    b, h, w, c = x.shape
    if (h, w) != plan.size or c != plan.weight.shape[1]:
        raise ValueError(f"map {tuple(x.shape)} for a plan of {plan.size} x {plan.weight.shape[1]}")
    k = w // 2 + 1
    a = torch.matmul(plan.fw, x)  # (B, H, 2K, C): rows (h, part, k)
    yt = torch.matmul(a.view(b, 2 * h, k * c).transpose(1, 2), plan.fh.t())  # (B, K C, 2H)
    torch.view_as_complex(yt.view(b, k, c, h, 2)).mul_(plan.weight)
    v = torch.matmul(plan.ih, yt.transpose(1, 2))  # (B, 2H, K C): rows (h, part)
    return torch.matmul(plan.gw, v.view(b, h, 2 * k, c))
