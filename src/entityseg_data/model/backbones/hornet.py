"""HorNet with recursive gated convolutions (the ``D2HorNet`` of CropFormer; HorNet-L GF).

Layout (REFERENCE 3.1.2): stem Conv(k4,s4) + channels-first LN; downsample i = LN + Conv(k2,s2);
each block is ``x + gamma1 * gnconv(LN(x))`` then a channels-last MLP ``x + gamma2 * MLP(LN(x))``;
res2..res5 = ``norm{i}(stage i output)``. Stages 3-4 of HorNet-L GF use a GlobalLocalFilter as the
gnconv spatial mixer: half of the channels go through a 3x3 depthwise conv, the other half through
a learnable global filter in the 2-D real FFT domain (weights bilinearly resized to the spectrum,
``align_corners=True``); the two halves are *interleaved* channel by channel.

Attribute names equal the official ones (``downsample_layers.*``, ``stages.{s}.{j}.*``,
``norm0..3``). Inputs should be padded to a multiple of 32; other sizes are floored by the strided
convolutions as in the official code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from entityseg_data.model.backbones.common import (
    Backbone,
    DropPath,
    LayerNorm2d,
    maybe_checkpoint,
)
from entityseg_data.model.backbones.config import OUT_FEATURES, HorNetConfig
from entityseg_data.model.backbones.spectral import FilterPlan, apply_global_filter, filter_plan
from entityseg_data.model.fused import (
    PackedWeights,
    add_product_,
    cpu_fp32_inference,
    linear_packed,
    packed_inference,
    packed_linear,
    rows_of,
)
from entityseg_data.model.layout import channels_first

T = TypeVar("T")

#: switch: whether the global filter runs as products (:mod:`.spectral`) for a map
_filter_by_products = cpu_fp32_inference


#: switch: whether the 1x1 products with at most :data:`_PACKED_MAX_IN` input channels run on
#: a map as oneDNN calls with packed weights (:func:`~entityseg_data.model.fused.packed_linear`:
#: the bias, and in the MLP the GELU, in the product's epilogue)
_packed_products = packed_inference


#: The widest input of a product :func:`_packed_products` covers. The epilogue saves a fixed
#: cost per output value, worth more the fewer input channels each value's product has; measured
#: in whole predictions of CropFormer HorNet-L at 800x1088 on one thread, per call: MLP
#: ``gelu(pwconv1)`` at stage 0 (192 in) 156 -> 134 ms, stage 1 (384) 122 -> 110, but stage 2
#: (768) 110 -> 111 and stage 3 (1536) 109 -> 113 (oneDNN's product is slower than MKL's
#: there); gnconv's products with 96-384 inputs 3-30 % faster, with 768-1536 equal. The packed
#: copies this admits take ~43 MB for HorNet-L (all its 1x1 products would take ~0.7 GB).
_PACKED_MAX_IN = 384


class GlobalLocalFilter(nn.Module):
    """Spatial mixer over ``dim`` channels: depthwise 3x3 on the first half, a global FFT filter
    on the second half, channels interleaved, then LayerNorm. (B, dim, H, W) -> same shape.

    ``complex_weight`` is (dim/2, h, w, 2) (real, imaginary), resized to the (H, W//2+1)
    spectrum when the sizes differ.
    """

    def __init__(self, *, dim: int, h: int, w: int) -> None:
        super().__init__()
        half = dim // 2
        self.dw = nn.Conv2d(half, half, kernel_size=3, padding=1, bias=False, groups=half)
        self.complex_weight = nn.Parameter(torch.empty(half, h, w, 2))
        nn.init.trunc_normal_(self.complex_weight, std=0.02)
        self.pre_norm = LayerNorm2d(dim)
        self.post_norm = LayerNorm2d(dim)

    def spectral_weight(self, size: tuple[int, int]) -> torch.Tensor:
        """Complex (dim/2, size[0], size[1]) filter, interpolated if the stored size differs."""
        weight: torch.Tensor = self.complex_weight
        if tuple(weight.shape[1:3]) != tuple(size):
            weight = F.interpolate(
                weight.permute(3, 0, 1, 2), size=size, mode="bilinear", align_corners=True
            ).permute(1, 2, 3, 0)
        return torch.view_as_complex(weight.float().contiguous())

    def _cached(self, slot: str, key: tuple, make: Callable[[], T]) -> T:
        """``make()`` (run without autograd), kept in ``slot`` until ``key`` or the filter's
        version changes (one entry per slot: the last size and device used)."""
        full = (key, self.complex_weight._version, self.complex_weight.data_ptr())
        cached = self.__dict__.get(slot)
        if cached is None or cached[0] != full:
            with torch.no_grad():
                cached = (full, make())
            self.__dict__[slot] = cached
        return cached[1]

    def _spectral_weight_cached(self, size: tuple[int, int]) -> torch.Tensor:
        """:meth:`spectral_weight`; without autograd cached per size and weight version (the
        interpolation is not redone for every view of every image)."""
        if torch.is_grad_enabled() and self.complex_weight.requires_grad:
            return self.spectral_weight(size)
        return self._cached("_spectral_cache", tuple(size), lambda: self.spectral_weight(size))

    def _plan_cached(self, size: tuple[int, int], device: torch.device) -> FilterPlan:
        """The filter as products for (H, W) = ``size`` planes (:mod:`.spectral`), cached per
        size, device and weight version (the only copy of the resized filter kept)."""
        spectrum = (size[0], size[1] // 2 + 1)
        return self._cached(
            "_plan_cache",
            (tuple(size), device),
            lambda: filter_plan(self.spectral_weight(spectrum).to(device), size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) -> same shape."""
        return self.forward_nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H, W, dim): the layer on channels-last activations (layer norms
        over the contiguous last axis, the filter over the spatial axes).

        Without autograd on CPU float32 (outside autocast) the global filter runs as four
        matrix products over the channels-last map (:mod:`.spectral`; within float32 rounding of
        the FFT path: HorNet-L at 800x1088 ~0.1 CPU s per view less on one thread); otherwise
        as ``rfft2`` / ``irfft2`` over channels-first planes."""
        dim = x.shape[-1]
        c = dim // 2
        x = F.layer_norm(x, (dim,), self.pre_norm.weight, self.pre_norm.bias, self.pre_norm.eps)
        # the depthwise conv on a channels-last NCHW view (oneDNN's NHWC kernel)
        x1 = self.dw(x[..., :c].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        h, w = x.shape[1], x.shape[2]
        if _filter_by_products(x):
            x2 = apply_global_filter(x[..., c:], self._plan_cached((h, w), x.device))
            # interleave x1[0], x2[0], x1[1], x2[1], ... as two strided copies (torch.stack of
            # two contiguous maps on the last axis copies one value at a time)
            mixed = x1.new_empty((*x1.shape, 2))
            mixed[..., 0].copy_(x1)
            mixed[..., 1].copy_(x2)
            x = mixed.view(*x1.shape[:3], dim)
        else:
            # the FFT over channels-first planes (contiguous rows: ~1.3x faster than over
            # strided channels-last axes at stage 3), back to a channels-last view
            x2 = channels_first(x[..., c:]).float()
            spec = torch.fft.rfft2(x2, dim=(2, 3), norm="ortho")
            spec = spec * self._spectral_weight_cached((spec.shape[2], spec.shape[3]))
            x2 = torch.fft.irfft2(spec, s=(h, w), dim=(2, 3), norm="ortho").permute(0, 2, 3, 1)
            # interleave: x1[0], x2[0], x1[1], x2[1], ...
            x = torch.stack([x1, x2], dim=-1).reshape(*x1.shape[:3], dim)
        return F.layer_norm(
            x, (dim,), self.post_norm.weight, self.post_norm.bias, self.post_norm.eps
        )


class GnConv(nn.Module):
    """Recursive gated convolution of ``order`` (official name ``gnconv``).

    ``dims = [dim / 2^(order-1), ..., dim/2, dim]``; proj_in (1x1, dim -> 2 dim) splits into a
    gate ``pwa`` (dims[0]) and ``abc`` (sum(dims)) that goes through the spatial mixer ``dwconv``
    scaled by ``scale``; then ``x = pwa * dw0``, ``x = pws[i](x) * dw[i+1]``; proj_out (1x1).
    """

    def __init__(
        self,
        *,
        dim: int,
        order: int,
        scale: float,
        gf_size: tuple[int, int] | None,
        dw_kernel: int,
    ) -> None:
        super().__init__()
        self.order = order
        self.dims = [dim // 2**i for i in range(order)][::-1]
        total = sum(self.dims)
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        if gf_size is None:
            self.dwconv: nn.Module = nn.Conv2d(
                total, total, kernel_size=dw_kernel, padding=(dw_kernel - 1) // 2, groups=total
            )
        else:
            self.dwconv = GlobalLocalFilter(dim=total, h=gf_size[0], w=gf_size[1])
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(
            nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1)
        )
        self.scale = scale
        self._packed = PackedWeights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) -> same shape."""
        return self.forward_nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_nhwc(
        self,
        x: torch.Tensor,
        *,
        shortcut: torch.Tensor | None = None,
        gamma: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, H, W, dim) -> same shape: the 1x1 convolutions as matrix products over the
        contiguous channel axis (their (out, in, 1, 1) weights viewed as (out, in)).

        With ``shortcut`` and ``gamma`` (dim,) it returns ``shortcut + gamma * gnconv(x)`` (the
        block's residual), the scale folded into ``proj_out`` where :func:`scaled_residual`
        allows it."""
        # proj_in as two products (its weight rows split: views, no copy), so that ``abc``
        # is contiguous for the depthwise conv (a strided slice costs oneDNN a full copy)
        c0 = self.dims[0]
        # without autograd the mixer's scale is folded into the gate products (pwa and every
        # pws: each multiplies one slice of the mixer's output, so scaling the other factor
        # is the same up to float rounding): no pass over the mixer's output, and the gates
        # are multiplied in place into the products' own outputs
        fold = _fold_gate_scale()
        gate_scale = self.scale if fold else None
        cache = self._packed
        pwa = _pointwise(
            self.proj_in, x, slice(None, c0), scale=gate_scale, packed=(cache, "proj_in.a")
        )
        abc = _pointwise(self.proj_in, x, slice(c0, None), packed=(cache, "proj_in.bc"))
        if isinstance(self.dwconv, GlobalLocalFilter):
            mixed = self.dwconv.forward_nhwc(abc)
        else:
            mixed = self.dwconv(abc.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if not fold:
            mixed = mixed * self.scale
        dw = torch.split(mixed, self.dims, dim=-1)
        x = pwa.mul_(dw[0]) if fold else pwa * dw[0]
        for i, pw in enumerate(self.pws):
            assert isinstance(pw, nn.Conv2d)  # for the type checker (ModuleList items)
            y = _pointwise(pw, x, scale=gate_scale, packed=(cache, f"pws.{i}"))
            x = y.mul_(dw[i + 1]) if fold else y * dw[i + 1]
        if shortcut is None or gamma is None:
            return _pointwise(self.proj_out, x)
        weight = self.proj_out.weight.view(self.proj_out.out_channels, self.proj_out.in_channels)
        return scaled_residual(shortcut, gamma, x, weight, self.proj_out.bias)


def _fold_gate_scale() -> bool:
    """Whether :meth:`GnConv.forward_nhwc` folds the mixer's scale into the gate products and
    multiplies the gates in place: without autograd."""
    return not torch.is_grad_enabled()


def _pointwise(
    conv: nn.Conv2d,
    x: torch.Tensor,
    outputs: slice = slice(None),
    *,
    scale: float | None = None,
    packed: tuple[PackedWeights, str] | None = None,
) -> torch.Tensor:
    """A 1x1 ``conv`` applied to channels-last ``x`` (B, H, W, C_in) -> (B, H, W, C_out), or
    only its ``outputs`` channels (rows of the weight: views, no copy); ``scale``: times that
    factor, folded into the weight and bias (small copies) instead of a pass over the output.
    ``packed``: (the owner's packed weights, this product's name among them), used where
    :func:`_packed_products` allows (a scaled weight is then packed once, not made per call)."""
    weight = conv.weight.view(conv.out_channels, conv.in_channels)[outputs]
    bias = None if conv.bias is None else conv.bias[outputs]
    if scale is not None:
        bias = None if bias is None else bias * scale
    if packed is not None and conv.in_channels <= _PACKED_MAX_IN and _packed_products(x):
        cache, name = packed
        w = cache.get(
            f"{name}*{scale}",
            (conv.weight,),
            lambda: weight if scale is None else weight * scale,
            rows_of(x),
        )
        return packed_linear(x, w, bias)
    if scale is not None:
        weight = weight * scale
    return F.linear(x, weight, bias)


def scaled_residual(
    shortcut: torch.Tensor,
    gamma: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """``shortcut + gamma * (x @ weight.T + bias)`` over the last axis: shortcut (..., out),
    gamma (out,), x (..., in), weight (out, in).

    Without autograd, on float tensors of one dtype outside autocast, and when there are at
    least as many rows as input features, computed as ``(shortcut + gamma * bias) + x @ (gamma *
    weight).T`` with the product accumulated into the sum: one pass over the output less than
    the product, its bias copy and an ``addcmul`` (HorNet-L at 800x1088 on one thread: ~20 ms
    per product at stage 0, ~1-4 at stages 1-2). The folded weight is made per call (a cache
    would hold a second copy of these weights, ~0.3 GB for HorNet-L); with fewer rows than input
    features (stage 3) making it costs more than the pass it saves, so the plain form runs.
    Equal to the plain form up to float rounding (the scale is applied before the sum instead
    of after). ``inplace``: write into ``shortcut`` (the caller's own tensor).
    """
    same = x.dtype == weight.dtype == shortcut.dtype == gamma.dtype
    dev = x.device.type
    autocast = dev in ("cpu", "cuda") and torch.is_autocast_enabled(dev)
    rows = x.numel() // max(1, x.shape[-1])
    if (
        torch.is_grad_enabled()
        or not same
        or autocast
        or not shortcut.is_contiguous()
        or rows < weight.shape[1]
    ):
        return torch.addcmul(shortcut, gamma, F.linear(x, weight, bias))
    scaled_w = gamma[:, None] * weight
    if bias is None:
        out = shortcut if inplace else shortcut.clone()
    else:
        scaled_b = gamma * bias
        out = shortcut.add_(scaled_b) if inplace else torch.add(shortcut, scaled_b)
    return add_product_(out, x, scaled_w)


def _layer_norm_nhwc(norm: LayerNorm2d | nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """A channels-first ``LayerNorm2d`` (or ``nn.LayerNorm``) applied over the last axis of
    channels-last ``x``."""
    return F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)


class HorBlock(nn.Module):
    """``x + dp(gamma1 * gnconv(norm1(x)))`` then ``x + dp(gamma2 * MLP(norm2(x)))``, on
    channels-last (B, H, W, dim) activations (the whole block works over the contiguous channel
    axis: layer norms, 1x1 convs as matrix products, the MLP)."""

    def __init__(
        self,
        *,
        dim: int,
        drop_path: float,
        layer_scale: float,
        mlp_ratio: float,
        gnconv: GnConv,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.gnconv = gnconv
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma1 = nn.Parameter(layer_scale * torch.ones(dim))
        self.gamma2 = nn.Parameter(layer_scale * torch.ones(dim))
        self.drop_path = DropPath(drop_path)
        self._packed = PackedWeights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) channels-last activations -> same shape."""
        dropping = self.drop_path.prob > 0 and self.training
        if dropping:
            y = self.gnconv.forward_nhwc(_layer_norm_nhwc(self.norm1, x))
            x = x + self.drop_path(self.gamma1 * y)
        else:  # the residual sum folded into proj_out's product (see scaled_residual)
            x = self.gnconv.forward_nhwc(
                _layer_norm_nhwc(self.norm1, x), shortcut=x, gamma=self.gamma1
            )
        hidden = self._mlp_hidden(self.norm2(x))
        if dropping:
            return x + self.drop_path(self.gamma2 * self.pwconv2(hidden))
        if type(self.pwconv2) is not nn.Linear:  # e.g. a dynamically quantized int8 Linear
            return torch.addcmul(x, self.gamma2, self.pwconv2(hidden))
        # x is this block's own tensor here (the first residual's output): summed into in place
        return scaled_residual(
            x,
            self.gamma2,
            hidden,
            self.pwconv2.weight,
            self.pwconv2.bias,
            inplace=not torch.is_grad_enabled(),
        )

    def _mlp_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """``gelu(pwconv1(x))``: (B, H, W, dim) -> (B, H, W, mlp_ratio * dim)."""
        pw1 = self.pwconv1
        if type(pw1) is nn.Linear and pw1.in_features <= _PACKED_MAX_IN and _packed_products(x):
            return linear_packed(self._packed, "pwconv1", pw1, x, act="gelu")
        hidden = self.pwconv1(x)
        # without autograd GELU in place on the 4x-wide hidden tensor (same values; at stage 0
        # of 800x1088 the out-of-place call cost ~4x the in-place one: a 167 MB fresh tensor)
        return self.act(hidden) if torch.is_grad_enabled() else torch.ops.aten.gelu_(hidden)


class HorNet(Backbone):
    """HorNet backbone: ``forward(x (N,3,H,W)) -> {"res2".."res5": NCHW}`` at strides 4..32."""

    def __init__(self, cfg: HorNetConfig) -> None:
        super().__init__(cfg.out_channels)
        self.cfg = cfg
        dims = [cfg.base_dim * 2**i for i in range(4)]
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0]))]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)
                )
            )
        rates = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        cur = 0
        for i in range(4):
            blocks = [
                HorBlock(
                    dim=dims[i],
                    drop_path=rates[cur + j],
                    layer_scale=cfg.layer_scale_init_value,
                    mlp_ratio=cfg.mlp_ratio,
                    gnconv=GnConv(
                        dim=dims[i],
                        order=cfg.gnconv_orders[i],
                        scale=cfg.gnconv_scale,
                        gf_size=cfg.gf_sizes[i],
                        dw_kernel=cfg.dw_kernel,
                    ),
                )
                for j in range(cfg.depths[i])
            ]
            self.stages.append(nn.Sequential(*blocks))
            cur += cfg.depths[i]
        for i in range(4):
            self.add_module(f"norm{i}", LayerNorm2d(dims[i]))
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(f"HorNet expects (N, 3, H, W), got {tuple(x.shape)}")
        outs: dict[str, torch.Tensor] = {}
        # the stem conv on NCHW, then every stage on channels-last (B, H, W, C) activations
        for i in range(4):
            down = self.downsample_layers[i]
            assert isinstance(down, nn.Sequential)  # for the type checker (ModuleList items)
            if i == 0:  # stem: conv then norm
                conv, norm = down[0], down[1]
                assert isinstance(norm, LayerNorm2d)
                x = _layer_norm_nhwc(norm, conv(x).permute(0, 2, 3, 1).contiguous())
            else:  # norm then the stride-2 conv (oneDNN on the channels-last NCHW view)
                norm, conv = down[0], down[1]
                assert isinstance(norm, LayerNorm2d)
                x = _layer_norm_nhwc(norm, x)
                x = conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
            stage = self.stages[i]
            assert isinstance(stage, nn.Sequential)
            for block in stage:
                x = maybe_checkpoint(block, x, enabled=self.cfg.gradient_checkpointing)
            out = _layer_norm_nhwc(getattr(self, f"norm{i}"), x)
            outs[OUT_FEATURES[i]] = channels_first(out)
        return outs


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
