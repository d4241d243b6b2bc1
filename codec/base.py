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
"""
from __future__ import annotations

import contextlib
import enum
from typing import ClassVar, TypedDict

import torch
import torch.nn as nn

from codec.bitstream import BitstreamError, Header, pack, unpack
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

    # -- subclasses implement --------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> CodecOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def encoder_pass(self, x: torch.Tensor, io) -> None:  # pragma: no cover - abstract
        """Neural work of ``compress`` on a padded 1x3xHxW image; symbols go through ``io``."""
        raise NotImplementedError

    def decoder_pass(self, io, size: tuple[int, int]) -> torch.Tensor:  # pragma: no cover - abstract
        """Neural work of ``decompress`` for a padded size (H, W); returns the padded x_hat."""
        raise NotImplementedError

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
    def encode_symbols(self, x: torch.Tensor) -> tuple[SymbolRecorder, tuple[int, int]]:
        """Pad and run the encoder pass; returns the recorder and the padded size."""
        from codec.image import pad_to_stride

        self._check_image(x)
        xp, _ = pad_to_stride(x.float().clamp(0, 1), self.stride)
        recorder = SymbolRecorder()
        with coding_threads():
            self.encoder_pass(xp, recorder)
        return recorder, tuple(xp.shape[-2:])

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> bytes:
        """Entropy-code one image (1x3xHxW in [0, 1]) into a self-describing bitstream."""
        self._check_coding_device()
        was_training = self.training
        self.eval()
        try:
            recorder, _ = self.encode_symbols(x)
            infos, payloads = recorder.to_streams()
        finally:
            self.train(was_training)
        header = Header(self.registry_name, self.config_hash(), int(x.shape[-2]), int(x.shape[-1]),
                        tuple(infos), recorder.symbol_crc())
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
        reader = BitstreamDecoder(header.streams, payloads)
        was_training = self.training
        self.eval()
        try:
            with coding_threads():
                x_hat = self.decoder_pass(reader, self.padded_size(header.height, header.width))
        finally:
            self.train(was_training)
        reader.finish(header.symbol_crc)
        return crop(x_hat, (header.height, header.width)).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, SymbolRecorder]:
        """The encoder-side reconstruction: encoder pass, then the decoder pass on the same
        symbols without any coder. ``decompress(compress(x))`` must equal it exactly."""
        from codec.image import crop

        was_training = self.training
        self.eval()
        try:
            recorder, size = self.encode_symbols(x)
            with coding_threads():
                x_hat = self.decoder_pass(recorder.replay(), size)
        finally:
            self.train(was_training)
        return crop(x_hat, tuple(x.shape[-2:])).clamp(0, 1), recorder
