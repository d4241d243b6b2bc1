"""Symbol I/O between a codec's neural passes and the entropy coder (constriction).

A codec's ``encoder_pass`` and ``decoder_pass`` never call the coder themselves; they hand
latents and entropy parameters to a *symbol I/O* object through these calls::

    z_hat = io.factorized(stream, prior, z, shape)     # z is None on the decoder side
    y_hat = io.gaussian(stream, conditional, y, scales, means)
    b = io.binary(stream, binarizer, t, shape)         # binary codes (toderici); t is None on the decoder side

Three implementations:

* :class:`SymbolRecorder` (encoder side): rounds, records symbols and scale indices, returns
  the quantized values. ``to_streams()`` then entropy-codes everything with rANS.
* :class:`BitstreamDecoder` (decoder side): decodes the symbols from the streams on demand,
  which is what lets context models (checkerboard, progressive steps) decode step by step.
* :class:`SymbolReplay` (decoder side, no coder): returns symbols recorded by an encoder run.
  The profiler traces ``decoder_pass`` with it, so it measures exactly the neural work a real
  decode does, and tests compare a real decode against it bit for bit.

Rounding convention: symbol = round(y - mu), y_hat = symbol + mu (Minnen 2018); the coder
sees N(0, table[idx]) over the integers -bound..bound, where bound is the largest |symbol| of
the stream, stored in the header, so no symbol is ever clipped. How the symbols of each call
become constriction calls (one call for the factorized prior, tabulated Gaussian models built
once per model) is :mod:`codec.rans`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import constriction
import numpy as np
import torch

from codec import rans
from codec.bitstream import BitstreamError, StreamInfo
from codec.entropy import FactorizedPrior, GaussianConditional

__all__ = ["SymbolRecorder", "BitstreamDecoder", "SymbolReplay", "MAX_FACTORIZED_BOUND", "MAX_GAUSSIAN_BOUND",
           "PROBABILITY_LEVELS"]

#: The factorized prior's coding table has 2*bound+1 columns per channel; cap its size.
MAX_FACTORIZED_BOUND = 4096
MAX_GAUSSIAN_BOUND = 1 << 20
#: Binary codes: P(bit = 1) of each channel of a call is q / PROBABILITY_LEVELS, q in 1..LEVELS-1,
#: estimated from the call's own bits by the encoder and stored (8 bits each) ahead of them.
PROBABILITY_LEVELS = 256


@dataclass
class _Call:
    stream: str
    kind: str  # "factorized" | "gaussian" | "binary"
    module: torch.nn.Module
    symbols: np.ndarray  # int32; factorized: (C, n), gaussian: flat
    indexes: np.ndarray | None  # gaussian: scale-table indexes, flat; binary: probability levels per channel


def _symbols_crc(crc: int, symbols: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(symbols, dtype="<i4").tobytes(), crc)


def _channels_first(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (C, B*H*W): the layout coded per channel by the factorized prior."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


def _from_channels_first(flat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    b, c, h, w = shape
    return flat.reshape(c, b, h, w).transpose(0, 1).contiguous()


def _bit_levels(symbols: np.ndarray) -> np.ndarray:
    """Per channel of binary codes (C, n) in {-1, 1}: q = round(LEVELS x ones / n) in 1..LEVELS-1."""
    ones = (symbols > 0).sum(axis=1)
    return np.clip(np.rint(ones * PROBABILITY_LEVELS / symbols.shape[1]), 1, PROBABILITY_LEVELS - 1).astype(np.int32)


def _encode_binary(coder, symbols: np.ndarray, q: np.ndarray) -> None:
    """Binary codes (C, n) in {-1, 1}: first the C levels q (uniform), then each channel's bits
    under Bernoulli(q / LEVELS). Exact on both sides: only the integers q reach the decoder, and
    they are in the symbol CRC (a damaged q can decode the same bits, e.g. a constant channel)."""
    bits = (symbols > 0).astype(np.int32)
    for c in reversed(range(bits.shape[0])):  # ANS is a stack: the decoder reads q, then channel 0, 1, ...
        coder.encode_reverse(bits[c], constriction.stream.model.Bernoulli(q[c] / PROBABILITY_LEVELS, perfect=False))
    coder.encode_reverse(q, constriction.stream.model.Uniform(PROBABILITY_LEVELS))


class SymbolRecorder:
    """Encoder-side symbol I/O: quantizes, records, and finally entropy-codes."""

    decoding = False

    def __init__(self):
        self.calls: list[_Call] = []

    def factorized(self, stream: str, prior: FactorizedPrior, z: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        if tuple(z.shape) != tuple(shape):
            raise ValueError(f"factorized({stream!r}): z has shape {tuple(z.shape)}, the codec announced {tuple(shape)}")
        z_hat = torch.round(z)
        sym = _channels_first(z_hat).to("cpu", torch.int32).numpy()
        self.calls.append(_Call(stream, "factorized", prior, sym, None))
        return z_hat

    def gaussian(self, stream: str, conditional: GaussianConditional, y: torch.Tensor,
                 scales: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
        if scales.shape != y.shape or (means is not None and means.shape != y.shape):
            raise ValueError(f"gaussian({stream!r}): y, scales and means must have one shape, "
                             f"got {tuple(y.shape)}, {tuple(scales.shape)}, {None if means is None else tuple(means.shape)}")
        sym = torch.round(y - means) if means is not None else torch.round(y)
        idx = conditional.scale_index(scales)
        self.calls.append(_Call(stream, "gaussian", conditional, sym.reshape(-1).to("cpu", torch.int32).numpy(),
                                idx.reshape(-1).cpu().numpy()))
        return sym + means if means is not None else sym

    def binary(self, stream: str, binarizer: torch.nn.Module, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Binary codes (Toderici 2017): sign of ``t`` in {-1, 1} (0 -> 1), coded per channel."""
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"binary({stream!r}): codes have shape {tuple(t.shape)}, the codec announced {tuple(shape)}")
        b = torch.where(t >= 0, 1.0, -1.0).to(t.dtype)
        sym = _channels_first(b).to("cpu", torch.int32).numpy()
        self.calls.append(_Call(stream, "binary", binarizer, sym, _bit_levels(sym)))
        return b

    def symbol_crc(self) -> int:
        crc = 0
        for call in self.calls:
            crc = _symbols_crc(crc, call.symbols)
            if call.kind == "binary":
                crc = _symbols_crc(crc, call.indexes)
        return crc

    def replay(self) -> "SymbolReplay":
        return SymbolReplay([(c.stream, c.kind, c.symbols) for c in self.calls])

    def to_streams(self, legacy_gaussian: bool = False) -> tuple[list[StreamInfo], list[bytes]]:
        """rANS-code the recorded symbols: one coder per stream, calls coded in reverse so the
        decoder reads them forwards (ANS is a stack)."""
        order: list[str] = []
        for call in self.calls:
            if call.stream not in order:
                order.append(call.stream)
        infos, payloads = [], []
        for name in order:
            calls = [c for c in self.calls if c.stream == name]
            kinds = {c.kind for c in calls}
            if len(kinds) != 1:
                raise ValueError(f"stream {name!r} mixes {sorted(kinds)} symbols; give each kind its own stream")
            bound = max(1, max(int(np.abs(c.symbols).max(initial=0)) for c in calls))
            limit = MAX_FACTORIZED_BOUND if calls[0].kind == "factorized" else MAX_GAUSSIAN_BOUND
            if bound > limit:
                raise ValueError(f"stream {name!r}: a latent symbol of magnitude {bound} exceeds the coder's "
                                 f"limit {limit}; the model is untrained or diverged")
            coder = constriction.stream.stack.AnsCoder()
            for call in reversed(calls):
                if call.kind == "binary":
                    _encode_binary(coder, call.symbols, call.indexes)
                    continue
                if call.kind == "factorized":
                    rans.encode_factorized(coder, call.module, call.symbols, bound)
                else:
                    encode = rans.encode_gaussian_legacy if legacy_gaussian else rans.encode_gaussian
                    encode(coder, call.module, call.symbols, call.indexes, bound)
            data = coder.get_compressed().astype("<u4").tobytes()
            infos.append(StreamInfo(name, bound, len(data)))
            payloads.append(data)
        return infos, payloads


class BitstreamDecoder:
    """Decoder-side symbol I/O reading from entropy-coded streams."""

    decoding = True

    def __init__(self, infos: tuple[StreamInfo, ...], payloads: list[bytes], legacy_gaussian: bool = False):
        #: streams of format versions 1 and 2 code Gaussian symbols one by one (codec.bitstream)
        self._legacy_gaussian = bool(legacy_gaussian)
        self._bounds = {}
        self._coders = {}
        for info, data in zip(infos, payloads):
            if info.name in self._coders:
                raise BitstreamError(f"stream {info.name!r} appears twice in the header")
            if len(data) % 4:
                raise BitstreamError(f"stream {info.name!r} is {len(data)} bytes, not a whole number of 32-bit words")
            if not 1 <= info.bound <= MAX_GAUSSIAN_BOUND:
                raise BitstreamError(f"stream {info.name!r}: symbol bound {info.bound} out of range")
            try:
                self._coders[info.name] = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
            except Exception as e:  # constriction rejects some invalid word sequences up front
                raise BitstreamError(f"stream {info.name!r} is not a valid rANS stream: {e}") from None
            self._bounds[info.name] = info.bound
        self._crc = 0

    def _coder(self, stream: str):
        if stream not in self._coders:
            raise BitstreamError(f"the codec expects a stream {stream!r}, the header has {sorted(self._coders)}")
        return self._coders[stream], self._bounds[stream]

    def factorized(self, stream: str, prior: FactorizedPrior, z: None, shape: torch.Size) -> torch.Tensor:
        coder, bound = self._coder(stream)
        if bound > MAX_FACTORIZED_BOUND:
            raise BitstreamError(f"stream {stream!r}: symbol bound {bound} exceeds {MAX_FACTORIZED_BOUND}")
        n = int(np.prod(shape)) // shape[1]
        try:
            sym = rans.decode_factorized(coder, prior, shape[1], n, bound)
        except Exception as e:
            raise BitstreamError(f"stream {stream!r} could not be decoded: {e}") from None
        self._crc = _symbols_crc(self._crc, sym)
        device = next(prior.parameters()).device
        return _from_channels_first(torch.from_numpy(sym).to(device, torch.float32), shape)

    def gaussian(self, stream: str, conditional: GaussianConditional, y: None,
                 scales: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
        coder, bound = self._coder(stream)
        idx = conditional.scale_index(scales).reshape(-1).cpu().numpy()
        try:
            decode = rans.decode_gaussian_legacy if self._legacy_gaussian else rans.decode_gaussian
            sym = decode(coder, conditional, idx, bound)
        except Exception as e:
            raise BitstreamError(f"stream {stream!r} could not be decoded: {e}") from None
        self._crc = _symbols_crc(self._crc, sym)
        values = torch.from_numpy(sym).to(scales.device, torch.float32).reshape(scales.shape)
        return values + means if means is not None else values

    def binary(self, stream: str, binarizer: torch.nn.Module, t: None, shape: torch.Size) -> torch.Tensor:
        coder, bound = self._coder(stream)
        if bound != 1:
            raise BitstreamError(f"stream {stream!r}: symbol bound {bound}, binary codes have bound 1")
        channels = shape[1]
        n = int(np.prod(shape)) // channels
        try:
            q = coder.decode(constriction.stream.model.Uniform(PROBABILITY_LEVELS), channels).astype(np.int32)
            if q.min(initial=1) < 1:
                raise BitstreamError(f"stream {stream!r}: a bit probability of 0, which no encoder writes")
            rows = [coder.decode(constriction.stream.model.Bernoulli(q[c] / PROBABILITY_LEVELS, perfect=False), n)
                    .astype(np.int32) for c in range(channels)]
        except BitstreamError:
            raise
        except Exception as e:
            raise BitstreamError(f"stream {stream!r} could not be decoded: {e}") from None
        sym = 2 * np.stack(rows) - 1 if rows else np.zeros((0, n), np.int32)
        self._crc = _symbols_crc(_symbols_crc(self._crc, sym), q)
        device = next(binarizer.parameters()).device
        return _from_channels_first(torch.from_numpy(sym).to(device, torch.float32), shape)

    @property
    def symbol_crc(self) -> int:
        """CRC-32 of the symbols decoded so far (what a header of a stream cut here holds)."""
        return self._crc

    def finish(self, expected_crc: int) -> None:
        """Check that every stream was consumed exactly and the symbols match the encoder's."""
        for name, coder in self._coders.items():
            if not coder.is_empty():
                raise BitstreamError(f"stream {name!r} has data left after decoding: it is damaged or from another model")
        if self._crc != expected_crc:
            raise BitstreamError(
                f"symbol checksum mismatch (decoded {self._crc:08x}, header says {expected_crc:08x}): "
                "the payload is damaged, or the encoder and decoder computed different entropy parameters"
            )


class SymbolReplay:
    """Decoder-side symbol I/O that returns symbols recorded by an encoder run (no coder)."""

    decoding = True

    def __init__(self, recorded: list[tuple[str, str, np.ndarray]], all_zeros: bool = False):
        self._recorded = list(recorded)
        self._pos = 0
        self._all_zeros = all_zeros

    @classmethod
    def zeros(cls) -> "SymbolReplay":
        """A replay that returns all-zero symbols: neural work of a decode without an encode."""
        return cls([], all_zeros=True)

    def _next(self, stream: str, kind: str, n: int) -> np.ndarray:
        if self._all_zeros:
            return np.zeros(n, dtype=np.int32)
        if self._pos >= len(self._recorded):
            raise RuntimeError("SymbolReplay: the decoder asked for more symbol blocks than the encoder recorded")
        name, rec_kind, sym = self._recorded[self._pos]
        self._pos += 1
        if (name, rec_kind) != (stream, kind) or sym.size != n:
            raise RuntimeError(f"SymbolReplay: decoder asked for {kind} {stream!r} x{n}, "
                               f"encoder recorded {rec_kind} {name!r} x{sym.size}")
        return sym

    def factorized(self, stream: str, prior: FactorizedPrior, z: None, shape: torch.Size) -> torch.Tensor:
        sym = self._next(stream, "factorized", int(np.prod(shape))).reshape(shape[1], -1)
        device = next(prior.parameters()).device
        return _from_channels_first(torch.from_numpy(np.ascontiguousarray(sym)).to(device, torch.float32), shape)

    def gaussian(self, stream: str, conditional: GaussianConditional, y: None,
                 scales: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
        sym = self._next(stream, "gaussian", scales.numel())
        values = torch.from_numpy(np.ascontiguousarray(sym)).to(scales.device, torch.float32).reshape(scales.shape)
        return values + means if means is not None else values

    def binary(self, stream: str, binarizer: torch.nn.Module, t: None, shape: torch.Size) -> torch.Tensor:
        sym = self._next(stream, "binary", int(np.prod(shape))).reshape(shape[1], -1)
        device = next(binarizer.parameters()).device
        return _from_channels_first(torch.from_numpy(np.ascontiguousarray(sym)).to(device, torch.float32), shape)
