"""``python -m prune``: iterative structured pruning of a student to a kMAC/px budget.

::

    source checkpoint --profile--> C_0 (encoder, decoder kMAC/px)
    budget T (target.decoder_kmac / target.encoder_kmac, or a reference / target.ratio)
    floor  = profile with every prunable width at its minimum   -> T < floor: refused (exit 2, one line)
    for k = 1..K:                                            (DIR/step_k, resumable)
        step budget T_k = C_0 (T / C_0)^(k / K) per constrained side       (geometric schedule)
        importance (l1 | l2 | taylor | random) -> units ranked per group   (prune.importance)
        bisect the pruning ratio: prune a copy, rebuild it from its config, profile it,
            until the smallest cut meeting T_k is found                    (prune.plan)
        fine-tune S steps with the training engine (RD, or distillation with teacher=PATH)
        row: kMAC/px per side, params, real-bitstream bpp / PSNR, widths -> prune.json, wandb
        stop once T is met
    DIR/last.ckpt: the pruned, fine-tuned student, a plain checkpoint (config with layer_widths)

Iterative pruning with fine-tuning in between follows Han et al., "Learning both weights and
connections for efficient neural networks", NeurIPS 2015, and Molchanov et al., "Pruning
convolutional neural networks for resource efficient inference", ICLR 2017; a geometric schedule
removes the same *fraction* of the remaining compute per step, as the exponential schedules of
Zhu and Gupta, "To prune, or not to prune", 2017, do for sparsity.

Resume: step k saves ``pruned.ckpt`` (the cut, before fine-tuning) and the training engine's
``last.ckpt`` in ``DIR/step_k``, and ``row.json`` when done. The same command started again
skips finished steps, reloads the cut of an unfinished one and resumes its fine-tuning.
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import OmegaConf

from codec.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint, training_lmbda
from prune.graph import NotPrunable, PruningGraph
from prune.importance import IMPORTANCE_KINDS, make_importance
from prune.plan import SCOPES, meets, prune_to, score_units, smallest_reachable

__all__ = ["run", "hydra_main", "Unreachable", "PruneConfigError", "RateMismatch", "step_budget", "budget_of"]

SIDES = ("encoder", "decoder")


class Unreachable(ValueError):
    """The target is below what the unprunable layers cost."""


class PruneConfigError(ValueError):
    """A ``prune.*`` / ``target.*`` key is missing or wrong."""


class RateMismatch(ValueError):
    """The checkpoint was trained for another rate point than the fine-tuning loss."""


def _check_cfg(cfg) -> None:
    if OmegaConf.is_missing(cfg, "checkpoint") or not cfg.get("checkpoint"):
        raise PruneConfigError("no student to prune: set checkpoint=PATH")
    pc = cfg.prune
    where = "(conf/prune.yaml)"

    def whole(key, value, low):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise PruneConfigError(f"prune.{key} must be a whole number >= {low}, got {value!r} {where}")

    whole("steps", pc.steps, 1)
    whole("finetune_steps", pc.finetune_steps, 0)
    whole("round_to", pc.round_to, 1)
    whole("min_channels", pc.min_channels, 1)
    whole("bisection_iters", pc.bisection_iters, 1)
    whole("importance_batches", pc.importance_batches, 1)
    if pc.importance not in IMPORTANCE_KINDS:
        raise PruneConfigError(f"prune.importance={pc.importance!r}: use one of {', '.join(IMPORTANCE_KINDS)}")
    if pc.scope not in SCOPES:
        raise PruneConfigError(f"prune.scope={pc.scope!r}: use one of {', '.join(SCOPES)}")
    t = cfg.target
    if t.get("teacher") and (t.get("decoder_kmac") is not None or t.get("encoder_kmac") is not None):
        raise PruneConfigError("give either target.teacher (with target.ratio) or target.decoder_kmac / "
                               "target.encoder_kmac, not both")
    if not t.get("teacher") and t.get("decoder_kmac") is None and t.get("encoder_kmac") is None:
        raise PruneConfigError("no target: set target.decoder_kmac=X (and/or target.encoder_kmac=Y), or "
                               "target.teacher=vmuc target.ratio=35")
    for side in SIDES:
        v = t.get(f"{side}_kmac")
        if v is not None and not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise PruneConfigError(f"target.{side}_kmac must be a positive number of kMAC/px, got {v!r}")
    if t.get("teacher") and not (float(t.ratio) > 0):
        raise PruneConfigError(f"target.ratio must be > 0, got {t.ratio!r}")


def budget_of(target, resolution) -> dict:
    """{side: kMAC/px or None}: explicit figures, or a reference architecture's profile / ratio."""
    if target.get("teacher"):
        from profiling.verdict import reference_profile

        try:
            prof = reference_profile(target.teacher, tuple(resolution))
        except KeyError as e:
            raise PruneConfigError(f"target.teacher={target.teacher!r}: {e}") from None
        return {side: prof[side]["kmac_per_px"] / float(target.ratio) for side in SIDES}
    return {side: (None if target.get(f"{side}_kmac") is None else float(target[f"{side}_kmac"])) for side in SIDES}


def step_budget(start: dict, budget: dict, k: int, steps: int) -> dict:
    """T_k = C_0 (T / C_0)^(k / K) per constrained side (a side already within budget keeps T)."""
    out = {}
    for side, b in budget.items():
        if b is None:
            out[side] = None
        elif start[side] <= b:
            out[side] = b
        else:
            out[side] = start[side] * (b / start[side]) ** (k / steps)
    return out


def _fmt(kmac: dict, budget: dict | None = None) -> str:
    sides = [s for s in SIDES if budget is None or budget.get(s) is not None] or list(SIDES)
    return ", ".join(f"{s} {kmac[s]:.4g}" for s in sides)


def _measure(resolution):
    from profiling.counter import profile_codec

    def measure(model) -> dict:
        m = copy.deepcopy(model).cpu().float().eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prof = profile_codec(m, resolution, wall_runs=0, strict=True)
        return {side: float(prof[side]["kmac_per_px"]) for side in SIDES}

    return measure


def _check_rate(blob: dict, cfg) -> None:
    if cfg.prune.allow_rate_mismatch:
        return
    trained = training_lmbda(blob)
    if trained is None:
        return  # the checkpoint does not say; nothing to compare
    asked = float(cfg.loss.lmbda)
    if not math.isclose(trained, asked, rel_tol=1e-6):
        raise RateMismatch(f"checkpoint {cfg.checkpoint} was trained at lmbda/beta={trained:g}, fine-tuning would use "
                           f"{asked:g}: set loss.beta / loss.lmbda to {trained:g} or prune.allow_rate_mismatch=true")


def _objective(cfg, model):
    from codec.engine import RateDistortion

    if not cfg.get("teacher"):
        return RateDistortion(cfg.loss), {}
    from distill.objective import Distillation, kd_weights, probe_channels
    from distill.teacher import check_rate_point, load_teacher

    teacher, info = load_teacher(cfg.teacher)
    teacher_rate = check_rate_point(info, cfg.loss, bool(cfg.distill.get("allow_rate_mismatch")), model.rates)
    weights = kd_weights(cfg.distill.loss)
    features = dict(cfg.distill.loss.get("features") or {})
    channels = probe_channels(teacher, list(features.values()))
    torch.manual_seed(int(cfg.seed) + 1)  # adapters
    objective = Distillation(cfg.loss, weights, model, channels, teacher=teacher, features=features,
                             teacher_rate=teacher_rate)
    return objective, {**info.as_meta(), "distill_loss": OmegaConf.to_container(cfg.distill.loss, resolve=True)}


def _accumulate_gradients(model, cfg, batches: int) -> None:
    """Gradients of the fine-tuning objective over a few seeded training batches (taylor)."""
    from codec.data import make_sampler
    from codec.engine import step_seed

    objective, _ = _objective(cfg, model)
    sampler = make_sampler(cfg.data)
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        for b in range(batches):
            gen = torch.Generator().manual_seed(step_seed(int(cfg.seed), -1 - b, 0))
            x = sampler.sample(int(cfg.trainer.batch_size), gen)
            torch.manual_seed(step_seed(int(cfg.seed), -1 - b, 0) + 1)
            objective(model, x)["loss"].backward()
    finally:
        if hasattr(sampler, "close"):
            sampler.close()


def _step_cfg(cfg, out_dir: Path, k: int):
    """The run config of step k's fine-tuning: max_steps = prune.finetune_steps, a final
    validation with real bitstreams, this step's directory, the wandb group of the run."""
    s = int(cfg.prune.finetune_steps)
    ve = int(cfg.trainer.get("val_every") or 0)
    over = {"trainer": {"max_steps": s, "val_every": min(ve, s) if ve > 0 else s, "init_from": None,
                        "resume": "auto"}}
    if cfg.get("logger") and cfg.logger.get("name") == "wandb":
        over["logger"] = {"group": cfg.logger.get("group") or out_dir.name, "run_name": f"{out_dir.name}/step_{k}"}
    base = copy.deepcopy(cfg)
    OmegaConf.set_struct(base, False)
    return OmegaConf.merge(base, over)


def _row(k: int, model, kmac: dict, budget_k: dict | None, ratio: float, val: dict, removed: int, ckpt: Path) -> dict:
    return {"step": k, "ratio": ratio, "encoder_kmac_per_px": kmac["encoder"], "decoder_kmac_per_px": kmac["decoder"],
            "step_budget": budget_k, "params": int(sum(p.numel() for p in model.parameters())),
            "val": val, "bpp": val.get("bpp"), "psnr_rgb": val.get("psnr_rgb"), "psnr_ycbcr": val.get("psnr_ycbcr"),
            "removed_channels": removed, "latent": int(model.latent), "hyper": int(model.hyper),
            "widths": model.layer_widths().as_config(), "checkpoint": str(ckpt)}


def _validate(model, cfg) -> dict:
    from codec.engine import eval_paths, validate

    return validate(model, eval_paths(cfg.data.get("eval_dir"), cfg.data.get("max_eval_images")))


def _count_channels(model) -> int:
    lw = model.layer_widths().as_config()

    def total(v):
        if isinstance(v, (list, tuple)):
            return sum(total(x) for x in v)
        return int(v or 0)

    return sum(total(v) for v in lw.values()) + int(model.latent) + int(model.hyper)


def run(cfg, out_dir: str | os.PathLike | None = None) -> dict:
    """Prune per ``cfg`` (conf/prune.yaml) into ``out_dir`` (default: the Hydra run directory);
    returns the summary written to ``prune.json``."""
    from codec.engine import Trainer, command_line
    from profiling.cli import parse_resolution

    if out_dir is None:
        from hydra.core.hydra_config import HydraConfig

        out_dir = HydraConfig.get().runtime.output_dir
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_cfg(cfg)
    pc = cfg.prune
    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    try:
        resolution = parse_resolution(cfg.target.get("resolution"))
    except ValueError as e:
        raise PruneConfigError(f"target.{e}") from None
    model, blob = load_checkpoint(cfg.checkpoint)
    latent = bool(pc.latent)
    if model.rates is None:
        _check_rate(blob, cfg)  # a variable-rate model fine-tunes at its own trained points
    measure = _measure(resolution)
    budget = budget_of(cfg.target, resolution)
    opts = dict(round_to=int(pc.round_to), min_channels=int(pc.min_channels), latent=latent)

    graph = PruningGraph(model, latent=latent)  # refuses what cannot be pruned
    start = measure(model)
    floor, _ = smallest_reachable(model, score_units(graph, make_importance("l1")), measure, **opts)
    if not meets(floor, budget):
        short = [s for s in SIDES if budget[s] is not None and floor[s] > budget[s]]
        kept = "stems, final 1x1s and ShuffleNetV2 unit widths kept" + ("" if latent else ", latent widths (y, z) kept")
        raise Unreachable(
            f"target {', '.join(f'{s} {budget[s]:.4g}' for s in short)} kMAC/px is below the smallest reachable "
            f"{', '.join(f'{s} {floor[s]:.4g}' for s in short)} kMAC/px for {model.registry_name} "
            f"from {cfg.checkpoint} "
            f"(every prunable width at max(prune.min_channels={pc.min_channels}, prune.round_to={pc.round_to}); "
            f"{kept})")

    summary = {
        "command": command_line(), "source": str(cfg.checkpoint), "source_sha256": file_sha256(cfg.checkpoint)[:16],
        "codec": model.registry_name, "resolution": list(resolution),
        "target": {"encoder": budget["encoder"], "decoder": budget["decoder"], "reference": cfg.target.get("teacher"),
                   "ratio": float(cfg.target.ratio) if cfg.target.get("teacher") else None},
        "smallest_reachable": floor, "start": start,
        "prune": OmegaConf.to_container(pc, resolve=True), "teacher": cfg.get("teacher"),
        "groups": {"prunable": [{"root": g.root, "size": g.size, "members": [f"{m}.{io}" for m, io in g.members]}
                                for g in graph.groups],
                   "kept": [{"root": r, "reason": why} for r, why in graph.refused]},
        "rows": [], "met": False, "checkpoint": str(out / "last.ckpt"),
    }
    del graph

    def write():
        (out / "prune.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")

    print(f"prune: {model.registry_name} at {_fmt(start)} kMAC/px; target {_fmt(budget, budget)}; "
          f"smallest reachable {_fmt(floor, budget)}")
    summary["rows"].append(_row(0, model, start, None, 0.0, _validate(model, cfg), 0, Path(cfg.checkpoint)))
    write()
    kmac = start
    channels_before = _count_channels(model)
    steps = int(pc.steps)
    for k in range(1, steps + 1):
        if meets(kmac, budget):
            break
        step_dir = out / f"step_{k}"
        step_dir.mkdir(parents=True, exist_ok=True)
        row_file = step_dir / "row.json"
        if row_file.exists() and (step_dir / "last.ckpt").exists():  # finished before a restart
            row = json.loads(row_file.read_text())
            model, _ = load_checkpoint(step_dir / "last.ckpt")
            kmac = {"encoder": row["encoder_kmac_per_px"], "decoder": row["decoder_kmac_per_px"]}
            summary["rows"].append(row)
            write()
            print(f"prune step {k}/{steps}: done before ({_fmt(kmac, budget)} kMAC/px)")
            continue
        budget_k = step_budget(start, budget, k, steps)
        cut_file = step_dir / "pruned.ckpt"
        if cut_file.exists():
            model, cut_blob = load_checkpoint(cut_file)
            ratio = float(cut_blob["meta"]["prune_ratio"])
            kmac = measure(model)
        else:
            if pc.importance == "taylor":
                _accumulate_gradients(model, cfg, int(pc.importance_batches))
            if pc.importance == "random":
                torch.manual_seed(int(cfg.seed) + k)
            graph = PruningGraph(model, latent=latent)
            rankings = score_units(graph, make_importance(pc.importance))
            model.zero_grad(set_to_none=True)
            del graph
            result = prune_to(model, rankings, budget_k, measure, scope=pc.scope, iters=int(pc.bisection_iters),
                              **opts)
            model, ratio, kmac = result.model, result.ratio, result.kmac
            save_checkpoint(cut_file, model, meta={"prune_step": k, "prune_ratio": ratio, "source": str(cfg.checkpoint),
                                                   "kmac_per_px": kmac, "step_budget": budget_k})
        removed = channels_before - _count_channels(model)
        print(f"prune step {k}/{steps}: ratio {ratio:.4f} -> {_fmt(kmac, budget)} kMAC/px "
              f"(step budget {_fmt(budget_k, budget)}), {removed} channels removed so far")
        if int(pc.finetune_steps) > 0:
            model.train()
            objective, teacher_meta = _objective(cfg, model)
            step_cfg = _step_cfg(cfg, out, k)
            figures = {"prune_step": k, "prune_ratio": ratio, "encoder_kmac_per_px": kmac["encoder"],
                       "decoder_kmac_per_px": kmac["decoder"],
                       "params": int(sum(p.numel() for p in model.parameters()))}
            meta = {"prune_source": str(cfg.checkpoint), "prune_step": k, "prune_ratio": ratio, **teacher_meta}
            trainer = Trainer(step_cfg, model, objective, step_dir, meta=meta, callbacks=[lambda t, s: dict(figures)])
            fit = trainer.fit()
            model = trainer.model.cpu().float()
            val = fit.get("val") or _validate(model, cfg)  # empty when the fine-tuning had finished before a restart
        else:
            val = _validate(model, cfg)
            save_checkpoint(step_dir / "last.ckpt", model, meta={"prune_step": k, "prune_ratio": ratio, "val": val})
        model.eval()
        row = _row(k, model, kmac, budget_k, ratio, val, removed, step_dir / "last.ckpt")
        row_file.write_text(json.dumps(row, indent=2, default=str) + "\n")
        summary["rows"].append(row)
        write()
    summary["met"] = meets(kmac, budget)
    summary["end"] = kmac
    save_checkpoint(out / "last.ckpt", model.cpu().eval(),
                    meta={"prune": {k: summary[k] for k in ("source", "source_sha256", "target", "resolution", "met")},
                          "rows": [{k: r[k] for k in ("step", "ratio", "encoder_kmac_per_px", "decoder_kmac_per_px",
                                                         "params", "bpp", "psnr_rgb")} for r in summary["rows"]],
                          "val": summary["rows"][-1]["val"],
                          "config": OmegaConf.to_container(cfg, resolve=True)})
    write()
    print(f"prune: {'met' if summary['met'] else 'NOT met'}: {_fmt(kmac, budget)} kMAC/px -> {out / 'last.ckpt'}")
    return summary


def hydra_main(cfg) -> None:
    """The Hydra task: refusals (unreachable target, bad keys, checkpoint, rate point, a model
    that is not a student) are one line on stderr and exit status 2."""
    from distill.teacher import RateMismatch as TeacherRateMismatch

    try:
        summary = run(cfg)
    except (Unreachable, PruneConfigError, RateMismatch, TeacherRateMismatch, CheckpointError, NotPrunable) as e:
        print(f"prune: {e}", file=sys.stderr)
        sys.exit(2)
    if not summary["met"]:  # cannot happen after the floor check, but never report a miss as success
        print(f"prune: the target was not met ({_fmt(summary['end'])} kMAC/px)", file=sys.stderr)
        sys.exit(1)
    # a normal return on success: under -m (multirun) Hydra goes on to the next job
