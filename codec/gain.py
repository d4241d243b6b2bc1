"""Gain units: one model for every rate point (Cui et al., "Asymmetric gained deep image
compression with continuous rate adaptation", CVPR 2021).

A variable-rate codec trained at K rate points (``rates``: the loss's lambdas or betas, one per
point) holds K learned per-channel gain vectors for the latent ``y`` and K inverse-gain vectors::

    encoder:  y = g_a(x) * gain[r]          (everything downstream, h_a and the entropy
                                             model included, sees the scaled latent)
    decoder:  x_hat = g_s(y_hat * inverse_gain[r])

A rate ``r`` in [0, K-1] between two trained points l = floor(r) and l + 1 interpolates
exponentially, ``gain = gain[l]^(1-t) * gain[l+1]^t`` with t = r - l (the paper's eq. 9), which is
linear interpolation of the log-gains kept here as the parameters (gains stay positive).

Gains start at ``sqrt(rate_k / rate_mid)`` (inverse gains at the reciprocal): with an MSE
distortion the best quantization step scales with ``1 / sqrt(lambda)``, so each point starts
near its own operating point instead of all points starting equal and separating at the pace
of the optimizer. The scaling is elementwise work: the profiler counts it as free
(docs/DESIGN.md, kMAC/px accounting) and its report says so.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["GainUnits", "check_rates", "check_rate"]


def check_rates(rates) -> tuple[float, ...]:
    """A codec's ``rates`` config: >= 2 finite positive numbers, strictly increasing."""
    if isinstance(rates, (str, bytes)) or not hasattr(rates, "__len__"):
        raise ValueError(f"rates must be a list of loss weights (betas or lambdas), got {rates!r}")
    try:
        values = tuple(float(r) for r in rates)
    except (TypeError, ValueError):
        raise ValueError(f"rates must be numbers, got {list(rates)!r}") from None
    if len(values) < 2:
        raise ValueError(f"rates needs at least 2 rate points for a variable-rate codec, got {list(values)}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"rates must be finite positive numbers, got {list(values)}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"rates must be strictly increasing (rate point 0 is the lowest rate), got {list(values)}")
    return values


def check_rate(rate, points: int, name: str = "codec") -> float:
    """A rate point in [0, points - 1] as the float32 value the bitstream header stores."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: rate must be a number in [0, {points - 1}], got {rate!r}") from None
    r32 = float(torch.tensor(r, dtype=torch.float32))
    if not math.isfinite(r) or not 0 <= r32 <= points - 1:
        raise ValueError(f"{name}: rate {rate} is outside [0, {points - 1}] (its {points} trained rate points; "
                         f"integers are the trained points, values between interpolate)")
    return r32


class GainUnits(nn.Module):
    """K gain and K inverse-gain vectors over ``channels`` latent channels (log domain)."""

    def __init__(self, rates: tuple[float, ...], channels: int):
        super().__init__()
        rates = check_rates(rates)
        mid = rates[len(rates) // 2]
        init = torch.tensor([0.5 * math.log(r / mid) for r in rates], dtype=torch.float32)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, channels))
        self.log_inverse_gain = nn.Parameter(-init[:, None].repeat(1, channels))

    @property
    def points(self) -> int:
        return self.log_gain.shape[0]

    def _interpolate(self, table: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        """Per-sample gains (B, C, 1, 1) for rates (B,) in [0, K-1]."""
        rate = rate.to(table.device, table.dtype).clamp(0, self.points - 1)
        low = rate.floor().long().clamp(max=self.points - 2)
        t = (rate - low.to(rate.dtype))[:, None]
        log = table[low] * (1 - t) + table[low + 1] * t
        return torch.exp(log)[:, :, None, None]

    def forward(self, t: torch.Tensor, rate: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """``y * gain(rate)`` (encoder), or with ``inverse`` ``y_hat * inverse_gain(rate)``
        (decoder); ``rate`` holds one rate per batch element."""
        return t * self._interpolate(self.log_inverse_gain if inverse else self.log_gain, rate)
