"""The teacher of a distillation run: a checkpoint of any registered codec, frozen, and its rate point.

Teacher and student must be trained for the same rate-distortion trade-off: distilling a
low-rate teacher into a high-rate student teaches it the wrong reconstruction. The teacher's
``lmbda`` (``beta`` for ``loss=vmuc``, stored as lmbda too) is read from the checkpoint's
metadata (``meta.config.loss.lmbda``, written by the training engine).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from codec.base import Codec
from codec.checkpoint import CheckpointError, file_sha256, load_checkpoint, training_lmbda

__all__ = ["TeacherInfo", "load_teacher", "check_rate_point", "RateMismatch"]


class RateMismatch(ValueError):
    """Teacher and student are set for different rate points."""


@dataclass(frozen=True)
class TeacherInfo:
    path: str
    sha256: str          # of the checkpoint file: what a cache and a run record
    codec: str
    lmbda: float | None  # the teacher's training trade-off, None if the checkpoint does not say
    distortion: str | None

    def as_meta(self) -> dict:
        return {f"teacher_{k}": v for k, v in asdict(self).items()}


def load_teacher(path: str | Path | None) -> tuple[Codec, TeacherInfo]:
    """Load, freeze and describe a teacher checkpoint; a missing, corrupt or foreign file is a
    CheckpointError with one line saying which."""
    if not path:
        raise CheckpointError("no teacher given: set teacher=PATH (a checkpoint of any registered codec)")
    model, blob = load_checkpoint(path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    loss = ((blob.get("meta") or {}).get("config") or {}).get("loss") or {}
    return model, TeacherInfo(str(path), file_sha256(path), blob["codec"], training_lmbda(blob), loss.get("distortion"))


def check_rate_point(info: TeacherInfo, loss_cfg, allow_mismatch: bool) -> None:
    """Refuse a teacher trained for another trade-off (or whose trade-off is unknown) unless
    ``distill.allow_rate_mismatch=true``."""
    if allow_mismatch:
        return
    student = float(loss_cfg["lmbda"])
    if info.lmbda is None:
        raise RateMismatch(f"teacher {info.path} does not record its training rate point (meta.config.loss.lmbda); "
                           f"set distill.allow_rate_mismatch=true to distill from it anyway")
    if not math.isclose(info.lmbda, student, rel_tol=1e-6):
        raise RateMismatch(f"teacher {info.path} was trained at lmbda/beta={info.lmbda:g}, the student at "
                           f"{student:g}: train the student at the teacher's rate point (loss.beta / loss.lmbda) "
                           f"or set distill.allow_rate_mismatch=true")
    if info.distortion and loss_cfg.get("distortion") and info.distortion != loss_cfg.get("distortion"):
        raise RateMismatch(f"teacher {info.path} was trained with loss.distortion={info.distortion}, the student "
                           f"with {loss_cfg.get('distortion')}; use the same loss or distill.allow_rate_mismatch=true")


@torch.no_grad()
def teacher_outputs(teacher: Codec, x: torch.Tensor, feature_taps: list[str]) -> dict[str, torch.Tensor]:
    """What the KD losses read from the teacher, in eval mode (deterministic rounding)."""
    out = teacher(x)
    taps = out["taps"]
    result = {"x_hat": out["x_hat"], "y": taps["y"], "scales": taps["scales"]}
    if "means" in taps:
        result["means"] = taps["means"]
    for name in feature_taps:
        result[f"tap:{name}"] = taps[name]
    return result
