"""Latent overfitting: a slow encoder for any codec, with the decoder unchanged.

The feed-forward encoder codes ``y = g_a(x)`` and ``z = h_a(y)``. Those are the analysis
networks' guesses, not the best latents for this image. Here, with every weight frozen,
``y`` and ``z`` are optimized for this image's rate-distortion loss at the model's own
trade-off, then coded (Campos et al., "Content adaptive optimization for neural image
compression", CVPR-W 2019; Yang, Bamler, Mandt, "Improving inference for neural image
compression", NeurIPS 2020)::

    y, z = codec.latents(x)                                  # the feed-forward encoder's latents
    repeat N times (Adam on y, z):
        with codec.given_latents(y=y, z=z), rounding(soft):  # eval-mode forward from the latents
            L = bpp + lmbda 255^2 D(x_hat, x)                # codec.engine.objectives.rd_loss
    bytes = codec.compress(x) with the best (y, z)            # an ordinary bitstream

The decoder reads only symbols, so ``decompress`` is the one the checkpoint already has and the
stream is an ordinary one for that checkpoint. The objective is the codec's own eval-mode
``forward``, whose hard rounding (``quantize(..., "round")``) is swapped for a differentiable
stand-in (:func:`codec.entropy.rounding`):

* ``ste``: straight-through rounding; the forward values *are* the coded ones, so every step's
  loss is the exact estimated RD loss of its latents (rate = -log2 of the model's likelihoods,
  not the coder's bytes; distortion of the decoded image before 8-bit rounding).
* ``sga``: stochastic Gumbel annealing (Yang et al. 2020, sec. 3.3 and their ``sga.py``): each
  value is rounded down or up at random, relaxed with a Gumbel-softmax of temperature tau,
  with the probability of the farther integer falling as ``-atanh(distance)/tau``; tau stays at
  0.5 for the first 35 % of the steps and then decays exponentially to 0.5 e^-1.3 at the last
  step (their schedule for 2000 steps, compressed to N).

Both quantize around the means where the codec does (symbol = round(y - mu)). The loss at hard
rounding is evaluated before the first and after the last step (and, with ``ste``, at every
step for free); the latents returned are the best seen, so the estimated RD loss is never
worse than the feed-forward encoder's.

Determinism: the soft rounding draws from a generator seeded with ``seed``; Adam and the
forward are deterministic on the CPU at a fixed thread count, so identical inputs, settings
and thread count give identical bytes (the final coding pass is single-threaded like every
``compress``).
"""
from __future__ import annotations

import math
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch

from codec.base import Codec
from codec.entropy import rounding
from codec.image import crop, pad_to_stride

__all__ = ["OverfitResult", "LatentOverfitter", "overfit_latents", "compress_overfit", "compress_latents",
           "check_overfit_args", "checkpoint_loss_config", "METHODS", "DEFAULT_LR",
           "DEFAULT_METHOD"]

METHODS = ("ste", "sga")
#: Adam's step on the latents (in quantization steps) and the rounding: chosen on training
#: images, not on the eval set (results/overfit/tune_*.json; docs/DESIGN.md, "Latent overfitting")
DEFAULT_LR = 1e-2
DEFAULT_METHOD = "sga"

# SGA's temperature schedule (Yang et al. 2020: tau = 0.5 for 700 of 2000 steps, then
# 0.5 exp(-1e-3 (t - 700)), i.e. 0.5 e^-1.3 at the end), as fractions of the run
_TAU_MAX = 0.5
_TAU_HOLD = 0.35
_TAU_DECAY = 1.3
_SGA_EPS = 1e-5


def check_overfit_args(steps, lr, method: str = DEFAULT_METHOD, lmbda=None) -> tuple[int, float, str]:
    """Refuse what cannot be run, with the argument named: steps an integer >= 0, lr > 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) and not (isinstance(steps, float) and steps.is_integer()):
        raise ValueError(f"overfit steps must be a whole number >= 0, got {steps!r}")
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"overfit steps must be >= 0 (0: the feed-forward encoder), got {steps}")
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"overfit lr must be a positive number, got {lr!r}") from None
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"overfit lr must be a positive number, got {lr!r}")
    if method not in METHODS:
        raise ValueError(f"overfit method must be one of {', '.join(METHODS)}, got {method!r}")
    if lmbda is not None and (not isinstance(lmbda, (int, float)) or not math.isfinite(lmbda) or lmbda <= 0):
        raise ValueError(f"overfit lmbda must be a positive number, got {lmbda!r}")
    return steps, lr, method


def checkpoint_loss_config(blob: dict) -> dict | None:
    """The loss a checkpoint was trained with (:func:`codec.checkpoint.training_loss`: distortion kind, weights,
    lmbda), or None when the checkpoint does not record it."""
    from codec.checkpoint import training_loss

    return training_loss(blob) or None


def _resolve_loss(model: Codec, rate, lmbda, loss_cfg) -> dict:
    """The loss config of the run, ``lmbda`` filled in: given, else the variable-rate model's
    for ``rate`` (``Codec.rate_lmbda``: log-linear between trained points), else the loss
    config's (the checkpoint's training lmbda)."""
    cfg = dict(loss_cfg or {"distortion": "rgb_mse"})
    if lmbda is None:
        lmbda = model.rate_lmbda(rate) if model.rates is not None else cfg.get("lmbda")
    if lmbda is None:
        raise ValueError(f"{model.registry_name}: no rate-distortion trade-off for overfitting: the checkpoint "
                         "records no training lmbda (meta.config.loss.lmbda); give one (--overfit-lmbda)")
    lmbda = float(lmbda)
    if not math.isfinite(lmbda) or lmbda <= 0:
        raise ValueError(f"overfit lmbda must be a positive number, got {lmbda!r}")
    cfg["lmbda"] = lmbda
    return cfg


def _ste_round(centred: torch.Tensor) -> torch.Tensor:
    """Exactly round(centred) in value, the identity in gradient."""
    return torch.round(centred).detach() + (centred - centred.detach())


def sga_temperature(step: int, steps: int) -> float:
    """tau at ``step`` of ``steps`` (module docstring)."""
    hold = _TAU_HOLD * steps
    if step <= hold or steps <= 1:
        return _TAU_MAX
    return _TAU_MAX * math.exp(-_TAU_DECAY * (step - hold) / ((steps - 1) - hold))


def _sga_round(tau: float, generator: torch.Generator):
    """Yang et al. 2020's stochastic Gumbel annealing with temperature ``tau``: down or up with
    logits -atanh(distance)/tau, relaxed by a Gumbel-softmax at tau. Two classes: the difference
    of their Gumbel noises is logistic, so the weight of "up" is a sigmoid."""

    def fn(centred: torch.Tensor) -> torch.Tensor:
        down = torch.floor(centred)
        frac = centred - down
        logit_down = -torch.atanh(frac.clamp(-1 + _SGA_EPS, 1 - _SGA_EPS)) / tau
        logit_up = -torch.atanh((1 - frac).clamp(-1 + _SGA_EPS, 1 - _SGA_EPS)) / tau
        u = torch.rand(centred.shape, generator=generator, dtype=centred.dtype).clamp_(1e-7, 1 - 1e-7)
        logistic = torch.log(u) - torch.log1p(-u)
        return down + torch.sigmoid((logit_up - logit_down + logistic.to(centred.device)) / tau)

    return fn


@contextmanager
def _frozen(model: Codec):
    """Eval mode and no weight gradients inside (weights are never changed; gradients of the
    weights would only cost time); restores both after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with model._eval_mode():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class OverfitResult:
    """What :func:`overfit_latents` found. Losses are the estimated RD loss at hard rounding
    (rate from the model's likelihoods, distortion of the float reconstruction)."""

    latents: dict[str, torch.Tensor]  # the best latents seen, detached, float32 CPU
    steps: int
    lr: float
    method: str
    lmbda: float
    initial: dict[str, float]  # RD terms of the feed-forward encoder's latents
    final: dict[str, float]  # RD terms of ``latents``
    best_step: int  # how many optimizer steps ``latents`` had (0: the feed-forward latents)
    history: list[float] = field(default_factory=list)  # the optimized (soft) loss at each step

    @property
    def improvement(self) -> float:
        """Relative change of the estimated RD loss (negative: better)."""
        return self.final["loss"] / self.initial["loss"] - 1.0


class LatentOverfitter:
    """One image's latent optimization, step by step (the profiler counts :meth:`step` and
    :meth:`evaluate`; :func:`overfit_latents` runs them).

    Must be used inside :meth:`session` (frozen weights, eval mode, the rate)."""

    def __init__(self, model: Codec, x: torch.Tensor, steps: int, lr: float = DEFAULT_LR, rate=None,
                 lmbda: float | None = None, loss_cfg: dict | None = None, method: str = DEFAULT_METHOD,
                 seed: int = 0):
        steps, lr, method = check_overfit_args(steps, lr, method, lmbda)
        model._check_image(x)
        p = next(model.parameters())
        if p.device.type != "cpu" or p.dtype != torch.float32:
            raise RuntimeError(f"{model.registry_name}: latent overfitting runs on the float32 CPU model that codes "
                               "(call codec.cpu().float())")
        self.model, self.steps, self.lr, self.method = model, steps, lr, method
        self.rate = model.check_rate(rate) if rate is not None or model.rate_points is None else model.default_rate()
        self.loss_cfg = _resolve_loss(model, self.rate, lmbda, loss_cfg)
        self.x = x.float().clamp(0, 1)
        self.xp, _ = pad_to_stride(self.x, model.stride)
        start = model.latents(self.x, self.rate)
        if "y" not in start:
            raise ValueError(f"{model.registry_name} does not expose its latents (Codec.analysis_latent): latent overfitting "
                             "needs a codec that computes y (and z) through Codec.analysis_latent")
        self.names = sorted(start)
        self.params = {name: t.clone().requires_grad_(True) for name, t in start.items()}
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=lr)
        self.generator = torch.Generator().manual_seed(int(seed))

    @contextmanager
    def session(self):
        with ExitStack() as stack:
            stack.enter_context(_frozen(self.model))
            stack.enter_context(self.model.at_rate(self.rate))
            yield self

    def _terms(self, stand_in) -> dict[str, torch.Tensor]:
        from codec.engine.objectives import rd_loss

        with rounding(stand_in), self.model.given_latents(**self.params):
            out = self.model(self.xp)
        x_hat = crop(out["x_hat"], tuple(self.x.shape[-2:])).clamp(0, 1)
        return rd_loss({"x_hat": x_hat, "likelihoods": out["likelihoods"]}, self.x, self.loss_cfg)

    def evaluate(self) -> dict[str, float]:
        """RD terms of the current latents at hard rounding (a forward, no backward)."""
        with torch.no_grad():
            terms = self._terms(_ste_round)
        return {k: float(v) for k, v in terms.items()}

    def step(self, t: int) -> dict[str, float]:
        """One optimizer step (soft forward, backward, Adam). Returns the terms it optimized:
        with ``ste``, the exact hard-rounding terms of the latents before the update."""
        stand_in = _ste_round if self.method == "ste" else _sga_round(sga_temperature(t, self.steps), self.generator)
        terms = self._terms(stand_in)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().clone() for name, t in self.params.items()}


def overfit_latents(model: Codec, x: torch.Tensor, steps: int, lr: float = DEFAULT_LR, rate=None,
                    lmbda: float | None = None, loss_cfg: dict | None = None, method: str = DEFAULT_METHOD,
                    seed: int = 0, progress: bool | None = False) -> OverfitResult:
    """Optimize one image's latents (y, z) for ``steps`` Adam steps with every weight frozen.

    ``x``: 1x3xHxW in [0, 1]. ``rate``: a variable-rate model's rate (default: its middle
    point). The trade-off: ``lmbda`` if given, else the variable-rate model's lmbda at ``rate``
    (log-linear between trained points), else ``loss_cfg["lmbda"]``. ``loss_cfg``: the
    training loss config (distortion kind and weights; :func:`checkpoint_loss_config`),
    default RGB MSE. ``progress``: a tqdm bar on stderr (None: only on a terminal).
    """
    from tqdm import tqdm

    run = LatentOverfitter(model, x, steps, lr, rate, lmbda, loss_cfg, method, seed)
    with run.session():
        initial = run.evaluate()
        best, best_step, best_latents = initial, 0, run.snapshot()
        history = []
        bar = tqdm(range(run.steps), desc=f"overfit {model.registry_name}", unit="step", file=sys.stderr,
                   disable=(not progress) if progress is not None else None, leave=False)
        for t in bar:
            before = run.snapshot() if run.method == "ste" else None
            terms = run.step(t)
            history.append(terms["loss"])
            if before is not None and terms["loss"] < best["loss"]:  # ste: these are the latents' exact terms
                best, best_step, best_latents = terms, t, before
            bar.set_postfix(loss=f"{terms['loss']:.4f}", bpp=f"{terms['bpp']:.4f}", refresh=False)
        bar.close()
        if run.steps:
            final = run.evaluate()
            if final["loss"] < best["loss"]:
                best, best_step, best_latents = final, run.steps, run.snapshot()
    return OverfitResult(best_latents, run.steps, run.lr, run.method, run.loss_cfg["lmbda"], initial, best,
                         best_step, history)


def compress_latents(model: Codec, x: torch.Tensor, latents: dict[str, torch.Tensor], rate=None) -> bytes:
    """``model.compress(x, rate)`` coding ``latents`` instead of the analysis outputs."""
    with model.given_latents(**latents):
        return model.compress(x, rate=rate)


def compress_overfit(model: Codec, x: torch.Tensor, steps: int, lr: float = DEFAULT_LR, rate=None,
                     lmbda: float | None = None, loss_cfg: dict | None = None, method: str = DEFAULT_METHOD,
                     seed: int = 0, progress: bool | None = False) -> bytes:
    """:func:`overfit_latents`, then code the result: an ordinary bitstream of ``model``
    (``model.decompress`` reads it). ``steps=0`` gives exactly ``model.compress(x, rate)``."""
    if model.rates is not None and rate is None:
        rate = model.default_rate()
    result = overfit_latents(model, x, steps, lr, rate, lmbda, loss_cfg, method, seed, progress)
    return compress_latents(model, x, result.latents, rate)
