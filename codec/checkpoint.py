"""Checkpoints: registry name + full architecture config + state dict + training metadata.

Saved with ``torch.save`` but made only of tensors and JSON-like values, and loaded with
``torch.load(weights_only=True)``: no pickled classes, no Hydra needed. The architecture is
rebuilt from the config (pruned widths included) and only then are weights loaded, strictly.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from codec.base import Codec
from codec.registry import create_codec

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "CheckpointError", "CHECKPOINT_FORMAT",
           "file_sha256", "training_lmbda"]

CHECKPOINT_FORMAT = "vmuc-lite-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the codec it names."""


def save_checkpoint(path: str | os.PathLike, model: Codec, meta: dict | None = None, **extra) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves a broken file.

    ``extra`` holds training state (optimizer, scheduler, step) for exact resume.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.module if hasattr(model, "module") else model  # DistributedDataParallel
    blob = {
        "format": CHECKPOINT_FORMAT,
        "codec": model.registry_name,
        "config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is not a readable vmuc-lite checkpoint: {e}") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has no '{CHECKPOINT_FORMAT}' format field: not a vmuc-lite checkpoint")
    for key in ("codec", "config", "state_dict"):
        if key not in blob:
            raise CheckpointError(f"checkpoint {path} lacks the field {key!r}")
    return blob


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks: what runs record of the checkpoints they use."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def training_config(blob: dict) -> dict:
    """The run config a checkpoint was trained with: ``meta.config`` of a training checkpoint,
    ``meta.trained`` of a shipped one (codec.default.ship keeps its source's config there);
    {} when it records none."""
    meta = blob.get("meta") or {}
    return meta.get("config") or meta.get("trained") or {}


def training_loss(blob: dict) -> dict:
    """The loss config a checkpoint was trained with (distortion kind, weights, lmbda), or {}."""
    return dict(training_config(blob).get("loss") or {})


def training_lmbda(blob: dict) -> float | None:
    """The rate-distortion trade-off a checkpoint was trained at (``loss.lmbda`` of its training
    config, which ``loss=vmuc`` sets to its beta), or None when the checkpoint does not record it."""
    loss = training_loss(blob)
    try:
        return float(loss["lmbda"])
    except (KeyError, TypeError, ValueError):
        return None


def load_checkpoint(path: str | os.PathLike, expect_codec: str | None = None) -> tuple[Codec, dict]:
    """Rebuild the codec a checkpoint names and load its weights; returns (codec, blob)."""
    blob = read_checkpoint(path)
    if expect_codec is not None and blob["codec"] != expect_codec:
        raise CheckpointError(f"checkpoint {path} holds codec {blob['codec']!r}, expected {expect_codec!r}")
    try:
        model = create_codec(blob["codec"], **blob["config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path}: cannot rebuild codec {blob['codec']!r}: {e}") from None
    try:
        result = model.load_state_dict(blob["state_dict"], strict=False)
    except RuntimeError as e:  # shape mismatch: weights of another width
        raise CheckpointError(f"checkpoint {path}: weights do not fit codec {blob['codec']!r} "
                              f"with its stored config: {str(e).splitlines()[-1].strip()}") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit codec {blob['codec']!r} with its stored config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.eval()
    return model, blob
