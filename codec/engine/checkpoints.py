"""A run's ``last.ckpt``: the model (an ordinary codec checkpoint) plus the training state.

Layout (codec.checkpoint): ``format, codec, config, state_dict, meta`` and ``step`` describe
the model and load anywhere; the *training state* is ``optimizer`` and ``objective`` (the
objective's own parameters, e.g. distillation adapters). While a run is going, ``last.ckpt``
holds both, so a kill at any point resumes exactly. When the run completes, the training state
moves to ``last.state`` beside it and ``last.ckpt`` becomes a plain checkpoint of its codec:
the same keys whatever the objective (a distilled student's file is a scratch student's file),
nothing of a teacher or an adapter. Extending a finished run (a larger ``max_steps``) reads
``last.state`` back when its step matches.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from codec.base import Codec
from codec.checkpoint import CheckpointError, file_sha256, load_checkpoint, read_checkpoint, save_checkpoint

__all__ = ["RunCheckpoint", "CHECKPOINT_NAME", "STATE_NAME", "model_from_checkpoint"]

CHECKPOINT_NAME = "last.ckpt"
STATE_NAME = "last.state"


class RunCheckpoint:
    """Save and resume ``out_dir/last.ckpt`` (atomic writes: an interrupted save never leaves a
    broken file, and a diverged run never overwrites the last good one)."""

    def __init__(self, out_dir: Path, rank: int = 0):
        self.path = Path(out_dir) / CHECKPOINT_NAME
        self.state_path = Path(out_dir) / STATE_NAME
        self.rank = rank

    def describe(self) -> str:
        return str(self.path) if self.path.exists() else "none written yet"

    def save(self, model: Codec, objective: nn.Module, optimizer: torch.optim.Optimizer, step: int,
             meta: dict, final: bool = False) -> None:
        """Atomic writes; ``final``: the training state goes to ``last.state`` (written first,
        so a kill between the two writes leaves a last.ckpt that still has its own)."""
        if self.rank != 0:
            return
        state = {"optimizer": optimizer.state_dict(),
                 "objective": {k: v.detach().cpu() for k, v in objective.state_dict().items()}}
        if final:
            tmp = self.state_path.with_name(self.state_path.name + ".tmp")
            torch.save({"step": step, **state}, tmp)
            os.replace(tmp, self.state_path)
            save_checkpoint(self.path, model, meta={"step": step, **meta}, step=step)
        else:
            save_checkpoint(self.path, model, meta={"step": step, **meta}, step=step, **state)

    def _training_state(self, src: Path, blob: dict) -> dict:
        if "optimizer" in blob:
            return blob
        side = src.with_name(STATE_NAME)
        if side.is_file():
            state = torch.load(side, map_location="cpu", weights_only=True)
            if int(state.get("step", -1)) == int(blob.get("step", -2)):
                return state
        raise CheckpointError(f"cannot resume from {src}: it has no training state (optimizer; for a finished run "
                              f"{side.name} beside it, at the same step); to start a new run from its weights use "
                              f"trainer.init_from={src}")

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
        if "step" not in blob:
            raise CheckpointError(f"cannot resume from {src}: it records no step; to start a new run from its "
                                  f"weights use trainer.init_from={src}")
        state = self._training_state(src, blob)
        model.load_state_dict(blob["state_dict"])
        if objective.state_dict():
            if not state.get("objective"):
                raise CheckpointError(f"cannot resume from {src}: this run's objective has trainable state "
                                      f"({', '.join(list(objective.state_dict())[:3])}...) but the checkpoint has none")
            objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        return int(blob["step"])


def _carry_gains(trained: Codec, model: Codec) -> None:
    """``model``'s gains from ``trained``'s, whose rates are among ``model``'s: kept at those rates,
    and for each new rate the gains of the nearest trained point scaled by sqrt(new / nearest)
    (as codec.gain starts each point relative to the middle one: with an MSE distortion the best
    quantization step scales with 1 / sqrt(lambda))."""
    import math

    old = [float(r) for r in trained.rates]
    with torch.no_grad():
        for j, r in enumerate(model.rates):
            i = min(range(len(old)), key=lambda k: abs(math.log(r / old[k])))
            shift = 0.5 * math.log(r / old[i])  # 0 for a trained rate: its gains as they are
            model.gain.log_gain[j] = trained.gain.log_gain[i] + shift
            model.gain.log_inverse_gain[j] = trained.gain.log_inverse_gain[i] - shift


def model_from_checkpoint(path: str | Path, rates=None) -> tuple[Codec, dict]:
    """``trainer.init_from``: the architecture (registry name and config, pruned widths
    included) and the weights of a checkpoint, as the start of a *new* run (step 0, fresh
    optimizer), as opposed to resuming one. Returns (model in train mode, provenance).

    ``rates`` (the run's ``codec.rates``) turns a fixed-rate checkpoint into a variable-rate
    model: its weights, plus new gain units (codec.gain) that start at their usual values. A
    variable-rate checkpoint takes ``rates`` that contain its own: its gains are kept at its
    rates and extended to the new ones (``_carry_gains``)."""
    from codec.registry import create_codec

    model, blob = load_checkpoint(path)
    if rates is not None:
        rates = [float(r) for r in rates]
        if model.rates is None or list(model.rates) != rates:
            source = model
            if source.rates is not None and not set(source.rates) <= set(rates):
                raise CheckpointError(f"trainer.init_from={path} is variable-rate with rates {list(source.rates)}; "
                                      f"codec.rates={rates} differs and does not contain them all (leave codec.rates "
                                      "unset to keep the checkpoint's, or list its rates plus the new ones)")
            model = create_codec(blob["codec"], **{**blob["config"], "rates": rates})
            weights = {k: v for k, v in source.state_dict().items() if not k.startswith("gain.")}
            result = model.load_state_dict(weights, strict=False)
            if result.unexpected_keys or any(not k.startswith("gain.") for k in result.missing_keys):
                raise CheckpointError(f"trainer.init_from={path}: weights do not fit {blob['codec']} with rates: "
                                      f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
            if source.rates is not None:
                _carry_gains(source, model)
    return model.train(), {"init_from": str(path), "init_from_sha256": file_sha256(path)[:16], "init_from_codec": blob["codec"],
                           "init_from_step": blob.get("step"), **({"init_from_rates": rates} if rates else {})}
