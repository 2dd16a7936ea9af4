"""Small pieces the model's inference fast paths share.

- :func:`cpu_fp32_inference`: the condition of the CPU-only fast paths (float32, no autograd,
  outside autocast). Each path keeps a module-level switch bound to it (e.g.
  ``hornet._filter_by_products``), which benchmarks/bench_fast_paths.py and the bitwise tests
  turn off.
- :func:`plain_linear`: whether a Linear's product may be accumulated into a prepared sum.
- :func:`add_product_`: ``total += x @ weight.T`` in place, as one ``addmm`` (the residual or
  folded bias written first: no separate bias copy or sum pass).
- :class:`PackedWeights` and :func:`packed_linear`: a product as one oneDNN call on a weight
  packed once per module (``torch.ops.mkldnn``, the ops Inductor's CPU fusion emits), with the
  bias and optionally the GELU in its epilogue (:func:`onednn_linear_available` says whether
  this torch build has them; :func:`onednn_packed_enabled` whether they are asked for: opt-in,
  ``ENTITYSEG_ONEDNN_PACKED=1``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn


def cpu_fp32_inference(x: Tensor) -> bool:
    """``x`` is a CPU float32 tensor and neither autograd nor CPU autocast is on."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
    )


def plain_linear(proj: nn.Module, x: Tensor) -> bool:
    """``proj(x)`` may be written as a product accumulated into a prepared sum: a plain float
    ``nn.Linear`` with a bias, of ``x``'s dtype, outside autocast (a dynamically quantized
    Linear keeps its own call)."""
    dev = x.device.type
    return (
        type(proj) is nn.Linear
        and proj.bias is not None
        and not (dev in ("cpu", "cuda") and torch.is_autocast_enabled(dev))
        and x.is_floating_point()
        and x.dtype == proj.weight.dtype
    )


def add_product_(total: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``total (..., out) += x (..., in) @ weight (out, in).T`` in place; ``total`` contiguous.
    ``addmm(out=)`` rather than ``addmm_``: the same kernel, and FLOP counters see it."""
    flat = total.view(-1, total.shape[-1])
    torch.addmm(flat, x.reshape(-1, x.shape[-1]), weight.t(), out=flat)
    return total


def onednn_linear_available() -> bool:
    """PyTorch's oneDNN linear with a fused epilogue (``torch.ops.mkldnn._linear_pointwise``,
    the op Inductor's CPU fusion emits) and its weight packing exist and are enabled."""
    return (
        torch.backends.mkldnn.is_available()
        and bool(torch.backends.mkldnn.enabled)
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


#: Environment variable that turns the packed oneDNN products on (``1``); off by default.
PACKED_ENV = "ENTITYSEG_ONEDNN_PACKED"


def onednn_packed_enabled() -> bool:
    """The packed oneDNN products are asked for (``ENTITYSEG_ONEDNN_PACKED=1``) and available.

    Off by default: they make CropFormer HorNet-L 2.5-5 % faster at 800x1067 on one thread,
    but 4-image 12 MP folders peaked at 3.83-3.99 GB with them against 3.62-3.71 without, too
    close to the 4 GB bound (they fragment the tuned heap further; the decoder's packed
    key/value projections, the largest share, were removed in session 16: docs/benchmarks.md,
    issue 17, sessions 15-16)."""
    value = os.environ.get(PACKED_ENV, "").strip().lower()
    return value in ("1", "true", "yes", "on") and onednn_linear_available()


class PackedWeights:
    """A module's oneDNN-packed copies of weights, each rebuilt when a tensor it was made from
    changes (version counter, storage or shape). Kept out of pickles and deep copies (packed
    tensors are opaque: they cannot be serialized, and a copy rebuilds them on first use)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[object, ...], Tensor]] = {}

    def __getstate__(self) -> dict[str, object]:
        return {"_entries": {}}

    def __deepcopy__(self, memo: dict[int, object]) -> PackedWeights:
        return PackedWeights()

    def get(
        self, name: str, sources: tuple[Tensor, ...], weight: Callable[[], Tensor], rows: int
    ) -> Tensor:
        """``weight()`` (out, in), made from ``sources`` and packed for oneDNN, kept under
        ``name``; ``rows``: the batch size hint used when it is (re)packed (the packed layout
        serves any number of rows)."""
        key = tuple((t._version, t.data_ptr(), tuple(t.shape), t.device) for t in sources)
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            with torch.no_grad():
                w = weight().contiguous()
                entry = (key, torch.ops.mkldnn._reorder_linear_weight(w, max(1, rows)))
            self._entries[name] = entry
        return entry[1]


def packed_linear(
    x: Tensor,
    packed: Tensor,
    bias: Tensor | None,
    *,
    act: Literal["none", "relu", "gelu"] = "none",
    add: Tensor | None = None,
) -> Tensor:
    """``act(x (..., in) @ W.T + bias)``, or with ``add`` (..., out) ``x @ W.T + bias + add``,
    as one oneDNN call, ``packed`` = :meth:`PackedWeights.get` of W (out, in): the bias, the
    activation (GELU: the exact erf form) or the sum are in the product's epilogue (no bias
    copy, no separate pass over the output). For :func:`packed_inference` inputs; the caller
    checks."""
    if add is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, add, packed, bias, "add")
    if act == "gelu":
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, act, [], "")


def linear_packed(
    cache: PackedWeights,
    name: str,
    proj: nn.Linear,
    x: Tensor,
    *,
    act: Literal["none", "relu", "gelu"] = "none",
    add: Tensor | None = None,
) -> Tensor:
    """:func:`packed_linear` of a plain ``nn.Linear`` whose weight ``cache`` keeps packed under
    ``name``."""
    weight = cache.get(name, (proj.weight,), lambda: proj.weight, rows_of(x))
    return packed_linear(x, weight, proj.bias, act=act, add=add)


def packed_inference(x: Tensor) -> bool:
    """The condition of the packed products: :func:`cpu_fp32_inference` and
    :func:`onednn_packed_enabled`. The paths' switches (``hornet._packed_products``,
    ``pixel_decoder._packed_ffn``) are bound to it."""
    return cpu_fp32_inference(x) and onednn_packed_enabled()


def packable(proj: nn.Module, x: Tensor) -> bool:
    """``proj(x)`` may run as :func:`linear_packed`: a plain float32 ``nn.Linear`` with a bias,
    and :func:`packed_inference`."""
    return plain_linear(proj, x) and packed_inference(x)


def rows_of(x: Tensor) -> int:
    """The number of rows of ``x`` (..., in) seen as a matrix."""
    return x.numel() // max(1, x.shape[-1])
