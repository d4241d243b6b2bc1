"""The default model that ships with the package: ``python -m codec compress IN OUT`` and
``python -m codec decompress IN OUT`` work with no checkpoint argument.

The weights live in ``codec/assets/*.ckpt``: ordinary checkpoints (codec.checkpoint) whose
state dict is stored in float16 (a few MB; loading casts them back to float32, and coding always
runs in float32 on the CPU, so the float16 rounding is part of the model, not a coding error).
A shipped model writes an 8-byte hash of its weights into every stream's header (bitstream
format version 2). ``decompress`` without ``--checkpoint`` finds the shipped model whose codec,
config hash and weights hash match the header. A stream from a model that is not shipped is a
clear error naming that model.

``python -m codec ship --checkpoint CKPT`` writes a trained checkpoint as the default model.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from codec.base import Codec
from codec.bitstream import BitstreamError, Header

__all__ = ["ASSETS", "DEFAULT_CHECKPOINT", "weights_hash", "load_shipped", "default_model", "model_for_stream",
           "ship"]

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "default.ckpt"


def weights_hash(model: Codec) -> bytes:
    """8 bytes of sha256 over the state dict (names, shapes and float32 values, in key order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.digest()[:8]


def load_shipped(path: str | Path = DEFAULT_CHECKPOINT) -> tuple[Codec, dict]:
    """A shipped checkpoint as a coding model (float32, eval) that names its weights in headers."""
    from codec.checkpoint import CheckpointError, load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no default model at {path}: this installation ships none; pass --checkpoint CKPT "
                              f"(or write one with python -m codec ship --checkpoint CKPT)")
    model, blob = load_checkpoint(path)
    model = model.float().eval()
    model.weights_hash = weights_hash(model)
    return model, blob


def default_model() -> tuple[Codec, dict]:
    return load_shipped(DEFAULT_CHECKPOINT)  # read at call time: tests point it elsewhere


def model_for_stream(header: Header, assets: Path | None = None) -> Codec:
    """The shipped model that made a stream, by codec id, config hash and weights hash (among
    the checkpoints in ``assets``, default :data:`ASSETS`)."""
    assets = ASSETS if assets is None else assets
    if header.weights_hash is None:
        raise BitstreamError(f"the stream was made by a {header.codec!r} (config {header.config_hash.hex()}) that "
                             f"does not name its weights, i.e. not by a shipped model: pass --checkpoint CKPT")
    for path in sorted(Path(assets).glob("*.ckpt")):
        model, _ = load_shipped(path)
        if (model.registry_name, model.config_hash(), model.weights_hash) == \
                (header.codec, header.config_hash, header.weights_hash):
            return model
    raise BitstreamError(f"the stream was made by {header.codec!r} with config {header.config_hash.hex()} and weights "
                         f"{header.weights_hash.hex()}, which is not among the models shipped here ({assets}): "
                         f"pass its checkpoint with --checkpoint CKPT")


def ship(checkpoint: str | Path, out: str | Path = DEFAULT_CHECKPOINT, note: dict | None = None) -> tuple[Path, bytes]:
    """Write ``checkpoint`` as a shipped model: its config, float16 weights and provenance.
    Returns the path and the weights hash its streams will carry."""
    from codec.checkpoint import file_sha256, load_checkpoint, save_checkpoint

    model, blob = load_checkpoint(checkpoint)
    meta = {"source": str(checkpoint), "source_sha256": file_sha256(checkpoint), "source_step": blob.get("step"),
            "weights": "float16", "trained": (blob.get("meta") or {}).get("config"), **(note or {})}
    half = model.half()
    path = save_checkpoint(out, half, meta=meta)
    shipped, _ = load_shipped(path)
    return path, shipped.weights_hash
