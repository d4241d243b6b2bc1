"""The bitstream container: header, entropy-coded streams, checksums.

Layout (all integers little-endian)::

    magic        4 bytes  b"VMLC"
    version      u8       FORMAT_VERSION
    codec id     u8 length + utf-8 registry name
    config hash  8 bytes  (sha256 of the architecture config, see codec.registry.config_hash)
    height       u32      image size before padding
    width        u32
    streams      u8 count, then per stream: u8 name length + name, u32 symbol bound, u32 byte length
    symbol crc   u32      CRC-32 of every decoded symbol, in decoding order
    [versions 2 and 3]
    flags        u8       bit 0: a rate follows; bit 1: a weights hash follows
    rate         f32      the rate point of a variable-rate codec (gain units, iteration count)
    weights hash 8 bytes  sha256 of the weights (the shipped default model)
    header crc   u32      CRC-32 of every header byte above
    payload      the streams' bytes, concatenated in header order

Versions: 1 (no optional fields) and 2 (flags, never 0) code the Gaussian symbols one by one
under constriction's QuantizedGaussian; 3, what this build writes, codes them with one
categorical table per scale-table entry, grouped by scale index (codec.rans). The layout of 2 and
3 is the same. Every version is read, and decoded with its own Gaussian coding, so streams
written by earlier builds still decode.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

__all__ = ["BitstreamError", "Header", "StreamInfo", "pack", "unpack", "MAGIC", "FORMAT_VERSION", "MAX_SIDE",
           "TABLE_CODING_VERSION"]

MAGIC = b"VMLC"
#: The version written. Versions below :data:`TABLE_CODING_VERSION` use the per-symbol Gaussian coding.
FORMAT_VERSION = 3
TABLE_CODING_VERSION = 3
_FLAG_RATE, _FLAG_WEIGHTS = 1, 2
#: Largest image side a header may announce; guards against allocating for garbage sizes.
MAX_SIDE = 1 << 16


class BitstreamError(ValueError):
    """A bitstream failed a check; the message names which."""


@dataclass(frozen=True)
class StreamInfo:
    name: str
    bound: int
    length: int


@dataclass(frozen=True)
class Header:
    codec: str
    config_hash: bytes
    height: int
    width: int
    streams: tuple[StreamInfo, ...] = field(default_factory=tuple)
    symbol_crc: int = 0
    #: rate point of a variable-rate codec (None: a fixed-rate stream)
    rate: float | None = None
    #: 8-byte hash of the weights that made the stream (None: not recorded)
    weights_hash: bytes | None = None
    #: format version (what a parsed stream was written as; what ``pack`` writes)
    version: int = FORMAT_VERSION


def _name_bytes(name: str, what: str) -> bytes:
    raw = name.encode("utf-8")
    if not 0 < len(raw) < 256:
        raise ValueError(f"bitstream: {what} {name!r} must be 1..255 bytes of utf-8")
    return bytes([len(raw)]) + raw


def pack(header: Header, payloads: list[bytes]) -> bytes:
    """Serialize ``header`` and the stream payloads (lengths are taken from the payloads)."""
    if len(header.config_hash) != 8:
        raise ValueError("bitstream: config hash must be 8 bytes")
    if len(payloads) != len(header.streams):
        raise ValueError("bitstream: one payload per stream")
    if header.weights_hash is not None and len(header.weights_hash) != 8:
        raise ValueError("bitstream: weights hash must be 8 bytes")
    flags = (_FLAG_RATE if header.rate is not None else 0) | (_FLAG_WEIGHTS if header.weights_hash is not None else 0)
    if header.version not in (1, 2, 3) or (header.version == 1 and flags) or (header.version == 2 and not flags):
        raise ValueError(f"bitstream: version {header.version} cannot carry flags {flags:#04x}")
    out = bytearray(MAGIC)
    out += bytes([header.version])
    out += _name_bytes(header.codec, "codec id")
    out += header.config_hash
    out += struct.pack("<II", header.height, header.width)
    out += bytes([len(header.streams)])
    for info, data in zip(header.streams, payloads):
        out += _name_bytes(info.name, "stream name")
        out += struct.pack("<II", info.bound, len(data))
    out += struct.pack("<I", header.symbol_crc & 0xFFFFFFFF)
    if header.version >= 2:
        out += bytes([flags])
        if header.rate is not None:
            out += struct.pack("<f", header.rate)
        if header.weights_hash is not None:
            out += header.weights_hash
    out += struct.pack("<I", zlib.crc32(bytes(out)))
    for data in payloads:
        out += data
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(
                f"bitstream truncated: needed {n} bytes for the {what} at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left ({len(self.data)} bytes in all)"
            )
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def name(self, what: str) -> str:
        n = self.u8(f"{what} length")
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BitstreamError(f"bitstream: {what} is not valid utf-8") from None


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse and check a container; returns the header and the stream payloads."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"bitstream must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise BitstreamError("bitstream is empty (0 bytes)")
    r = _Reader(data)
    magic = r.take(len(MAGIC), "magic")
    if magic != MAGIC:
        raise BitstreamError(f"not a vmuc-lite bitstream: magic is {magic!r}, expected {MAGIC!r}")
    version = r.u8("format version")
    if version not in (1, 2, 3):
        raise BitstreamError(f"unsupported format version {version}; this build reads versions 1 to {FORMAT_VERSION}")
    codec = r.name("codec id")
    config_hash = r.take(8, "config hash")
    height, width = r.u32("height"), r.u32("width")
    n_streams = r.u8("stream count")
    infos = []
    for i in range(n_streams):
        name = r.name(f"stream {i} name")
        bound, length = r.u32(f"stream {i} symbol bound"), r.u32(f"stream {i} length")
        infos.append(StreamInfo(name, bound, length))
    symbol_crc = r.u32("symbol checksum")
    rate = weights_hash = None
    flags = 0
    if version >= 2:
        flags = r.u8("header flags")
        if flags & _FLAG_RATE:
            rate = struct.unpack("<f", r.take(4, "rate"))[0]
        if flags & _FLAG_WEIGHTS:
            weights_hash = r.take(8, "weights hash")
    header_end = r.pos
    header_crc = r.u32("header checksum")
    if zlib.crc32(data[:header_end]) != header_crc:
        raise BitstreamError("header checksum mismatch: the header is damaged")
    if flags & ~(_FLAG_RATE | _FLAG_WEIGHTS) or (version == 2 and not flags):
        raise BitstreamError(f"header flags {flags:#04x} are not valid for format version {version}")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"image size {width}x{height} in the header is out of range 1..{MAX_SIDE}")
    payloads = [r.take(info.length, f"payload of stream {info.name!r}") for info in infos]
    if r.pos != len(data):
        raise BitstreamError(f"{len(data) - r.pos} unexpected bytes after the last stream")
    if rate is not None and not math.isfinite(rate):
        raise BitstreamError(f"rate {rate} in the header is not a finite number")
    header = Header(codec, config_hash, height, width, tuple(infos), symbol_crc, rate, weights_hash, version)
    return header, payloads
