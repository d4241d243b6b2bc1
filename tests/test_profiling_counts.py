"""Hand-computed MAC counts, one layer kind per test (fvcore's tests/test_flop_count.py style).

Each expected figure is derived from the layer's definition, independently of the counter:
a conv pays C_out x C_in/groups x k_h x k_w per *output* position, a transposed conv pays
C_in x C_out/groups x k_h x k_w per *input* position.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from fvcore.nn import jit_analysis
from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS

from codec.layers import GDN, MaskedConv2d
from profiling import COUNTED_OPS, ELEMENTWISE_OPS, FREE_OPS, SHAPE_OPS, ProfileError, count_module


def macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    return count_module(module, tuple(inputs)).total_macs


def test_conv():
    x = torch.rand(1, 3, 10, 12)
    assert macs(nn.Conv2d(3, 8, 3, padding=1), x) == 8 * 3 * 3 * 3 * 10 * 12


def test_conv_batch():
    x = torch.rand(2, 3, 10, 12)
    assert macs(nn.Conv2d(3, 8, 3, padding=1), x) == 2 * 8 * 3 * 3 * 3 * 10 * 12


def test_strided_conv():
    conv = nn.Conv2d(4, 6, 5, stride=2, padding=2)
    x = torch.rand(1, 4, 17, 20)
    h_out, w_out = (17 + 4 - 5) // 2 + 1, (20 + 4 - 5) // 2 + 1  # 9 x 10
    assert conv(x).shape[-2:] == (h_out, w_out)
    assert macs(conv, x) == 6 * 4 * 5 * 5 * h_out * w_out


def test_transposed_conv_with_output_padding():
    deconv = nn.ConvTranspose2d(6, 4, 5, stride=2, padding=2, output_padding=1)
    x = torch.rand(1, 6, 7, 9)
    assert deconv(x).shape[-2:] == (14, 18)
    # every input position multiplies the whole C_out x k x k kernel of each input channel
    assert macs(deconv, x) == 6 * 4 * 5 * 5 * 7 * 9


def test_grouped_transposed_conv():
    deconv = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    x = torch.rand(1, 8, 5, 5)
    assert macs(deconv, x) == 8 * (6 // 2) * 3 * 3 * 5 * 5


def test_depthwise_conv():
    x = torch.rand(1, 8, 10, 10)
    assert macs(nn.Conv2d(8, 8, 3, padding=1, groups=8), x) == 8 * 3 * 3 * 10 * 10


def test_grouped_conv():
    x = torch.rand(1, 8, 10, 10)
    assert macs(nn.Conv2d(8, 12, 3, padding=1, groups=4), x) == 12 * (8 // 4) * 3 * 3 * 10 * 10


def test_pointwise_conv():
    x = torch.rand(1, 16, 5, 7)
    assert macs(nn.Conv2d(16, 32, 1), x) == 16 * 32 * 5 * 7


def test_functional_conv_outside_any_module_counts():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.rand(5, 3, 3, 3))

        def forward(self, x):
            return F.conv2d(x, self.w, padding=1)

    assert macs(Bare(), torch.rand(1, 3, 6, 6)) == 5 * 3 * 9 * 36


def test_gdn_gamma_product_counts_and_its_sqrt_divide_do_not():
    c, h, w = 6, 8, 8
    for inverse in (False, True):
        count = count_module(GDN(c, inverse=inverse), (torch.rand(1, c, h, w),))
        assert count.total_macs == c * c * h * w  # the 1x1 gamma conv over x**2
        ops = {k for k in count.by_operator if k.startswith("ew:")}
        assert {"ew:mul", "ew:sqrt" if inverse else "ew:rsqrt"} <= ops
        assert count.elementwise_ops[""] >= 3 * c * h * w  # x*x, (r)sqrt, x*norm


@pytest.mark.parametrize("mask_type, taps", [("A", 12), ("B", 13), ("checkerboard", 12)])
def test_masked_conv_executed_vs_effective(mask_type, taps):
    conv = MaskedConv2d(4, 6, 5, padding=2, mask_type=mask_type)
    assert int(conv.mask[0, 0].sum()) == taps
    count = count_module(conv, (torch.rand(1, 4, 8, 8),))
    assert count.total_macs == 6 * 4 * 25 * 64  # executed: the zero taps are multiplied too
    assert count.effective_macs[""] == pytest.approx(6 * 4 * taps * 64)


def test_effective_fraction_is_taken_from_the_innermost_module():
    class HalfNeeded(nn.Module):
        """A context block that evaluates the whole grid when half of it is needed."""

        def __init__(self):
            super().__init__()
            self.plain = nn.Conv2d(4, 4, 3, padding=1)
            self.masked = MaskedConv2d(4, 4, 5, padding=2, mask_type="A")

        def forward(self, x):
            return self.masked(self.plain(x))

        def effective_fraction(self):
            return 0.5

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = HalfNeeded()
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.head(self.block(x))

    count = count_module(Net(), (torch.rand(1, 4, 6, 6),))
    plain, masked, head = 4 * 4 * 9 * 36, 4 * 4 * 25 * 36, 4 * 2 * 36
    assert count.total_macs == plain + masked + head
    assert count.effective_macs["block.masked"] == pytest.approx(masked * 12 / 25)
    assert count.effective_macs["block"] == pytest.approx(plain * 0.5 + masked * 12 / 25)
    assert count.effective_macs[""] == pytest.approx(plain * 0.5 + masked * 12 / 25 + head)


def test_effective_fraction_out_of_range_is_an_error():
    class Bad(nn.Conv2d):
        def effective_fraction(self):
            return 1.5

    with pytest.raises(ProfileError, match=r"\[0, 1\]"):
        count_module(Bad(2, 2, 1), (torch.rand(1, 2, 3, 3),))


def test_pixel_shuffle_is_free():
    net = nn.Sequential(nn.Conv2d(4, 16, 1), nn.PixelShuffle(2), nn.PixelUnshuffle(2))
    count = count_module(net, (torch.rand(1, 4, 6, 6),))
    assert count.total_macs == 4 * 16 * 36
    assert count.elementwise_ops[""] == 0
    assert "aten::pixel_shuffle" in SHAPE_OPS and "aten::pixel_unshuffle" in SHAPE_OPS


def test_channel_shuffle_by_reshape_is_free():
    class Shuffle(nn.Module):
        def forward(self, x):
            b, c, h, w = x.shape
            return x.reshape(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)

    count = count_module(Shuffle(), (torch.rand(1, 8, 4, 4),))
    assert count.total_macs == 0 and count.elementwise_ops[""] == 0


def test_linear():
    assert macs(nn.Linear(10, 7), torch.rand(3, 10)) == 3 * 10 * 7
    assert macs(nn.Linear(10, 7), torch.rand(2, 5, 10)) == 2 * 5 * 10 * 7


def test_matmul_bmm_einsum():
    class MatMul(nn.Module):
        def forward(self, a, b):
            return a @ b

    class Bmm(nn.Module):
        def forward(self, a, b):
            return torch.bmm(a, b)

    class Einsum(nn.Module):
        def forward(self, a, b):
            return torch.einsum("bij,bjk->bik", a, b)

    assert macs(MatMul(), torch.rand(4, 3, 5), torch.rand(5, 2)) == 4 * 3 * 5 * 2
    assert macs(MatMul(), torch.rand(3, 5), torch.rand(4, 5, 2)) == 4 * 3 * 5 * 2  # broadcast batch
    assert macs(Bmm(), torch.rand(4, 3, 5), torch.rand(4, 5, 2)) == 4 * 3 * 5 * 2
    assert macs(Einsum(), torch.rand(4, 3, 5), torch.rand(4, 5, 2)) == 4 * 3 * 5 * 2


def test_a_module_called_twice_counts_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.context = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.context(self.context(x))

    count = count_module(Twice(), (torch.rand(1, 4, 5, 5),))
    assert count.calls["context"] == 2
    assert count.macs["context"] == 2 * 4 * 4 * 9 * 25 == count.total_macs


def test_elementwise_ops_are_counted_not_dropped():
    class Elementwise(nn.Module):
        def forward(self, x):
            return torch.clamp(torch.relu(torch.round(torch.abs(x))), max=3.0)

    x = torch.rand(1, 2, 3, 4) * 5
    count = count_module(Elementwise(), (x,))
    for op in ("abs", "round", "relu", "clamp"):
        assert count.by_operator[f"ew:{op}"] == x.numel(), op  # fvcore itself ignores relu and clamp
    assert count.total_macs == 0


def test_unclassified_op_fails_loudly_in_strict_mode():
    class Sorts(nn.Module):
        def forward(self, x):
            return torch.sort(x, dim=-1).values

    with pytest.raises(ProfileError, match="aten::sort"):
        count_module(Sorts(), (torch.rand(2, 5),), strict=True)
    count = count_module(Sorts(), (torch.rand(2, 5),), strict=False)
    assert count.unsupported_ops == {"aten::sort": 1}
    assert any("aten::sort" in p for p in count.problems)


def test_work_that_escapes_the_trace_is_caught():
    class Escapes(nn.Module):
        """A conv whose result leaves only through .item(): the tracer drops it, the CPU does not."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            gain = float(self.conv(x).mean().item())
            return x * gain

    with pytest.raises(ProfileError, match="escapes the trace"):
        count_module(Escapes(), (torch.rand(1, 3, 6, 6),), strict=True)


def test_custom_autograd_function_is_not_silently_free():
    class Hidden(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            return F.conv2d(x, w, padding=1)

        @staticmethod
        def backward(ctx, g):  # pragma: no cover
            raise NotImplementedError

    class UsesFunction(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.rand(3, 3, 3, 3))

        def forward(self, x):
            return Hidden.apply(x, self.w)

    with pytest.raises(ProfileError, match="PythonOp"):
        count_module(UsesFunction(), (torch.rand(1, 3, 6, 6),), strict=True)


def test_op_tables_are_disjoint_and_cover_what_fvcore_knows():
    assert not COUNTED_OPS & FREE_OPS
    assert not ELEMENTWISE_OPS & SHAPE_OPS
    assert FREE_OPS == ELEMENTWISE_OPS | SHAPE_OPS
    # fvcore's own handles and ignore list: each must be classified here, or it would vanish
    known = set(_DEFAULT_SUPPORTED_OPS) | jit_analysis._IGNORED_OPS
    assert not known - COUNTED_OPS - FREE_OPS
    for op in ("aten::_convolution", "aten::linear", "aten::matmul", "aten::einsum", "aten::bmm", "aten::addmm"):
        assert op in COUNTED_OPS
    for op in ("aten::round", "aten::abs", "aten::rsqrt", "aten::sqrt", "aten::relu", "aten::searchsorted"):
        assert op in ELEMENTWISE_OPS
