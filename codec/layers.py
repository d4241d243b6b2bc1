"""Small layers the codecs share: GDN (Balle et al. 2016) and a masked convolution.

GDN's gamma product is written as a 1x1 convolution of x**2 so that fvcore counts it as
the MACs it really costs (docs/DESIGN.md, accounting rule 1); its sqrt and divide are
elementwise and counted apart by the profiler.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["GDN", "MaskedConv2d", "LowerBound", "conv", "deconv"]


class LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when x is below the bound but pushed up.

    Balle's trick: a plain clamp would kill the gradient of parameters that fall below the
    bound and freeze them there forever.
    """

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad_output):
        x, bound = ctx.saved_tensors
        pass_through = (x >= bound) | (grad_output < 0)
        return pass_through.type_as(grad_output) * grad_output, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    b = torch.tensor(bound, dtype=x.dtype, device=x.device)
    if torch.jit.is_tracing() or not torch.is_grad_enabled():
        return torch.max(x, b)
    return LowerBound.apply(x, b)


class GDN(nn.Module):
    r"""Generalized divisive normalization, y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2).

    Balle, Laparra, Simoncelli, "Density modeling of images using a generalized normalization
    transformation", ICLR 2016. ``inverse=True`` gives IGDN (multiply instead of divide), used
    by synthesis transforms. beta and gamma are reparametrized as squares with a pedestal so
    they stay non-negative during training, as in the reference implementation.
    """

    _pedestal = 2.0**-36

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self._pedestal))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self._pedestal))

    def effective_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        beta = lower_bound(self.beta, (self.beta_min + self._pedestal) ** 0.5) ** 2 - self._pedestal
        gamma = lower_bound(self.gamma, self._pedestal**0.5) ** 2 - self._pedestal
        return beta, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.effective_params()
        c = gamma.shape[0]  # from the parameter, so pruning gamma[keep][:, keep] and beta[keep] just works
        norm = F.conv2d(x * x, gamma.reshape(c, c, 1, 1), beta)
        norm = torch.sqrt(norm) if self.inverse else torch.rsqrt(norm)
        return x * norm

    @property
    def channels(self) -> int:
        return self.beta.shape[0]

    def extra_repr(self) -> str:
        return f"{self.channels}, inverse={self.inverse}"

    def inference_form(self) -> nn.Module:
        """beta and gamma as they act, computed once (codec.inference)."""
        from codec.inference import InferenceGDN

        with torch.no_grad():
            beta, gamma = self.effective_params()
        return InferenceGDN(beta, gamma, self.inverse, "balle")


class MaskedConv2d(nn.Conv2d):
    """Convolution whose kernel is multiplied by a fixed binary mask (PixelCNN, Minnen 2018).

    ``mask`` is a buffer, so a profiler can tell executed MACs (the whole kernel is
    multiplied, zeros included) from effective MACs (non-zero taps only). ``mask_type`` "A"
    hides the centre and everything after it in raster order, "B" keeps the centre;
    ``mask_type="checkerboard"`` keeps the taps of the other checkerboard colour (He 2021).
    """

    def __init__(self, *args, mask_type: str = "A", **kwargs):
        super().__init__(*args, **kwargs)
        kh, kw = self.kernel_size
        mask = torch.ones(kh, kw)
        if mask_type in ("A", "B"):
            mask[kh // 2, kw // 2 + (mask_type == "B"):] = 0
            mask[kh // 2 + 1:] = 0
        elif mask_type == "checkerboard":
            yy, xx = torch.meshgrid(torch.arange(kh), torch.arange(kw), indexing="ij")
            mask = ((yy + xx + kh // 2 + kw // 2) % 2 == 1).float()
        else:
            raise ValueError(f"MaskedConv2d: unknown mask_type {mask_type!r}; use 'A', 'B' or 'checkerboard'")
        self.mask_type = mask_type
        self.register_buffer("mask", mask.expand_as(self.weight).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def effective_fraction(self) -> float:
        """Share of the executed MACs that multiply a non-zero tap (profiler protocol)."""
        return float(self.mask.mean())


def conv(in_chs: int, out_chs: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """'same'-padded conv that divides the resolution by ``stride``."""
    return nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_chs: int, out_chs: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed conv that multiplies the resolution by ``stride`` exactly."""
    return nn.ConvTranspose2d(
        in_chs, out_chs, kernel_size, stride=stride, output_padding=stride - 1, padding=kernel_size // 2
    )
