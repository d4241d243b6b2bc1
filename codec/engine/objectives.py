"""What training optimizes: objectives, ``(model, batch) -> named loss terms``.

The loop (:mod:`codec.engine.loop`) runs *how* training happens (devices, seeds, resume,
checkpoints, validation, logging); an objective says *what* is minimized, as Lightning's
``training_step`` does and CompressAI's ``RateDistortionLoss`` returns every term in a dict.
The rate-distortion objective is one; distillation adds terms (and trainable adapters) on top
of it; pruning fine-tunes through either. One loop, many objectives, no copies of the loop.

An objective is an ``nn.Module``: parameters it owns (a KD adapter mapping student channels
to the teacher's) train with the model, with the same optimizer and learning rate, and are
saved in the checkpoint's *training state* (``blob["objective"]``), never in the model's state
dict, so a finished checkpoint holds exactly the codec's keys.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Objective", "RateDistortion", "rd_loss", "rate_terms", "distortion"]


class Objective(nn.Module):
    """Base class. ``forward(model, batch)`` returns a dict of scalar tensors with the key
    ``"loss"`` (what is minimized) and any number of other named terms (logged as they are).

    ``model`` is what to call for the forward pass (possibly wrapped in
    DistributedDataParallel); ``batch`` is what the loop's batch source gives (a float
    Bx3xHxW tensor in [0, 1] by default). Subclasses may own parameters (adapters) and
    buffers; with several ranks their gradients are averaged like the model's.
    """

    def forward(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def trainables(self) -> list[nn.Parameter]:
        """Parameters the optimizer trains besides the model's (adapters); empty by default."""
        return [p for p in self.parameters() if p.requires_grad]


def rate_terms(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> dict[str, torch.Tensor]:
    """Estimated bits per pixel of each latent: sum of -log2 likelihoods / pixels."""
    return {k: torch.log(v).sum() / (-math.log(2) * num_pixels) for k, v in likelihoods.items()}


def distortion(x_hat: torch.Tensor, x: torch.Tensor, loss_cfg) -> torch.Tensor:
    """The loss's distortion D on [0, 1] images: RGB MSE (CompressAI's convention) or the
    YCbCr MSE weighted Y:Cb:Cr (JPEG AI's, 6:1:1), per ``loss.distortion``.

    Distillation's output-KD term calls this with the teacher's reconstruction in place of
    ``x``, so it is measured in the loss's own space.
    """
    from codec.image import rgb_to_ycbcr

    kind = loss_cfg.get("distortion", "rgb_mse")
    if kind == "rgb_mse":
        return F.mse_loss(x_hat, x)
    if kind == "ycbcr_mse":
        w = torch.tensor(list(loss_cfg.get("ycbcr_weights", (6, 1, 1))), dtype=x.dtype, device=x.device)
        per_channel = ((rgb_to_ycbcr(x_hat) - rgb_to_ycbcr(x)) ** 2).mean(dim=(0, 2, 3))
        return (per_channel * w).sum() / w.sum()
    raise ValueError(f"loss.distortion={kind!r}: use rgb_mse or ycbcr_mse (conf/loss/*.yaml)")


def rd_loss(out: dict, x: torch.Tensor, loss_cfg) -> dict[str, torch.Tensor]:
    """L = bpp + lmbda * 255^2 * D (optionally mixed with 1 - MS-SSIM); every term returned."""
    num_pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    rates = rate_terms(out["likelihoods"], num_pixels)
    bpp = sum(rates.values())
    x_hat = out["x_hat"]
    d = distortion(x_hat, x, loss_cfg)
    terms = {"bpp": bpp, "mse": F.mse_loss(x_hat, x), "distortion": d}
    d_term = 255.0**2 * d
    ms_w = float(loss_cfg.get("ms_ssim_weight", 0.0))
    if ms_w > 0:
        from pytorch_msssim import ms_ssim

        msssim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=True)
        terms["ms_ssim"] = msssim
        # 1 - MS-SSIM scaled so that both terms weigh alike near 30 dB (JPEG AI's mixed loss)
        d_term = (1 - ms_w) * d_term + ms_w * float(loss_cfg.get("ms_ssim_scale", 1000.0)) * (1 - msssim)
    terms["loss"] = bpp + float(loss_cfg["lmbda"]) * d_term
    for k, v in rates.items():
        terms[f"bpp_{k}"] = v
    return terms


class RateDistortion(Objective):
    """The codec's own rate-distortion loss, ``R + lmbda * 255^2 * D`` (:func:`rd_loss`).
    Objectives that add terms call the model once and :func:`rd_loss` on its output."""

    def __init__(self, loss_cfg):
        super().__init__()
        if "lmbda" not in loss_cfg:
            raise ValueError("loss config needs 'lmbda' (or 'beta' for loss=vmuc): the rate-distortion trade-off")
        lmbda = float(loss_cfg["lmbda"])
        if not math.isfinite(lmbda) or lmbda <= 0:
            raise ValueError(f"loss.lmbda must be a positive number, got {loss_cfg['lmbda']!r}")
        distortion(torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1), loss_cfg)  # validate the kind early
        self.loss_cfg = loss_cfg

    def forward(self, model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return rd_loss(model(batch), batch, self.loss_cfg)
