"""The distillation objective: the student's own rate-distortion loss plus weighted KD terms.

::

    loss = R + lmbda * 255^2 * (w_gt * D(x_hat, x) + w_output * D(x_hat, x_hat_T))
             + w_latent * MSE(A(y), y_T)
             + w_entropy * [MSE(A(mu), mu_T) + MSE(A(log sigma), log sigma_T)]
             + w_feature * sum over pairs MSE(A(f), f_T)

``D`` is the loss's own distortion (YCbCr 6:1:1 MSE for ``loss=vmuc``), so output KD is
measured where the student is judged; ``A`` are 1x1 adapters where channels or grids differ,
owned by this objective (so they train with the student and are saved in the training state,
never in the student's weights). The latent, entropy and feature terms are in their own units,
beside the rate, as in Allemand et al.'s recipe (PRIM), where latent MSE sits beside pixel MSE;
unlike that recipe the student's rate term always stays. With every KD weight at 0 and
``w_gt = 1`` this is exactly the scratch objective (codec.engine.RateDistortion).

The teacher's outputs come from the batch (``batch["teacher"]``, a teacher-output cache) or
from the live teacher, which is kept out of this module's parameters and state.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from codec.base import Codec
from codec.engine.objectives import Objective, distortion, draw_rate_points, rd_loss, unwrap
from distill.losses import Adapter, entropy_kd, feature_kd, latent_kd, log_scales, output_kd
from distill.teacher import teacher_outputs

__all__ = ["Distillation", "WEIGHT_KEYS", "probe_channels", "kd_weights"]

#: weights a distill/loss preset sets (conf/distill/loss/*.yaml).
WEIGHT_KEYS = ("gt", "output", "latent", "entropy", "feature")


def kd_weights(node) -> dict[str, float]:
    """The five weights of a preset, checked: numbers >= 0, ``gt`` > 0 (the ground truth
    always anchors the student)."""
    unknown = set(node) - {*WEIGHT_KEYS, "name", "features"}
    if unknown:
        raise ValueError(f"distill.loss: unknown keys {sorted(unknown)}; known: {', '.join(WEIGHT_KEYS)}, features")
    weights = {}
    for key in WEIGHT_KEYS:
        try:
            weights[key] = float(node.get(key, 0.0))
        except (TypeError, ValueError):
            raise ValueError(f"distill.loss.{key} must be a number, got {node.get(key)!r}") from None
        if not weights[key] >= 0:
            raise ValueError(f"distill.loss.{key} must be >= 0, got {weights[key]}")
    if weights["gt"] <= 0:
        raise ValueError("distill.loss.gt must be > 0: the student's own distortion is always part of the loss")
    return weights


@torch.no_grad()
def probe_channels(model: Codec, feature_taps=()) -> dict[str, int]:
    """Channel counts of what KD reads from ``model`` (a forward on one stride-sized image)."""
    s = model.stride
    with model._eval_mode(), model.at_rate(model.default_rate()):
        out = model(torch.zeros(1, 3, s, s, device=next(model.parameters()).device))
    taps = out["taps"]
    chans = {"x_hat": out["x_hat"].shape[1], "y": taps["y"].shape[1], "scales": taps["scales"].shape[1]}
    if "means" in taps:
        chans["means"] = taps["means"].shape[1]
    for name in feature_taps:
        if name not in taps:
            raise ValueError(f"{model.registry_name} has no tap {name!r}; its taps: {', '.join(sorted(taps))}")
        chans[f"tap:{name}"] = taps[name].shape[1]
    return chans


class Distillation(Objective):
    """KD objective; ``features`` maps student tap names to teacher tap names."""

    def __init__(self, loss_cfg, weights: dict[str, float], student: Codec, teacher_channels: dict[str, int] | None,
                 teacher: Codec | None = None, features: dict[str, str] | None = None,
                 teacher_rate: float | None = None):
        super().__init__()
        self.loss_cfg = loss_cfg
        self.teacher_rate = teacher_rate  # a fixed-rate student's point on a variable-rate teacher
        self.weights = dict(weights)
        self.lmbda_d = float(loss_cfg["lmbda"]) * 255.0**2
        self.features = dict(features or {}) if self.weights["feature"] > 0 else {}
        self.needs_teacher = any(self.weights[k] > 0 for k in ("output", "latent", "entropy", "feature"))
        self._teacher = [teacher]  # a list, so the teacher is neither a parameter nor state of this module
        if self.weights["feature"] > 0 and not self.features:
            raise ValueError("distill.loss.feature > 0 needs tap pairs: distill.loss.features={student_tap: teacher_tap}")
        if not self.needs_teacher:
            return
        if teacher_channels is None:
            raise ValueError("distillation needs the teacher's outputs: a teacher checkpoint or a cache")
        s = probe_channels(student, list(self.features))
        t = teacher_channels
        if self.weights["latent"] > 0:
            self.latent_adapter = Adapter(s["y"], t["y"])
        if self.weights["entropy"] > 0:
            self.teacher_has_means = "means" in t
            s_in = s["scales"] + (s["means"] if "means" in s else 0)
            t_out = t["scales"] + (t["means"] if self.teacher_has_means else 0)
            self.entropy_adapter = Adapter(s_in, t_out)
        for name, t_name in self.features.items():
            if f"tap:{t_name}" not in t:
                raise ValueError(f"distill.loss.features: the teacher has no tap {t_name!r}; its taps in this run: "
                                 f"{', '.join(k[4:] for k in t if k.startswith('tap:')) or 'none'}")
        self.feature_adapters = nn.ModuleDict({
            name.replace(".", "_"): Adapter(s[f"tap:{name}"], t[f"tap:{t_name}"]) for name, t_name in self.features.items()})

    @property
    def teacher_taps(self) -> list[str]:
        return list(self.features.values())

    def _targets(self, batch, x: torch.Tensor, rate) -> dict[str, torch.Tensor]:
        if isinstance(batch, dict) and "teacher" in batch:
            return batch["teacher"]
        teacher = self._teacher[0]
        if teacher is None:
            raise ValueError("distillation: no teacher outputs in the batch and no live teacher")
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        return teacher_outputs(teacher, x, self.teacher_taps, rate if rate is not None else self.teacher_rate)

    def forward(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        x = batch["x"] if isinstance(batch, dict) else batch
        rate, lmbda = draw_rate_points(model, x.shape[0])
        with unwrap(model).at_rate(rate):
            out = model(x)
        terms = rd_loss(out, x, self.loss_cfg, lmbda)
        w = self.weights
        bpp = terms["bpp"]
        total = bpp + w["gt"] * (terms["loss"] - bpp)  # R + w_gt * lmbda * D (MS-SSIM mix included)
        if self.needs_teacher:
            t = self._targets(batch, x, rate)
            taps = out["taps"]
            if w["output"] > 0:
                if lmbda is None:
                    terms["kd_output"] = output_kd(out["x_hat"], t["x_hat"], self.loss_cfg)
                    total = total + self.lmbda_d * w["output"] * terms["kd_output"]
                else:  # each crop weighed by its own rate point's lambda, like its distortion
                    per_crop = distortion(out["x_hat"], t["x_hat"], self.loss_cfg, per_sample=True)
                    terms["kd_output"] = per_crop.mean()
                    total = total + w["output"] * 255.0**2 * (lmbda.to(per_crop) * per_crop).mean()
            if w["latent"] > 0:
                y_t = t["y"]
                terms["kd_latent"] = latent_kd(self.latent_adapter(taps["y"], y_t.shape[-2:]), y_t)
                total = total + w["latent"] * terms["kd_latent"]
            if w["entropy"] > 0:
                s_params = torch.cat([p for p in (taps.get("means"), log_scales(taps["scales"])) if p is not None], 1)
                adapted = self.entropy_adapter(s_params, t["scales"].shape[-2:])
                m_t = t["means"] if self.teacher_has_means else None
                n_means = m_t.shape[1] if m_t is not None else 0
                terms["kd_entropy"] = entropy_kd(adapted[:, :n_means] if n_means else None, adapted[:, n_means:],
                                                 m_t, t["scales"])
                total = total + w["entropy"] * terms["kd_entropy"]
            if w["feature"] > 0:
                kd = 0.0
                for name, t_name in self.features.items():
                    f_t = t[f"tap:{t_name}"]
                    f = self.feature_adapters[name.replace(".", "_")](taps[name], f_t.shape[-2:])
                    kd = kd + feature_kd(f, f_t)
                terms["kd_feature"] = kd
                total = total + w["feature"] * terms["kd_feature"]
        terms["loss"] = total
        return terms
