"""``model.layout``: channels-last -> channels-first copies in row blocks, bitwise the plain
``permute(...).contiguous()`` / ``copy_`` in every case, and the blocked path really taken where
it applies (and not with autograd)."""

from __future__ import annotations

import pytest
import torch

from entityseg_data.model import layout


@pytest.fixture
def blocked_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Shapes of the (B, C, N) sources that went through the blocked copy."""
    calls: list[tuple[int, ...]] = []
    real = layout._copy_rows_transposed

    def spy(dst: torch.Tensor, src: torch.Tensor) -> None:
        calls.append(tuple(src.shape))
        real(dst, src)

    monkeypatch.setattr(layout, "_copy_rows_transposed", spy)
    return calls


@pytest.mark.parametrize(
    "shape, channels",
    [
        ((1, 50, 68, 1440), slice(720, None)),  # HorNet's global-filter half
        ((2, 37, 41, 192), slice(None)),  # rows not a multiple of the block, B > 1
        ((1, 25, 34, 3072), slice(None, 1536)),  # wide channels: the minimum block of rows
        ((1, 200, 272, 3), slice(None)),  # narrow channels: long blocks
    ],
)
def test_channels_first_is_the_plain_copy(
    shape: tuple[int, ...], channels: slice, blocked_calls: list
) -> None:
    x = torch.randn(shape)[..., channels]
    got = layout.channels_first(x)
    want = x.permute(0, 3, 1, 2).contiguous()
    assert got.is_contiguous() and got.shape == want.shape
    assert torch.equal(got, want)
    assert len(blocked_calls) == 1  # the blocked path, not the fallback


def test_channels_first_falls_back_where_blocks_do_not_apply(blocked_calls: list) -> None:
    small = torch.randn(1, 8, 8, 16)  # fewer values than a block
    crop = torch.randn(1, 300, 300, 64)[:, 10:250, 20:290]  # H and W do not merge
    bf16 = torch.randn(1, 60, 70, 96).to(torch.bfloat16)
    for x in (small, crop):
        assert torch.equal(layout.channels_first(x), x.permute(0, 3, 1, 2).contiguous())
    assert blocked_calls == []
    assert torch.equal(layout.channels_first(bf16), bf16.permute(0, 3, 1, 2).contiguous())
    assert len(blocked_calls) == 1  # any dtype


def test_channels_first_with_autograd_keeps_the_graph(blocked_calls: list) -> None:
    x = torch.randn(1, 40, 50, 64, requires_grad=True)
    y = layout.channels_first(x)
    assert blocked_calls == []  # the plain copy: autograd sees one op
    (y * torch.arange(64.0).view(1, 64, 1, 1)).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.arange(64.0).expand(1, 40, 50, 64))
    with torch.no_grad():
        layout.channels_first(x)
    assert len(blocked_calls) == 1


def test_copy_channels_first_into_a_batch_slot(blocked_calls: list) -> None:
    tokens = torch.randn(1, 100 * 136, 256)  # the encoder's (N, S, C) output
    src = tokens.transpose(1, 2).reshape(1, 256, 100, 136)  # a channels-last view
    batch = torch.full((3, 256, 100, 136), float("nan"))
    out = layout.copy_channels_first_(batch[1:2], src)
    assert out.data_ptr() == batch[1:2].data_ptr()
    assert torch.equal(batch[1:2], src.contiguous())
    assert batch[0].isnan().all() and batch[2].isnan().all()  # nothing else written
    assert len(blocked_calls) == 1
    # an already channels-first source: the plain copy
    plain = torch.randn(1, 256, 100, 136)
    layout.copy_channels_first_(batch[2:3], plain)
    assert torch.equal(batch[2:3], plain) and len(blocked_calls) == 1
