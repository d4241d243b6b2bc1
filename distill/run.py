"""A distillation run: the training engine with the :class:`~distill.objective.Distillation`
objective, a teacher checkpoint or a teacher-output cache, and the 35x gate before and after.

``run(cfg)`` returns the summary; the Hydra app returns ``summary["val_rd_loss"]`` (the
validation rate-distortion loss from real bitstreams), which is what an Optuna sweep minimizes.
A student that fails the gate is refused before any training (``GateFailed``); under Optuna
the app reports it as an infinitely bad trial instead, so a study skips such configurations.
"""
from __future__ import annotations

import copy
import math
import os
import sys
from pathlib import Path

import torch

from omegaconf import OmegaConf

from codec.engine import Trainer
from codec.train import build_model
from distill.cache import CacheMismatch, TeacherCache
from distill.objective import Distillation, kd_weights
from distill.teacher import check_rate_point, load_teacher

__all__ = ["run", "GateFailed", "gate_row", "val_rd_loss"]

class GateFailed(RuntimeError):
    """The student does not pass the 35x gate against the reference teacher architecture."""


def gate_row(model, gate_cfg) -> dict:
    """Profile ``model`` and the gate's reference teacher (registry defaults) at the gate's
    resolution, strictly; the gate's verdict row (profiling.verdict)."""
    from profiling import gate
    from profiling.cli import parse_resolution
    from profiling.counter import profile_codec
    from profiling.verdict import reference_profile

    res = parse_resolution(gate_cfg.get("resolution", "768x512"))
    student = profile_codec(copy.deepcopy(model).cpu().float().eval(), res, wall_runs=0, strict=True)
    return gate(student, reference_profile(gate_cfg.teacher, res), float(gate_cfg.get("target", 35)))


def val_rd_loss(val: dict, loss_cfg, rates=None) -> float | None:
    """bpp + lmbda * 255^2 * MSE from real bitstreams, the MSE in the loss's own space
    (YCbCr 6:1:1 for loss=vmuc, RGB otherwise), recovered from the validation PSNR; for a
    variable-rate model (``rates``) averaged over its trained points."""
    key = "psnr_ycbcr" if loss_cfg.get("distortion") == "ycbcr_mse" else "psnr_rgb"
    if not val or key not in val:
        return None
    if rates is not None:  # variable rate: the mean over the trained points, each at its own lambda
        return float(sum(val[f"bpp@{i:g}"] + lm * 255.0**2 * 10 ** (-val[f"{key}@{i:g}"] / 10)
                         for i, lm in enumerate(rates)) / len(rates))
    return float(val["bpp"] + float(loss_cfg["lmbda"]) * 255.0**2 * 10 ** (-val[key] / 10))


def _sweep_group() -> str | None:
    """The wandb group of a Hydra multirun: the sweep directory's name, shared by its jobs."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None
    except ValueError:  # HydraConfig not set: called outside a Hydra app (tests, scripts)
        return None


def run(cfg, out_dir: str | os.PathLike | None = None) -> dict:
    if out_dir is None:
        from hydra.core.hydra_config import HydraConfig

        out_dir = HydraConfig.get().runtime.output_dir
    dc = cfg.distill
    weights = kd_weights(dc.loss)
    features = dict(dc.loss.get("features") or {})
    model, provenance = build_model(cfg)
    if dc.gate.get("before_training", True):
        row = gate_row(model, dc.gate)
        if not row["passed"]:
            raise GateFailed(f"{model.registry_name} fails the {row['target']:g}x gate against {row['teacher']}: "
                             f"encoder {row['encoder_ratio']:.1f}x, decoder {row['decoder_ratio']:.1f}x "
                             f"({row['student_kmac_per_px']['encoder']:.3f} / {row['student_kmac_per_px']['decoder']:.3f}"
                             f" kMAC/px); refused before training")

    needs_teacher = any(weights[k] > 0 for k in ("output", "latent", "entropy", "feature"))
    teacher, info, cache, channels = None, None, None, None
    # With a cache every preset, `none` included, trains on the cached crops: the runs of a sweep
    # then see the same batches and differ only in their objective.
    teacher_rate = None
    if needs_teacher or dc.get("cache"):
        if dc.get("cache") and model.rates is not None:
            raise CacheMismatch("a teacher-output cache holds the teacher at one rate point; a variable-rate student "
                                "distills from a live teacher (drop distill.cache)")
        if dc.get("cache"):
            cache = TeacherCache(dc.cache)
            if cfg.get("teacher"):
                _, info = load_teacher(cfg.teacher)
                check_rate_point(info, cfg.loss, bool(dc.get("allow_rate_mismatch")))
            cache.check(teacher=info, lmbda=float(cfg.loss.lmbda), crop_size=int(cfg.data.crop_size),
                        train_dir=cfg.data.get("train_dir"), features=list(features.values()),
                        allow_rate_mismatch=bool(dc.get("allow_rate_mismatch")))
            channels = cache.channels()
            teacher_meta = {"teacher_path": cache.manifest["teacher"], "teacher_sha256": cache.manifest["teacher_sha256"],
                            "teacher_codec": cache.manifest["teacher_codec"], "teacher_lmbda": cache.manifest["teacher_lmbda"],
                            "teacher_cache": str(dc.cache)}
        else:
            teacher, info = load_teacher(cfg.get("teacher"))
            teacher_rate = check_rate_point(info, cfg.loss, bool(dc.get("allow_rate_mismatch")), model.rates)
            from distill.objective import probe_channels

            channels = probe_channels(teacher, list(features.values()))
            teacher_meta = {**info.as_meta(), "teacher_cache": None}
    else:
        teacher_meta = {}
        if cfg.get("teacher"):  # recorded even when no KD term reads it: the baseline of a sweep
            _, info = load_teacher(cfg.teacher)
            teacher_meta = info.as_meta()

    torch.manual_seed(int(cfg.seed) + 1)  # adapters
    objective = Distillation(cfg.loss, weights, model, channels, teacher=teacher, features=features,
                             teacher_rate=teacher_rate)
    group = cfg.get("logger", {}).get("group") if cfg.get("logger") else None
    if cfg.get("logger") and cfg.logger.get("name") == "wandb" and not group:
        group = _sweep_group()
        if group:
            cfg = OmegaConf.merge(cfg, {"logger": {"group": group}})
    meta = {**provenance, **teacher_meta, "distill_loss": OmegaConf.to_container(dc.loss, resolve=True),
            "wandb_group": group}

    def finish(trainer: Trainer, summary: dict) -> dict:
        m = trainer.model
        extra = {"val_rd_loss": val_rd_loss(summary.get("val") or {}, cfg.loss, m.rates), "lmbda": float(cfg.loss.lmbda),
                 "rates": list(m.rates) if m.rates is not None else None,
                 "architecture_hash": m.config_hash().hex(),
                 "transform": (m.config.get("transform") or {}).get("block"),
                 "context": (m.config.get("context") or {}).get("kind")}
        if dc.gate.get("after_training", True):
            row = gate_row(trainer.model, dc.gate)
            extra.update({"encoder_kmac_per_px": row["student_kmac_per_px"]["encoder"],
                          "decoder_kmac_per_px": row["student_kmac_per_px"]["decoder"],
                          "encoder_ratio": row["encoder_ratio"], "decoder_ratio": row["decoder_ratio"],
                          "gate_passed": row["passed"], "gate_target": row["target"], "gate_teacher": row["teacher"]})
        return extra

    batches = cache.batches(int(cfg.trainer.batch_size)) if cache is not None else None
    return Trainer(cfg, model, objective, Path(out_dir), batches=batches, meta=meta, callbacks=[finish]).fit()


def hydra_objective(cfg) -> float:
    """The Hydra task: runs one distillation and returns the validation RD loss (Optuna's
    objective); a gate failure is an infinitely bad trial when sweeping, an error otherwise."""
    from codec.checkpoint import CheckpointError
    from distill.cache import CacheMismatch
    from distill.teacher import RateMismatch

    try:
        summary = run(cfg)
    except GateFailed as e:
        print(f"distill: {e}", file=sys.stderr)
        if _sweep_group() is not None:
            return math.inf
        sys.exit(1)
    except (CheckpointError, CacheMismatch, RateMismatch) as e:
        print(f"distill: {e}", file=sys.stderr)
        sys.exit(2)
    value = summary.get("val_rd_loss")
    return math.inf if value is None else float(value)
