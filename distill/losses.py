"""Knowledge-distillation terms for learned image codecs: each a small pure function, zero when
the student matches its target and positive otherwise.

Following Allemand et al. (PRIM, ``kd_lic_experiments/losses.py``: KD for learned image codecs
as a weighted sum of ground-truth distortion, output KD and latent KD, each logged on its own),
with the entropy-parameter and synthesis-feature terms of the vmuc-lite design. Where student
and teacher differ in channels or resolution, the student's tensor goes through an
:class:`Adapter` first (a 1x1 conv, then a resize to the teacher's grid); adapters train with
the student and are dropped at the end.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from codec.engine.objectives import distortion
from codec.layers import lower_bound

__all__ = ["output_kd", "latent_kd", "entropy_kd", "feature_kd", "Adapter", "log_scales"]

#: the Gaussian conditional's smallest scale (codec.entropy): below it scales are clipped for
#: coding, so matching them below it would be matching noise.
SCALE_BOUND = 0.11


def output_kd(x_hat: torch.Tensor, teacher_x_hat: torch.Tensor, loss_cfg) -> torch.Tensor:
    """Distortion between the reconstructions, in the loss's own space (RGB MSE, or YCbCr MSE
    weighted 6:1:1 for ``loss=vmuc``)."""
    return distortion(x_hat, teacher_x_hat.detach(), loss_cfg)


def latent_kd(y: torch.Tensor, teacher_y: torch.Tensor) -> torch.Tensor:
    """MSE between the (adapted) student latent and the teacher's, in latent units."""
    return F.mse_loss(y, teacher_y.detach())


def log_scales(scales: torch.Tensor) -> torch.Tensor:
    return torch.log(lower_bound(scales, SCALE_BOUND))


def entropy_kd(means: torch.Tensor | None, logs: torch.Tensor, teacher_means: torch.Tensor | None,
               teacher_scales: torch.Tensor) -> torch.Tensor:
    """MSE of the Gaussian means plus MSE of the log-scales: the student's ``logs`` (from
    :func:`log_scales`, possibly adapted) against the teacher's scales, clipped at the coder's
    bound. Teachers without means (the scale hyperprior) contribute the log-scale term only."""
    loss = F.mse_loss(logs, log_scales(teacher_scales.detach()))
    if means is not None and teacher_means is not None:
        loss = loss + F.mse_loss(means, teacher_means.detach())
    return loss


def feature_kd(feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """MSE between an (adapted) synthesis feature of the student and the teacher's."""
    return F.mse_loss(feature, teacher_feature.detach())


class Adapter(nn.Module):
    """Student tensor -> the teacher's channels (1x1 conv) and grid (bilinear up-sampling or
    area down-sampling to the target's size); the identity when both already agree."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, 1) if in_chs != out_chs else nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.proj(x)
        if tuple(x.shape[-2:]) != tuple(size):
            mode = "area" if x.shape[-2] > size[0] else "bilinear"
            x = F.interpolate(x, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))
        return x
