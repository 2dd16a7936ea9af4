"""Small pieces the model's inference fast paths share.

- :func:`cpu_fp32_inference`: the condition of the CPU-only fast paths (float32, no autograd,
  outside autocast). Each path keeps a module-level switch bound to it (e.g.
  ``hornet._filter_by_products``), which benchmarks/bench_fast_paths.py and the bitwise tests
  turn off.
- :func:`plain_linear`: whether a Linear's product may be accumulated into a prepared sum.
- :func:`add_product_`: ``total += x @ weight.T`` in place, as one ``addmm`` (the residual or
  folded bias written first: no separate bias copy or sum pass).
"""

from __future__ import annotations

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
