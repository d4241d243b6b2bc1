"""The Codec contract every model of vmuc-lite follows (docs/DESIGN.md, "The Codec contract").

::

    compress(x)   = pad -> encoder_pass(x, SymbolRecorder) -> rANS -> container bytes
    decompress(b) = container -> decoder_pass(BitstreamDecoder, size) -> crop

* ``parts`` names the real submodules and the side(s) that run them; the profiler
  attributes MACs by these names.
* ``forward(x)`` is the training path: returns ``x_hat``, the ``likelihoods`` per latent and
  named intermediate tensors (``taps``) that distillation reads.
* ``encoder_pass`` / ``decoder_pass`` are exactly the neural work of each side, every
  context step included; the symbol I/O object (codec.coding) is the only door to the coder,
  so the profiler can trace the very code ``decompress`` runs, with a replay in its place.
* variable rate (``rates`` in the config; codec.gain): ``with codec.at_rate(r):`` selects the rate
  point every pass runs at; ``compress(x, rate=r)`` writes r into the header, ``decompress``
  reads it back. Codecs scale ``y`` with :meth:`Codec.gain_y` after the analysis and
  :meth:`Codec.ungain_y` before the synthesis, which are the identity for fixed-rate models.
* latents: codecs compute ``y`` and ``z`` through :meth:`Codec.analysis_latent`, so :meth:`Codec.latents`
  reads them and ``with codec.given_latents(y=..., z=...):`` codes others (codec.overfit).
"""
from __future__ import annotations

import contextlib
import enum
from typing import ClassVar, TypedDict

import torch
import torch.nn as nn

from codec.bitstream import TABLE_CODING_VERSION, BitstreamError, Header, pack, unpack
from codec.coding import BitstreamDecoder, SymbolRecorder

__all__ = ["Codec", "Side", "CodecOutput"]


class Side(str, enum.Enum):
    ENCODER = "encoder"
    DECODER = "decoder"
    BOTH = "both"

    def runs_on(self, side: str) -> bool:
        return self is Side.BOTH or self.value == side


class CodecOutput(TypedDict):
    x_hat: torch.Tensor
    likelihoods: dict[str, torch.Tensor]
    taps: dict[str, torch.Tensor]


@contextlib.contextmanager
def coding_threads():
    """Run the coding passes on one thread, then restore the caller's setting.

    oneDNN's convolutions give results that differ in the last ulp with the thread count; a
    scale that crosses a table boundary would then break decoding (the symbol CRC would catch
    it, but the image would be lost). One thread makes encoder and decoder agree on any machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Codec(nn.Module):
    """Base class: subclasses declare ``parts`` and ``stride`` and implement the three passes.

    ``registry_name`` and ``config`` are set by :func:`codec.registry.create_codec`; together
    they rebuild the exact architecture (pruned widths included) without reading weights.
    """

    #: part name -> side that runs it; each name must be a submodule attribute.
    parts: ClassVar[dict[str, Side]] = {}
    #: the input is padded to a multiple of this (product of the transforms' strides).
    stride: ClassVar[int] = 64

    registry_name: str = "unregistered"
    config: dict = {}
    #: trained rate points (loss weights) of a variable-rate model; None: fixed rate
    rates: tuple[float, ...] | None = None
    _rate: torch.Tensor | float | None = None
    #: True when the MACs of the passes depend on the rate (toderici: the iteration count); the
    #: profiler then reports every trained rate (python -m profiling, profile["by_rate"])
    cost_depends_on_rate: ClassVar[bool] = False

    @property
    def gain_channels(self) -> int | None:
        """Channels of ``y`` that gain units scale; None: the codec has no gain units."""
        return None

    # -- subclasses implement --------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> CodecOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def encoder_pass(self, x: torch.Tensor, io) -> None:  # pragma: no cover - abstract
        """Neural work of ``compress`` on a padded 1x3xHxW image; symbols go through ``io``."""
        raise NotImplementedError

    def decoder_pass(self, io, size: tuple[int, int]) -> torch.Tensor:  # pragma: no cover - abstract
        """Neural work of ``decompress`` for a padded size (H, W); returns the padded x_hat."""
        raise NotImplementedError

    # -- variable rate -------------------------------------------------------------------------
    def enable_variable_rate(self, rates) -> None:
        """Add gain units for ``rates`` (called by the registry for a config with ``rates``)."""
        from codec.gain import GainUnits, check_rates

        if self.gain_channels is None:
            raise ValueError(f"{type(self).__name__} has no gain units: the 'rates' config key is not available for it")
        self.rates = check_rates(rates)
        self.gain = GainUnits(self.rates, self.gain_channels)
        self.parts = {**type(self).parts, "gain": Side.BOTH}

    @property
    def rate_points(self) -> int | None:
        """K, the number of trained rate points; None for a fixed-rate model."""
        return None if self.rates is None else len(self.rates)

    def check_rate(self, rate) -> float | None:
        """The rate a stream is coded at, as the header stores it; refuses what the model cannot do."""
        from codec.gain import check_rate

        points = self.rate_points
        if rate is None:
            if points is not None:
                raise ValueError(f"{self.registry_name} is a variable-rate model ({points} rate points): "
                                 f"give a rate in [0, {points - 1}]")
            return None
        if points is None:
            raise ValueError(f"{self.registry_name} is a fixed-rate model: it takes no rate (got {rate})")
        return check_rate(rate, points, self.registry_name)

    def trained_rates(self) -> list[float | None]:
        """The rates validation and the bench measure by default: every trained point
        ([None] for a fixed-rate model)."""
        return [None] if self.rate_points is None else [float(i) for i in range(self.rate_points)]

    def bench_rates(self) -> list[float | None]:
        """The rates the bench draws a variable-rate curve at by default: every trained point
        and the midpoints between them."""
        if self.rate_points is None:
            return [None]
        return [i / 2 for i in range(2 * self.rate_points - 1)]

    def rate_lmbda(self, rate: float) -> float | None:
        """The loss weight a rate stands for: the trained point's, or between two points the
        log-linear interpolation that the gains interpolate alike (None without gain units)."""
        if self.rates is None:
            return None
        rate = self.check_rate(rate)
        low = min(int(rate), len(self.rates) - 2)
        t = rate - low
        return float(self.rates[low] ** (1 - t) * self.rates[low + 1] ** t)

    def default_rate(self) -> float | None:
        """The rate ``compress`` uses when the caller names none: the middle trained point."""
        return None if self.rate_points is None else float(self.rate_points // 2)

    @contextlib.contextmanager
    def at_rate(self, rate):
        """Run every pass inside at ``rate``: a number, or a tensor with one rate per batch
        element (training draws one per crop), or None (no rate: what fixed-rate models run at).
        Restores the previous rate on exit."""
        if rate is not None and not torch.is_tensor(rate):
            rate = self.check_rate(rate)
        before, self._rate = self._rate, rate
        try:
            yield
        finally:
            self._rate = before

    def _batch_rate(self, t: torch.Tensor) -> torch.Tensor:
        if self._rate is None:
            raise RuntimeError(f"{self.registry_name} is a variable-rate model: run it inside "
                               f"`with model.at_rate(r):` (r in [0, {len(self.rates) - 1}])")
        rate = self._rate if torch.is_tensor(self._rate) else torch.tensor([self._rate], dtype=torch.float32)
        if rate.numel() not in (1, t.shape[0]):
            raise ValueError(f"{rate.numel()} rates for a batch of {t.shape[0]}")
        return rate.reshape(-1).expand(t.shape[0]).to(t.device)

    def gain_y(self, y: torch.Tensor) -> torch.Tensor:
        """The analysis output scaled for the current rate (identity for a fixed-rate model)."""
        return y if self.rates is None else self.gain(y, self._batch_rate(y))

    def ungain_y(self, y_hat: torch.Tensor) -> torch.Tensor:
        """The decoded latent rescaled for the synthesis (identity for a fixed-rate model)."""
        return y_hat if self.rates is None else self.gain(y_hat, self._batch_rate(y_hat), inverse=True)

    # -- latents (codec.overfit) ---------------------------------------------------------------
    #: set inside :meth:`given_latents`: name -> the tensor :meth:`analysis_latent` returns
    _given_latents: dict[str, torch.Tensor] | None = None
    #: set inside :meth:`latents`: what :meth:`analysis_latent` computed, by name
    _recorded_latents: dict[str, torch.Tensor] | None = None

    def analysis_latent(self, name: str, compute) -> torch.Tensor:
        """An analysis output, by name: ``"y"``, the analysis output after :meth:`gain_y` (what
        every later part reads), and ``"z"``, the hyper-analysis output. Codecs compute them
        through this call in ``forward`` and ``encoder_pass``, e.g.
        ``y = self.analysis_latent("y", lambda: self.gain_y(self.g_a(x)))``, so that latent overfitting
        (codec.overfit) can read them (:meth:`latents`) and put its own in their place
        (:meth:`given_latents`) without running the transforms they replace, and without hooks."""
        if self._given_latents is not None and name in self._given_latents:
            return self._given_latents[name]
        value = compute()
        if self._recorded_latents is not None:
            self._recorded_latents[name] = value
        return value

    @contextlib.contextmanager
    def _eval_mode(self):
        """Eval mode inside; afterwards exactly the submodules that were training train again
        (one pass over the modules: ``eval()`` then ``train(was)`` cost a recursive walk each,
        on every ``compress`` / ``decompress``)."""
        training = [m for m in self.modules() if m.training]
        for m in training:
            m.training = False
        try:
            yield
        finally:
            for m in training:
                m.training = True

    @torch.no_grad()
    def latents(self, x: torch.Tensor, rate=None) -> dict[str, torch.Tensor]:
        """The analysis outputs the encoder codes for one image (1x3xHxW in [0, 1], padded as
        ``compress`` pads it) at ``rate``: ``{"y": ..., "z": ...}`` (``{"y": ...}`` for a codec
        without hyper-latent; empty for a codec that does not compute them through :meth:`analysis_latent`)."""
        before = self._recorded_latents
        self._recorded_latents = recorded = {}
        try:
            with self._eval_mode():
                self.encode_symbols(x, rate)
        finally:
            self._recorded_latents = before
        return {name: t.detach().clone() for name, t in recorded.items()}

    @contextlib.contextmanager
    def given_latents(self, **latents: torch.Tensor):
        """Inside, every pass uses these tensors (``y=``, ``z=``, as :meth:`latents` names them) in
        place of the analysis outputs: ``compress`` codes them, ``reconstruct`` and ``forward``
        start from them. The decoder never computes them, so it is unchanged."""
        before, self._given_latents = self._given_latents, {**(self._given_latents or {}), **latents}
        try:
            yield
        finally:
            self._given_latents = before

    # -- shared ------------------------------------------------------------------------------
    def check_parts(self) -> None:
        for name in self.parts:
            if not isinstance(getattr(self, name, None), nn.Module):
                raise TypeError(f"{type(self).__name__}.parts names {name!r}, which is not a submodule")

    def parts_on(self, side: str) -> list[str]:
        return [name for name, s in self.parts.items() if s.runs_on(side)]

    def check_forward_input(self, x: torch.Tensor) -> None:
        """``forward`` works on padded batches (training crops are multiples of the stride)."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(
                f"{self.registry_name}.forward takes Bx3xHxW with H and W multiples of {self.stride}, got "
                f"{tuple(x.shape)}; pad with codec.image.pad_to_stride or pick crops that are multiples of {self.stride}"
            )

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        s = self.stride
        return -(-height // s) * s, -(-width // s) * s

    def _check_image(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.registry_name}: compress takes one RGB image as a 1x3xHxW tensor, got {shape}")
        if not torch.is_floating_point(x):
            raise ValueError(f"{self.registry_name}: image must be float in [0, 1], got {x.dtype}")

    def _check_coding_device(self) -> None:
        p = next(self.parameters())
        if p.device.type != "cpu" or p.dtype != torch.float32:
            raise RuntimeError(
                f"{self.registry_name}: entropy parameters must be computed in float32 on the CPU for a "
                f"bit-exact decoder (docs/DESIGN.md); call codec.cpu().float() before compress/decompress"
            )

    def config_hash(self) -> bytes:
        from codec.registry import config_hash

        return config_hash(self.registry_name, self.config)

    @torch.no_grad()
    def encode_symbols(self, x: torch.Tensor, rate=None) -> tuple[SymbolRecorder, tuple[int, int]]:
        """Pad and run the encoder pass at ``rate``; returns the recorder and the padded size."""
        from codec.image import pad_to_stride

        self._check_image(x)
        rate = self.check_rate(rate)
        xp, _ = pad_to_stride(x.float().clamp(0, 1), self.stride)
        recorder = SymbolRecorder()
        with coding_threads(), self.at_rate(rate):
            self.encoder_pass(xp, recorder)
        return recorder, tuple(xp.shape[-2:])

    #: 8-byte hash of the weights, written into the header when set (the shipped default model)
    weights_hash: bytes | None = None

    @torch.no_grad()
    def compress(self, x: torch.Tensor, rate=None) -> bytes:
        """Entropy-code one image (1x3xHxW in [0, 1]) into a self-describing bitstream; a
        variable-rate model takes the ``rate`` (in [0, K-1]) and writes it into the header."""
        self._check_coding_device()
        rate = self.check_rate(rate)
        with self._eval_mode():
            recorder, _ = self.encode_symbols(x, rate)
            infos, payloads = recorder.to_streams()
        header = Header(self.registry_name, self.config_hash(), int(x.shape[-2]), int(x.shape[-1]),
                        tuple(infos), recorder.symbol_crc(), rate, self.weights_hash)
        return pack(header, payloads)

    @torch.no_grad()
    def decompress(self, data: bytes) -> torch.Tensor:
        """Decode a bitstream of this codec into a 1x3xHxW image in [0, 1]."""
        from codec.image import crop

        self._check_coding_device()
        header, payloads = unpack(data)
        if header.codec != self.registry_name:
            raise BitstreamError(f"bitstream was made by codec {header.codec!r}, this model is {self.registry_name!r}")
        if header.config_hash != self.config_hash():
            raise BitstreamError(
                f"bitstream was made by a {header.codec!r} with another architecture config "
                f"(hash {header.config_hash.hex()}, this model {self.config_hash().hex()}): load the matching checkpoint"
            )
        if self.weights_hash is not None and header.weights_hash not in (None, self.weights_hash):
            raise BitstreamError(f"bitstream was made by {header.codec!r} weights {header.weights_hash.hex()}, "
                                 f"this model has weights {self.weights_hash.hex()}")
        if (header.rate is None) != (self.rate_points is None):
            raise BitstreamError(f"bitstream is {'fixed' if header.rate is None else 'variable'}-rate, "
                                 f"this {self.registry_name} is {'fixed' if self.rate_points is None else 'variable'}-rate")
        try:
            rate = self.check_rate(header.rate)
        except ValueError as e:
            raise BitstreamError(f"bitstream header: {e}") from None
        reader = BitstreamDecoder(header.streams, payloads, legacy_gaussian=header.version < TABLE_CODING_VERSION)
        with self._eval_mode(), coding_threads(), self.at_rate(rate):
            x_hat = self.decoder_pass(reader, self.padded_size(header.height, header.width))
        reader.finish(header.symbol_crc)
        return crop(x_hat, (header.height, header.width)).clamp_(0, 1)  # x_hat is this call's own

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, rate=None) -> tuple[torch.Tensor, SymbolRecorder]:
        """The encoder-side reconstruction: encoder pass, then the decoder pass on the same
        symbols without any coder. ``decompress(compress(x, rate))`` must equal it exactly."""
        from codec.image import crop

        rate = self.check_rate(rate)
        with self._eval_mode():
            recorder, size = self.encode_symbols(x, rate)
            with coding_threads(), self.at_rate(rate):
                x_hat = self.decoder_pass(recorder.replay(), size)
        return crop(x_hat, tuple(x.shape[-2:])).clamp(0, 1), recorder
