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
from codec.checkpoint import CheckpointError, file_sha256, load_checkpoint, training_lmbda, training_loss

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
    rates: tuple[float, ...] | None = None  # a variable-rate teacher's trained points (codec.gain)

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
    loss = training_loss(blob)
    return model, TeacherInfo(str(path), file_sha256(path), blob["codec"], training_lmbda(blob), loss.get("distortion"),
                              model.rates)


def check_rate_point(info: TeacherInfo, loss_cfg, allow_mismatch: bool, student_rates=None) -> float | None:
    """Refuse a teacher trained for another trade-off (or whose trade-off is unknown) unless
    ``distill.allow_rate_mismatch=true``. Returns the rate a variable-rate teacher is asked for
    when the student has one rate point (the teacher's point with the student's lambda), else None.

    Variable rate (codec.gain): a variable-rate student needs a variable-rate teacher with the
    same rate points (each crop's teacher runs at the crop's rate point); a fixed-rate student
    can learn from one point of a variable-rate teacher.
    """
    def same(a, b):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-6)

    if student_rates is not None:
        if info.rates is None or len(info.rates) != len(student_rates) or \
                not all(same(a, b) for a, b in zip(info.rates, student_rates)):
            raise RateMismatch(f"the student is variable-rate with rates {list(student_rates)}; teacher {info.path} "
                               f"has {'one rate point' if info.rates is None else 'rates ' + str(list(info.rates))}: "
                               f"distill a variable-rate student from a variable-rate teacher with the same rates")
        return None
    student = float(loss_cfg["lmbda"])
    if info.rates is not None:
        match = [i for i, r in enumerate(info.rates) if same(r, student)]
        if not match:
            raise RateMismatch(f"teacher {info.path} is variable-rate with rates {list(info.rates)}, none of them the "
                               f"student's lmbda/beta={student:g}: train the student at one of the teacher's points")
        return float(match[0])
    if allow_mismatch:
        return None
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
    return None


@torch.no_grad()
def teacher_outputs(teacher: Codec, x: torch.Tensor, feature_taps: list[str], rate=None) -> dict[str, torch.Tensor]:
    """What the KD losses read from the teacher, in eval mode (deterministic rounding), at
    ``rate`` for a variable-rate teacher (a number, or one rate per crop)."""
    with teacher.at_rate(rate):
        out = teacher(x)
    taps = out["taps"]
    result = {"x_hat": out["x_hat"], "y": taps["y"], "scales": taps["scales"]}
    if "means" in taps:
        result["means"] = taps["means"]
    for name in feature_taps:
        result[f"tap:{name}"] = taps[name]
    return result
