"""A run's ``last.ckpt``: the model (an ordinary codec checkpoint) plus the training state.

Layout (codec.checkpoint): ``format, codec, config, state_dict, meta`` describe the model and
load anywhere; the *training state* beside them is ``step``, ``optimizer`` and ``objective``
(the objective's own parameters, e.g. distillation adapters). The model's state dict never
holds anything but the codec's weights, so a finished run is a plain checkpoint of its codec.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from codec.base import Codec
from codec.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint

__all__ = ["RunCheckpoint", "CHECKPOINT_NAME", "model_from_checkpoint"]

CHECKPOINT_NAME = "last.ckpt"


class RunCheckpoint:
    """Save and resume ``out_dir/last.ckpt`` (atomic writes: an interrupted save never leaves a
    broken file, and a diverged run never overwrites the last good one)."""

    def __init__(self, out_dir: Path, rank: int = 0):
        self.path = Path(out_dir) / CHECKPOINT_NAME
        self.rank = rank

    def describe(self) -> str:
        return str(self.path) if self.path.exists() else "none written yet"

    def save(self, model: Codec, objective: nn.Module, optimizer: torch.optim.Optimizer, step: int,
             meta: dict) -> None:
        if self.rank != 0:
            return
        save_checkpoint(self.path, model, meta={"step": step, **meta}, optimizer=optimizer.state_dict(), step=step,
                        objective={k: v.detach().cpu() for k, v in objective.state_dict().items()})

    def source(self, resume) -> Path | None:
        """What to resume from per ``trainer.resume``: ``auto`` (this run's last.ckpt if it
        exists), ``never``, or a checkpoint path (which must exist)."""
        if resume in (None, False, "never"):
            return None
        if resume == "auto":
            return self.path if self.path.exists() else None
        return Path(resume)

    def resume(self, src: Path, model: Codec, objective: nn.Module, optimizer: torch.optim.Optimizer) -> int:
        """Load model, objective and optimizer state; returns the step to continue from."""
        blob = read_checkpoint(src)
        if blob["codec"] != model.registry_name or blob["config"] != model.config:
            raise CheckpointError(f"cannot resume from {src}: it holds {blob['codec']!r} with another architecture "
                                  f"config; use a fresh hydra.run.dir or trainer.resume=never")
        if "optimizer" not in blob or "step" not in blob:
            raise CheckpointError(f"cannot resume from {src}: it has no training state (step, optimizer); "
                                  f"to start a new run from its weights use trainer.init_from={src}")
        model.load_state_dict(blob["state_dict"])
        has_objective_state = bool(objective.state_dict())
        if has_objective_state:
            if not blob.get("objective"):
                raise CheckpointError(f"cannot resume from {src}: this run's objective has trainable state "
                                      f"({', '.join(list(objective.state_dict())[:3])}...) but the checkpoint has none")
            objective.load_state_dict(blob["objective"])
        optimizer.load_state_dict(blob["optimizer"])
        return int(blob["step"])


def model_from_checkpoint(path: str | Path) -> tuple[Codec, dict]:
    """``trainer.init_from``: the architecture (registry name and config, pruned widths
    included) and the weights of a checkpoint, as the start of a *new* run (step 0, fresh
    optimizer), as opposed to resuming one. Returns (model in train mode, provenance)."""
    import hashlib

    model, blob = load_checkpoint(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return model.train(), {"init_from": str(path), "init_from_sha256": digest, "init_from_codec": blob["codec"],
                           "init_from_step": blob.get("step")}
