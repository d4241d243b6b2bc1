"""Entropy models: the factorized prior for hyper-latents and the Gaussian conditional.

Both expose the two things a codec needs and nothing hidden:

* ``likelihood(...)`` for the training path (rate = -log2 likelihood), and
* the *coding model* for real bitstreams, derived on demand from the current parameters
  (``FactorizedPrior.pmf_table`` and ``GaussianConditional.scale_index``). There is no
  cached "tables updated" state, so a checkpoint fine-tuned or pruned after training can
  never code with stale tables (the CompressAI ``update()`` trap; docs/DESIGN.md, "The Codec contract", entropy models).
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from codec.layers import lower_bound

__all__ = ["FactorizedPrior", "GaussianConditional", "quantize", "rounding", "default_scale_table", "LIKELIHOOD_BOUND"]

#: Lower bound of every likelihood: keeps -log2 finite for symbols the model rules out.
LIKELIHOOD_BOUND = 1e-9


#: what ``quantize(..., "round")`` does instead of hard rounding, inside :func:`rounding`
_ROUNDING: contextvars.ContextVar[Callable[[torch.Tensor], torch.Tensor] | None] = \
    contextvars.ContextVar("codec_entropy_rounding", default=None)


@contextlib.contextmanager
def rounding(fn: Callable[[torch.Tensor], torch.Tensor]):
    """Inside, ``quantize(t, "round", means)`` returns ``fn(t - means) + means`` instead of the
    hard rounding: a differentiable stand-in (straight-through or annealed soft rounding), so
    that the eval-mode ``forward`` of any codec becomes the objective of latent overfitting
    (codec.overfit). Only ``forward`` calls :func:`quantize`; the coding passes round in the
    symbol I/O (codec.coding), so what is coded never depends on this."""
    token = _ROUNDING.set(fn)
    try:
        yield
    finally:
        _ROUNDING.reset(token)


def quantize(y: torch.Tensor, mode: str, means: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize ``y`` around ``means`` (Minnen 2018 codes y - mean).

    ``noise``: additive U(-0.5, 0.5), the differentiable proxy of Balle 2017 (for rates);
    ``ste``: round with a straight-through gradient (for what the synthesis sees);
    ``round``: hard rounding, what the encoder does (inside :func:`rounding`, its stand-in).
    """
    if mode == "noise":
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)
    centred = y - means if means is not None else y
    if mode == "ste":
        q = centred + (torch.round(centred) - centred).detach()
    elif mode == "round":
        stand_in = _ROUNDING.get()
        q = torch.round(centred) if stand_in is None else stand_in(centred)
    else:
        raise ValueError(f"quantize: unknown mode {mode!r}; use 'noise', 'ste' or 'round'")
    return q + means if means is not None else q


class FactorizedPrior(nn.Module):
    """Non-parametric factorized density, one univariate model per channel.

    Balle et al., "Variational image compression with a scale hyperprior", ICLR 2018,
    appendix 6.1: the CDF is a per-channel cascade of small dense layers
    c(x) = sigmoid(f_K o ... o f_1(x)) with f_k(x) = h_k(H_k x + b_k), h_k(x) = x + a_k tanh(x).
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        self.filters = tuple(int(f) for f in filters)
        dims = (1,) + self.filters + (1,)
        scale = init_scale ** (1 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cumulative(self, v: torch.Tensor) -> torch.Tensor:
        # v: (C, 1, n) -> logits of the CDF, (C, 1, n)
        logits = v
        for i in range(len(self.filters) + 1):
            logits = torch.matmul(F.softplus(self.matrices[i]), logits) + self.biases[i]
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i]) * torch.tanh(logits)
        return logits

    def _likelihood_cv(self, v: torch.Tensor) -> torch.Tensor:
        lower = self._logits_cumulative(v - 0.5)
        upper = self._logits_cumulative(v + 0.5)
        # Evaluate in the tail where the sigmoids are not saturated (reference trick).
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def likelihood(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Probability mass of each element of ``z_hat`` (B, C, H, W) under its channel's model."""
        b, c, h, w = z_hat.shape
        if c != self.channels:
            raise ValueError(f"FactorizedPrior: expected {self.channels} channels, got {c}")
        v = z_hat.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lik = self._likelihood_cv(v).reshape(c, b, h, w).permute(1, 0, 2, 3)
        return lower_bound(lik, LIKELIHOOD_BOUND)

    @torch.no_grad()
    def pmf_table(self, bound: int) -> np.ndarray:
        """Coding table: float64 (C, 2*bound+1), the mass of symbols -bound..bound per channel.

        Computed in float32 on the CPU from the current parameters, so encoder and decoder
        derive the identical table.
        """
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in self.parameters()):
            raise RuntimeError("pmf_table: coding runs in float32 on the CPU; call codec.cpu().float() first")
        v = torch.arange(-bound, bound + 1, dtype=torch.float32).expand(self.channels, 1, -1)
        return self._likelihood_cv(v).reshape(self.channels, -1).double().numpy()


def default_scale_table(low: float = 0.11, high: float = 256.0, levels: int = 64) -> tuple[float, ...]:
    """Log-spaced scales, the table of CompressAI / Minnen 2018."""
    return tuple(float(s) for s in np.exp(np.linspace(math.log(low), math.log(high), levels)))


class GaussianConditional(nn.Module):
    """Gaussian conditional p(y | mu, sigma) integrated over unit bins (Balle 2018, Minnen 2018).

    For coding, each scale is rounded *up* to the next entry of ``scale_table`` (given to the
    constructor; a codec that changes it puts it in its architecture config, which travels
    with the checkpoint) and the symbol
    round(y - mu) is coded under N(0, table[idx]). Only the integer table index crosses from
    the network to the coder, which keeps encoder and decoder bit-exact.
    """

    def __init__(self, scale_table: tuple[float, ...] | None = None, scale_bound: float = 0.11):
        super().__init__()
        table = torch.tensor(scale_table if scale_table is not None else default_scale_table(), dtype=torch.float32)
        if table.ndim != 1 or len(table) < 2 or not bool(torch.all(table[1:] > table[:-1])) or table[0] <= 0:
            raise ValueError("GaussianConditional: scale_table must be >= 2 strictly increasing positive values")
        self.register_buffer("scale_table", table, persistent=False)
        self.scale_bound = float(scale_bound)

    def likelihood(self, y_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
        values = y_hat - means if means is not None else y_hat
        scales = lower_bound(scales, self.scale_bound)
        values = torch.abs(values)
        # Phi((0.5 - |v|)/s) - Phi((-0.5 - |v|)/s), evaluated on the lower tail for accuracy.
        upper = 0.5 * torch.erfc(-(0.5 - values) / scales / math.sqrt(2))
        lower = 0.5 * torch.erfc(-(-0.5 - values) / scales / math.sqrt(2))
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    @torch.no_grad()
    def scale_index(self, scales: torch.Tensor) -> torch.Tensor:
        """Index of the smallest table scale >= each scale (clamped to the table), int64.

        Exactly ``torch.searchsorted(table, scales).clamp(0, len(table) - 1)`` for every float32
        (tested), and faster: the bit pattern of a non-negative float32 grows with its value, so
        its top 16 bits pick a bucket whose first index comes from a lookup table, and at most
        ``gap`` comparisons with the table finish the search (gap is 1 for any table whose
        neighbours are more than 1 % apart, as the default one's are). On the CPU the gathers
        run in NumPy, whose indexing is cheaper than PyTorch's advanced indexing here (the
        "scale index" row of ``python -m bench.speed``'s breakdown).
        """
        table = self.scale_table.to(scales.device, torch.float32)
        if torch.jit.is_tracing():  # the profiler's trace: the same indices, through an op it can trace
            return torch.searchsorted(table, scales.float().contiguous(), right=False).clamp_(0, len(table) - 1)
        lookup, padded, gap = self._index_lookup(table)
        s = scales.detach().float().contiguous()
        last = len(table) - 1
        if s.device.type == "cpu":
            a = s.numpy().reshape(-1)
            np_lookup, np_padded = lookup.numpy(), padded.numpy()  # views: no copy
            idx = np_lookup[np.maximum(a.view(np.int32) >> 16, 0)]
            for _ in range(gap):
                idx += np_padded[idx] < a
            np.minimum(idx, last, out=idx)
            nan = np.isnan(a)
            if nan.any():  # searchsorted puts NaN last, whatever its sign bit
                idx[nan] = last
            return torch.from_numpy(idx).reshape(s.shape)
        idx = lookup[(s.view(torch.int32) >> 16).clamp_(min=0)]
        for _ in range(gap):
            idx += padded[idx] < s
        return idx.clamp_(max=last).masked_fill_(torch.isnan(s), last)

    def _index_lookup(self, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(first index per 16-bit bucket, the table with +inf appended, the largest number of
        table entries inside one bucket), cached per table content and device."""
        key = (str(table.device), table.cpu().numpy().tobytes())
        cache = self.__dict__.setdefault("_index_lookups", {})
        if key not in cache:
            edges = (torch.arange(1 << 15, dtype=torch.int32) << 16).view(torch.float32).to(table.device)
            first = torch.searchsorted(table, edges, right=False)
            gap = int((torch.cat((first[1:], first.new_tensor([len(table)]))) - first).max())
            cache.clear()
            cache[key] = (first, torch.cat((table, table.new_tensor([float("inf")]))), gap)
        return cache[key]
