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

__all__ = ["Objective", "RateDistortion", "rd_loss", "rate_terms", "distortion", "draw_rate_points", "unwrap"]


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


def unwrap(model: nn.Module) -> nn.Module:
    """The codec inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def draw_rate_points(model: nn.Module, batch_size: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A variable-rate codec (``rates``, codec.gain) trains every rate point: one trained point
    per batch element, drawn uniformly (from the global generator, which the loop seeds per step,
    so a resumed run draws the same points). Returns (rate indices as floats, their lambdas),
    or (None, None) for a fixed-rate model."""
    rates = getattr(unwrap(model), "rates", None)
    if rates is None:
        return None, None
    idx = torch.randint(len(rates), (batch_size,))
    return idx.float(), torch.tensor(rates, dtype=torch.float32)[idx]


def rate_terms(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> dict[str, torch.Tensor]:
    """Estimated bits per pixel of each latent: sum of -log2 likelihoods / pixels."""
    return {k: torch.log(v).sum() / (-math.log(2) * num_pixels) for k, v in likelihoods.items()}


def distortion(x_hat: torch.Tensor, x: torch.Tensor, loss_cfg, per_sample: bool = False) -> torch.Tensor:
    """The loss's distortion D on [0, 1] images: RGB MSE (CompressAI's convention) or the
    YCbCr MSE weighted Y:Cb:Cr (JPEG AI's, 6:1:1), per ``loss.distortion``; one value per
    batch element with ``per_sample`` (variable-rate training weighs each by its own lambda).

    Distillation's output-KD term calls this with the teacher's reconstruction in place of
    ``x``, so it is measured in the loss's own space.
    """
    from codec.image import rgb_to_ycbcr

    kind = loss_cfg.get("distortion", "rgb_mse")
    if kind == "rgb_mse":
        return F.mse_loss(x_hat, x) if not per_sample else ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
    if kind == "ycbcr_mse":
        w = torch.tensor(list(loss_cfg.get("ycbcr_weights", (6, 1, 1))), dtype=x.dtype, device=x.device)
        if per_sample:
            per_channel = ((rgb_to_ycbcr(x_hat) - rgb_to_ycbcr(x)) ** 2).mean(dim=(2, 3))
            return (per_channel * w).sum(dim=1) / w.sum()
        per_channel = ((rgb_to_ycbcr(x_hat) - rgb_to_ycbcr(x)) ** 2).mean(dim=(0, 2, 3))
        return (per_channel * w).sum() / w.sum()
    raise ValueError(f"loss.distortion={kind!r}: use rgb_mse or ycbcr_mse (conf/loss/*.yaml)")


def rd_loss(out: dict, x: torch.Tensor, loss_cfg, lmbda: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """L = bpp + lmbda * 255^2 * D (optionally mixed with 1 - MS-SSIM); every term returned.

    ``lmbda`` None: the loss config's one lambda. A tensor (B,): one lambda per batch element
    (variable rate), L = mean_i(bpp_i + lmbda_i * 255^2 * D_i), whose terms average to the same
    ``bpp`` and ``distortion`` the fixed-rate loss reports.
    """
    if lmbda is not None:
        return _rd_loss_per_sample(out, x, loss_cfg, lmbda)
    num_pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    rates = rate_terms(out["likelihoods"], num_pixels)
    bpp = sum(rates.values())
    x_hat = out["x_hat"]
    d = distortion(x_hat, x, loss_cfg)
    terms = {"bpp": bpp, "mse": F.mse_loss(x_hat, x), "distortion": d}
    d_term = _distortion_term(x_hat, x, d, loss_cfg, terms, size_average=True)
    terms["loss"] = bpp + float(loss_cfg["lmbda"]) * d_term
    for k, v in rates.items():
        terms[f"bpp_{k}"] = v
    return terms


def _distortion_term(x_hat, x, d, loss_cfg, terms: dict, size_average: bool) -> torch.Tensor:
    """255^2 * D, optionally mixed with 1 - MS-SSIM (per crop unless ``size_average``); logs
    the MS-SSIM into ``terms``."""
    d_term = 255.0**2 * d
    ms_w = float(loss_cfg.get("ms_ssim_weight", 0.0))
    if ms_w > 0:
        from pytorch_msssim import ms_ssim

        msssim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=size_average)
        terms["ms_ssim"] = msssim.mean()
        # 1 - MS-SSIM scaled so that both terms weigh alike near 30 dB (JPEG AI's mixed loss)
        d_term = (1 - ms_w) * d_term + ms_w * float(loss_cfg.get("ms_ssim_scale", 1000.0)) * (1 - msssim)
    return d_term


def _rd_loss_per_sample(out: dict, x: torch.Tensor, loss_cfg, lmbda: torch.Tensor) -> dict[str, torch.Tensor]:
    pixels = x.shape[-2] * x.shape[-1]
    rates = {k: torch.log(v).flatten(1).sum(1) / (-math.log(2) * pixels) for k, v in out["likelihoods"].items()}
    bpp = sum(rates.values())
    x_hat = out["x_hat"]
    d = distortion(x_hat, x, loss_cfg, per_sample=True)
    terms = {"bpp": bpp.mean(), "mse": F.mse_loss(x_hat, x), "distortion": d.mean()}
    d_term = _distortion_term(x_hat, x, d, loss_cfg, terms, size_average=False)
    terms["loss"] = (bpp + lmbda.to(bpp.device, bpp.dtype) * d_term).mean()
    for k, v in rates.items():
        terms[f"bpp_{k}"] = v.mean()
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
        rate, lmbda = draw_rate_points(model, batch.shape[0])
        with unwrap(model).at_rate(rate):
            out = model(batch)
        return rd_loss(out, batch, self.loss_cfg, lmbda)


class ResidualL1(Objective):
    """Toderici et al. 2017's loss for recurrent residual codecs (``loss=toderici``):
    L = sum over iterations t of mean |x - x_hat_t|, i.e. the L1 norm of every residual r_t.

    The codec's ``forward`` unrolls its iterations and stacks the reconstructions in
    ``taps["x_hats"]`` (T x B x 3 x H x W). Its rate is the iteration count (fixed bits per
    iteration), not a likelihood, so there is no rate term: one model is trained for every
    rate at once. Logged: ``l1`` and ``mse`` of the last iteration, ``l1_first`` and
    ``bpp_raw``, the bits per pixel of the binary codes of every iteration before entropy coding.
    """

    def __init__(self, loss_cfg=None):
        super().__init__()
        self.loss_cfg = loss_cfg

    def forward(self, model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        out = model(batch)
        x_hats = out["taps"].get("x_hats")
        if x_hats is None:
            raise ValueError("loss=toderici (objective residual_l1) needs a codec whose forward returns "
                             "taps['x_hats'], the reconstruction of every iteration (e.g. codec=toderici)")
        l1 = (x_hats - batch.unsqueeze(0)).abs().mean(dim=(1, 2, 3, 4))
        codes = out["taps"]["codes"]  # T x B x bits x H/16 x W/16
        bpp_raw = codes.numel() / (batch.shape[0] * batch.shape[-2] * batch.shape[-1])
        return {"loss": l1.sum(), "l1": l1[-1].detach(), "l1_first": l1[0].detach(),
                "mse": F.mse_loss(out["x_hat"], batch).detach(), "bpp_raw": torch.tensor(float(bpp_raw))}


#: ``loss.objective`` -> the objective that ``python -m codec.train`` builds from the loss config.
OBJECTIVES = {"rd": RateDistortion, "residual_l1": ResidualL1}


def make_objective(loss_cfg, model: nn.Module) -> Objective:
    """The objective named by ``loss.objective`` (``rd`` when absent), after checking that the
    codec trains with it: a codec names its own with ``training_objective`` (``rd`` by default)."""
    kind = loss_cfg.get("objective", "rd") or "rd"
    if kind not in OBJECTIVES:
        raise ValueError(f"loss.objective={kind!r}: use one of {sorted(OBJECTIVES)} (conf/loss/*.yaml)")
    wants = getattr(model, "training_objective", "rd")
    if wants != kind:
        name = getattr(model, "registry_name", type(model).__name__)
        hint = "loss=toderici" if wants == "residual_l1" else "loss=rd or loss=vmuc"
        raise ValueError(f"codec {name} trains with objective {wants!r}, the loss config gives {kind!r}: "
                         f"pick {hint} (conf/loss/*.yaml)")
    return OBJECTIVES[kind](loss_cfg)
