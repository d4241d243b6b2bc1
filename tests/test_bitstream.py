"""Every corruption gives BitstreamError: never a hang, a crash, or a silently wrong image."""
from __future__ import annotations

import random

import pytest
import torch

from codec.bitstream import BitstreamError, unpack
from codec.registry import create_codec


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_codec("mean_scale_hyperprior", N=8, M=12).eval()


@pytest.fixture(scope="module")
def stream(model):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 40, 24, generator=g)
    return model.compress(x)


def test_truncation_at_every_byte(model, stream):
    for k in range(len(stream)):
        with pytest.raises(BitstreamError):
            model.decompress(stream[:k])


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _regions(stream):
    header, payloads = unpack(stream)
    payload_start = len(stream) - sum(len(p) for p in payloads)
    # version 3: symbol crc (4 bytes), flags (1), [rate (4)], [weights hash (8)], header crc (4)
    optional = 1 + (4 if header.rate is not None else 0) + (8 if header.weights_hash is not None else 0)
    crc_at = payload_start - 8 - optional
    return payload_start, crc_at


def test_every_flipped_bit_is_detected(model, stream):
    payload_start, crc_at = _regions(stream)
    regions = {"header": range(0, crc_at), "checksums": range(crc_at, payload_start),
               "payload": range(payload_start, len(stream))}
    # The regions cover every byte of the stream exactly once, in order, and none is empty;
    # every stream has payload bytes, so each one's coder sees damage.
    assert [i for r in regions.values() for i in r] == list(range(len(stream)))
    assert all(len(r) > 0 for r in regions.values()), {k: len(r) for k, r in regions.items()}
    assert len(regions["checksums"]) == 9  # symbol crc, flags, header crc
    _, payloads = unpack(stream)
    assert len(payloads) >= 2 and all(payloads), [len(p) for p in payloads]
    for region, byte_range in regions.items():
        for bit in range(byte_range.start * 8, byte_range.stop * 8):
            damaged = _flip(stream, bit)
            with pytest.raises(BitstreamError) as caught:
                model.decompress(damaged)
            # Each region is caught by the check meant for it: a damaged header or checksum by
            # the container before anything is decoded, a damaged payload by the decoder.
            if region == "payload":
                unpack(damaged)
            else:
                with pytest.raises(BitstreamError):
                    unpack(damaged)
            if region == "checksums":
                assert "header checksum mismatch" in str(caught.value), (bit, str(caught.value))


def test_stream_of_another_codec_or_config(model, stream):
    other_config = create_codec("mean_scale_hyperprior", N=8, M=16).eval()
    with pytest.raises(BitstreamError, match="another architecture config"):
        other_config.decompress(stream)
    other_codec = create_codec("hyperprior", N=8, M=12).eval()
    with pytest.raises(BitstreamError, match="made by codec 'mean_scale_hyperprior'"):
        other_codec.decompress(stream)


def test_other_weights_same_config_are_detected(stream):
    torch.manual_seed(123)
    other_weights = create_codec("mean_scale_hyperprior", N=8, M=12).eval()
    with pytest.raises(BitstreamError):
        other_weights.decompress(stream)


def test_random_bytes_and_empty(model, stream):
    rng = random.Random(0)
    with pytest.raises(BitstreamError, match="empty"):
        model.decompress(b"")
    for n in (1, 4, 17, 64, 500):
        with pytest.raises(BitstreamError):
            model.decompress(bytes(rng.randrange(256) for _ in range(n)))
    # valid magic and version, random rest
    for n in (10, 40, 200):
        with pytest.raises(BitstreamError):
            model.decompress(stream[:5] + bytes(rng.randrange(256) for _ in range(n)))
    with pytest.raises(BitstreamError, match="bytes"):
        model.decompress("not bytes")


def test_trailing_garbage(model, stream):
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        model.decompress(stream + b"\x00")
