"""detectron2-style Swin Transformer (the ``D2SwinTransformer`` used by Mask2Former / CropFormer).

Differences from timm's Swin that matter for parity: features are zero-padded to a multiple of the
window *inside every block* (after ``norm1``), every odd block is shifted by ``window // 2``
whatever the feature size, the shifted-window mask is built on the padded grid with -100.0, the
patch embedding pads the image to a multiple of the patch size, PatchMerging pads odd sizes, and
res2..res5 are each stage's output *before* downsampling passed through its own ``norm{i}``.

Attribute names equal the official ones (``patch_embed.proj``, ``layers.{s}.blocks.{j}.attn.qkv``,
``layers.{s}.downsample.reduction``, ``norm0..3``), so official ``backbone.*`` keys load as is.
Internally tokens are kept as (B, H, W, C) (channels last); outputs are NCHW.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from entityseg_data.errors import CheckpointError
from entityseg_data.model.backbones.common import Backbone, DropPath, maybe_checkpoint
from entityseg_data.model.backbones.config import OUT_FEATURES, SwinConfig


def relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) int64 index into the (2w-1)^2 bias table, as the official code builds it."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)  # (2, w*w)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ``window`` -> (B, nW, window*window, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, (h // window) * (w // window), window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B, nW, window*window, C) -> (B, H, W, C)."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def shifted_window_mask(
    hp: int, wp: int, window: int, shift: int, device: torch.device | None = None
) -> torch.Tensor:
    """Additive mask (nW, N, N) for shifted windows on a padded (hp, wp) grid: 0 or -100.0."""
    img = torch.zeros((1, hp, wp, 1), device=device)
    cnt = 0
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for hs in slices:
        for ws in slices:
            img[:, hs, ws, :] = cnt
            cnt += 1
    win = window_partition(img, window)[0, :, :, 0]  # (nW, N)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (official names)."""

    def __init__(self, *, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative position bias.

    Input (B, nW, N, C) with N = window**2; optional additive ``mask`` (nW, N, N).
    """

    relative_position_index: torch.Tensor  # buffer (register_buffer)

    def __init__(
        self, *, dim: int, window: int, num_heads: int, qkv_bias: bool, fused: bool
    ) -> None:
        super().__init__()
        self.dim = dim
        self.window = window
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = fused
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias gathered from the table."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, nw, n, c = x.shape
        qkv = self.qkv(x).reshape(b, nw, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (B, nW, heads, N, hd)
        bias = self.position_bias()  # (heads, N, N)
        if self.fused:  # 4-D call (the 5-D one is much slower on CPU)
            if mask is not None:  # (B*nW, heads, N, N)
                bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).repeat(b, 1, 1, 1)
            q, k, v = (t.reshape(b * nw, self.num_heads, n, self.head_dim) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
            out = out.view(b, nw, self.num_heads, n, self.head_dim)
        else:  # the official order of operations
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias
            if mask is not None:
                attn = attn + mask.unsqueeze(1)
            out = attn.softmax(dim=-1) @ v
        out = out.transpose(2, 3).reshape(b, nw, n, c)
        return self.proj(out)


class SwinTransformerBlock(nn.Module):
    """norm1 -> pad to window multiple -> (shift) -> window attention -> unpad, then MLP."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window: int,
        shift: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: float,
        fused: bool,
    ) -> None:
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"shift {shift} must be in [0, window {window})")
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim=dim, window=window, num_heads=num_heads, qkv_bias=qkv_bias, fused=fused
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim=dim, hidden=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, H, W, C); mask: (nW, N, N) for the padded grid (used only when shifted)."""
        h, w = x.shape[1:3]
        ws = self.window
        y = self.norm1(x)
        pad_r = (ws - w % ws) % ws
        pad_b = (ws - h % ws) % ws
        if pad_r or pad_b:
            y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, ws), mask if self.shift else None)
        y = window_reverse(y, ws, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        if pad_r or pad_b:
            y = y[:, :h, :w, :]
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat [x00, x10, x01, x11] -> LN(4C) -> Linear(4C -> 2C, no bias)."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)."""
        h, w = x.shape[1:3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x0 = x[:, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, :]
        x3 = x[:, 1::2, 1::2, :]
        return self.reduction(self.norm(torch.cat([x0, x1, x2, x3], dim=-1)))


class BasicLayer(nn.Module):
    """One stage: ``blocks`` (even: regular windows, odd: shifted) and optional ``downsample``."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_paths: list[float],
        downsample: bool,
        fused: bool,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.window = window
        self.checkpointing = checkpointing
        self.shift = window // 2
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim=dim,
                num_heads=num_heads,
                window=window,
                shift=0 if j % 2 == 0 else self.shift,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=drop_paths[j],
                fused=fused,
            )
            for j in range(depth)
        )
        self.downsample = PatchMerging(dim=dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, H, W, C) -> (stage output (B, H, W, C), input of the next stage)."""
        h, w = x.shape[1:3]
        ws = self.window
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        mask = None
        if len(self.blocks) > 1 and self.shift:
            mask = shifted_window_mask(hp, wp, ws, self.shift, device=x.device).to(x.dtype)
        for blk in self.blocks:
            x = maybe_checkpoint(blk, x, mask, enabled=self.checkpointing)
        down = self.downsample(x) if self.downsample is not None else x
        return x, down


class PatchEmbed(nn.Module):
    """Pad to a multiple of the patch size, Conv2d(k=s=patch), LayerNorm over channels."""

    def __init__(self, *, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, ceil(H/p), ceil(W/p), C) channels last."""
        h, w = x.shape[2:]
        p = self.patch
        if w % p or h % p:
            x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinTransformer(Backbone):
    """D2 Swin backbone: ``forward(x (N,3,H,W)) -> {"res2".."res5": NCHW}``.

    Output sizes: res2 = ceil(H/4) x ceil(W/4), each next level ceil(prev/2).
    """

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__(cfg.out_channels)
        self.cfg = cfg
        self.patch_embed = PatchEmbed(patch=cfg.patch_size, in_chans=3, dim=cfg.embed_dim)
        total = sum(cfg.depths)
        rates = torch.linspace(0, cfg.drop_path_rate, total, device="cpu").tolist()
        self.layers = nn.ModuleList()
        start = 0
        for i, depth in enumerate(cfg.depths):
            self.layers.append(
                BasicLayer(
                    dim=cfg.embed_dim * 2**i,
                    depth=depth,
                    num_heads=cfg.num_heads[i],
                    window=cfg.window_size,
                    mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=cfg.qkv_bias,
                    drop_paths=rates[start : start + depth],
                    downsample=i < len(cfg.depths) - 1,
                    fused=cfg.fused_attention,
                    checkpointing=cfg.gradient_checkpointing,
                )
            )
            start += depth
        for i, name in enumerate(OUT_FEATURES):
            self.add_module(f"norm{i}", nn.LayerNorm(self.out_channels[name]))
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(f"SwinTransformer expects (N, 3, H, W), got {tuple(x.shape)}")
        x = self.patch_embed(x)
        outs: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            out, x = layer(x)
            norm = getattr(self, f"norm{i}")
            outs[OUT_FEATURES[i]] = norm(out).permute(0, 3, 1, 2).contiguous()
        return outs

    def checkpoint_filter(
        self, state_dict: dict[str, torch.Tensor], prefix: str = ""
    ) -> dict[str, torch.Tensor]:
        """Fill missing ``relative_position_index`` buffers, reject ones that differ, drop
        ``attn_mask`` buffers that some Swin checkpoints carry. Keys are ``prefix + name``."""
        out = {
            k: v
            for k, v in state_dict.items()
            if not (k.startswith(prefix) and k.endswith(".attn_mask"))
        }
        for name, buf in self.named_buffers():
            if not name.endswith("relative_position_index"):
                continue
            key = prefix + name
            if key not in out:
                out[key] = buf.clone()
                continue
            got = torch.as_tensor(out[key])
            if tuple(got.shape) != tuple(buf.shape) or not torch.equal(got.long(), buf):
                raise CheckpointError(
                    f"{key}: relative_position_index differs from the one this window size "
                    f"({self.cfg.window_size}) implies (checkpoint shape {tuple(got.shape)}, "
                    f"expected {tuple(buf.shape)})"
                )
        return out


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
