"""rANS coding of the entropy models' symbols with constriction: few coder calls, coding models
built once per model.

:mod:`codec.coding` decides *what* is coded in which order (the symbol I/O protocol); this
module turns one call's symbols into constriction calls, on both sides alike:

* **Factorized prior** (hyper-latent ``z``, symbols ``(C, n)``, channel-major): **one** coder
  call for all channels, with constriction's ``Categorical`` model family and, for each
  symbol, its channel's row of the coding table (:meth:`FactorizedPrior.pmf_table`). With
  ``perfect=False`` a row gives exactly the model ``Categorical(row, perfect=False)`` gives,
  so the bytes are those of one call per channel (tested against that reference). The
  per-symbol rows are cut into calls of at most :data:`MAX_ROW_ENTRIES` entries, so a huge
  bound cannot exhaust memory; at realistic bounds that is one call.
* **Gaussian conditional**: for each scale-table entry s, a ``Categorical`` model over
  ``-B..B`` tabulated from N(0, s) integrated over unit bins, where B is the stream's bound
  rounded up to a power of two (at least :data:`MIN_TABLE_BOUND`), so a handful of tables
  serve every image. The symbols of one call are grouped by scale index (a stable sort: both
  sides know the indices before coding), one coder call per index in use; decoding a
  tabulated categorical model is a table search instead of evaluating a Gaussian quantile per
  symbol. Streams whose bound exceeds :data:`MAX_TABLE_BOUND` (untrained or diverged models)
  fall back to the ``QuantizedGaussian`` family with one standard deviation per symbol, so a
  table never grows without bound; the bound in the header tells the decoder which was used.

**Caching without stale tables** (docs/DESIGN.md, "Speed"): the tables and the constriction
models built from them are cached on the entropy module, keyed by a digest of the *content* of
the tensors they derive from (the prior's parameters, the scale table) and by the bound. A
fine-tuned, pruned or reloaded model has another digest and gets new tables; nothing has to
be "updated" by hand. A copy of a module (``copy.deepcopy``, pickling) starts with an empty
cache. Computing the digest costs microseconds; building the models, milliseconds.
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import Callable, Iterable

import constriction
import numpy as np
import torch

from codec.entropy import FactorizedPrior, GaussianConditional

__all__ = ["encode_factorized", "decode_factorized", "encode_gaussian", "decode_gaussian", "gaussian_table",
           "gaussian_table_bound", "MAX_ROW_ENTRIES", "MIN_TABLE_BOUND", "MAX_TABLE_BOUND"]

#: Most table entries (rows x columns) handed to one factorized coder call (float64: 32 MiB).
MAX_ROW_ENTRIES = 1 << 22
#: Gaussian tables cover -B..B with B the stream's bound rounded up to a power of two, >= this.
MIN_TABLE_BOUND = 16
#: Above this bound the Gaussian symbols are coded with the per-symbol QuantizedGaussian family.
MAX_TABLE_BOUND = 1024


# ------------------------------------------------------------------------------------ caching
class ModelCache:
    """Coding tables and constriction models of one entropy module, least recently used first
    out, keyed by content (see the module docstring). Copies start empty: constriction models
    cannot be copied, and a copy may be changed independently."""

    size = 16

    def __init__(self):
        self._entries: OrderedDict = OrderedDict()

    def get(self, key, build: Callable[[], object]):
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = build()
        self._entries[key] = value
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def __deepcopy__(self, memo) -> "ModelCache":
        return type(self)()

    def __reduce__(self):
        return type(self), ()


def model_cache(module: torch.nn.Module) -> ModelCache:
    """The cache held by an entropy module (a plain attribute, not state: never saved)."""
    cache = module.__dict__.get("_rans_models")
    if cache is None:
        cache = module.__dict__["_rans_models"] = ModelCache()
    return cache


def content_digest(tensors: Iterable[torch.Tensor]) -> bytes:
    """16-byte digest of the shapes, dtypes and values of ``tensors``."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        a = t.detach()
        a = (a if a.device.type == "cpu" else a.cpu()).contiguous()
        h.update(f"{tuple(a.shape)}{a.dtype};".encode())
        h.update(memoryview(a.numpy()).cast("B"))
    return h.digest()


# -------------------------------------------------------------------------- factorized prior
def _factorized_table(prior: FactorizedPrior, bound: int) -> np.ndarray:
    key = ("factorized", bound, content_digest(prior.parameters()))
    return model_cache(prior).get(key, lambda: prior.pmf_table(bound))


def _row_slices(total: int, columns: int) -> list[slice]:
    step = max(1, MAX_ROW_ENTRIES // columns)
    return [slice(start, min(start + step, total)) for start in range(0, total, step)]


def encode_factorized(coder, prior: FactorizedPrior, symbols: np.ndarray, bound: int) -> None:
    """Push ``symbols`` (C, n) in -bound..bound, channel 0 first out; one call unless the
    per-symbol table would exceed :data:`MAX_ROW_ENTRIES`."""
    table = _factorized_table(prior, bound)
    channels, n = symbols.shape
    flat = (symbols + bound).reshape(-1)
    channel = np.repeat(np.arange(channels), n)
    family = constriction.stream.model.Categorical(perfect=False)
    for part in reversed(_row_slices(flat.size, table.shape[1])):  # ANS is a stack
        coder.encode_reverse(flat[part], family, table[channel[part]])


def decode_factorized(coder, prior: FactorizedPrior, channels: int, n: int, bound: int) -> np.ndarray:
    """Pop (C, n) symbols pushed by :func:`encode_factorized`."""
    table = _factorized_table(prior, bound)
    if table.shape[0] != channels:
        raise ValueError(f"factorized prior has {table.shape[0]} channels, the stream needs {channels}")
    channel = np.repeat(np.arange(channels), n)
    family = constriction.stream.model.Categorical(perfect=False)
    parts = [coder.decode(family, table[channel[part]]) for part in _row_slices(channels * n, table.shape[1])]
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    return (flat.astype(np.int32, copy=False) - bound).reshape(channels, n)


# ---------------------------------------------------------------------- Gaussian conditional
def gaussian_table_bound(bound: int) -> int | None:
    """The half-width B of the tables a stream of this bound is coded with; None: the
    per-symbol QuantizedGaussian family (bound above :data:`MAX_TABLE_BOUND`)."""
    if bound > MAX_TABLE_BOUND:
        return None
    return max(MIN_TABLE_BOUND, 1 << (max(1, bound) - 1).bit_length())


def gaussian_table(scales: np.ndarray, half_width: int) -> np.ndarray:
    """Mass of the integers -B..B under N(0, s) for each scale s: float64 (len(scales), 2B+1).

    P(v) = (erfc((|v| - 1/2) / (s sqrt 2)) - erfc((|v| + 1/2) / (s sqrt 2))) / 2: the difference
    of two upper tails, so the far tails keep their relative precision. Evaluated with Python's
    ``math.erfc`` (not a vectorized kernel whose last bits could depend on the CPU's features).
    """
    v = np.abs(np.arange(-half_width, half_width + 1, dtype=np.float64))
    k = 1.0 / (np.asarray(scales, dtype=np.float64)[:, None] * math.sqrt(2.0))
    erfc = np.frompyfunc(math.erfc, 1, 1)
    upper = erfc((v - 0.5) * k).astype(np.float64)
    lower = erfc((v + 0.5) * k).astype(np.float64)
    return 0.5 * (upper - lower)


def _gaussian_models(conditional: GaussianConditional, half_width: int) -> list:
    table = conditional.scale_table
    key = ("gaussian", half_width, content_digest([table]))

    def build():
        pmf = gaussian_table(table.cpu().double().numpy(), half_width)
        return [constriction.stream.model.Categorical(row, perfect=False) for row in pmf]

    return model_cache(conditional).get(key, build)


def _groups(indexes: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order of the symbols by scale index, and the count per index."""
    small = indexes.astype(np.uint8 if levels <= 256 else np.uint16, copy=False)  # radix sort
    return np.argsort(small, kind="stable"), np.bincount(small, minlength=levels)


def encode_gaussian(coder, conditional: GaussianConditional, symbols: np.ndarray, indexes: np.ndarray,
                    bound: int) -> None:
    """Push ``symbols`` (flat, int32, |s| <= bound) with their scale-table ``indexes``."""
    half = gaussian_table_bound(bound)
    if half is None:
        stds = conditional.scale_table.cpu().double().numpy()[indexes]
        family = constriction.stream.model.QuantizedGaussian(-bound, bound)
        coder.encode_reverse(symbols, family, np.zeros_like(stds), stds)
        return
    models = _gaussian_models(conditional, half)
    order, counts = _groups(indexes, len(models))
    grouped = symbols[order] + half
    ends = np.cumsum(counts)
    for i in np.flatnonzero(counts)[::-1]:  # ANS is a stack: the decoder reads index 0 first
        coder.encode_reverse(grouped[ends[i] - counts[i]:ends[i]], models[i])


def decode_gaussian(coder, conditional: GaussianConditional, indexes: np.ndarray, bound: int) -> np.ndarray:
    """Pop the symbols :func:`encode_gaussian` pushed for these ``indexes``; int32, flat."""
    half = gaussian_table_bound(bound)
    if half is None:
        stds = conditional.scale_table.cpu().double().numpy()[indexes]
        family = constriction.stream.model.QuantizedGaussian(-bound, bound)
        return coder.decode(family, np.zeros_like(stds), stds).astype(np.int32, copy=False)
    models = _gaussian_models(conditional, half)
    order, counts = _groups(indexes, len(models))
    parts = [coder.decode(models[i], int(counts[i])) for i in np.flatnonzero(counts)]
    out = np.empty(indexes.size, np.int32)
    if parts:
        out[order] = np.concatenate(parts) - half
    return out


def encode_gaussian_legacy(coder, conditional: GaussianConditional, symbols: np.ndarray, indexes: np.ndarray,
                           bound: int) -> None:
    """The Gaussian coding of format versions 1 and 2: every symbol under constriction's
    QuantizedGaussian over -bound..bound with its table scale. Written only by tests now."""
    stds = conditional.scale_table.cpu().double().numpy()[indexes]
    coder.encode_reverse(symbols, constriction.stream.model.QuantizedGaussian(-bound, bound), np.zeros_like(stds), stds)


def decode_gaussian_legacy(coder, conditional: GaussianConditional, indexes: np.ndarray, bound: int) -> np.ndarray:
    """Decode what :func:`encode_gaussian_legacy` (the builds before format version 3) wrote."""
    stds = conditional.scale_table.cpu().double().numpy()[indexes]
    family = constriction.stream.model.QuantizedGaussian(-bound, bound)
    return coder.decode(family, np.zeros_like(stds), stds).astype(np.int32, copy=False)
