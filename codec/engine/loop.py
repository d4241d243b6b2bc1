"""The training loop: how a codec is trained, whatever the objective.

:class:`Trainer` runs an :class:`~codec.engine.objectives.Objective` over seeded batches:

* **Exact resume.** The batch and the quantization noise of step s come from generators
  seeded with (seed, s, rank), and the learning rate is a pure function of s, so a run killed
  at any point (SIGKILL included) and resumed from ``last.ckpt`` follows the same loss curve as
  an uninterrupted one. The objective's own parameters are resumed with the model.
* **NaN guard.** A non-finite loss or gradient stops the run with a message naming the step;
  the last checkpoint on disk is the last good one (a bad state is never saved).
* **Validation with real bitstreams** (:mod:`codec.engine.validation`) every ``val_every``.
* CPU or CUDA chosen automatically; several processes through ``torchrun``
  (DistributedDataParallel; gloo on CPUs, NCCL on GPUs); logging through
  :class:`~codec.engine.run_log.RunLog`; ``last.ckpt`` through
  :class:`~codec.engine.checkpoints.RunCheckpoint`.

Callers build the model (from config or ``trainer.init_from``) and the objective; the
Trainer owns everything else. ``codec.train.run`` is the rate-distortion caller.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from codec.base import Codec
from codec.engine.checkpoints import RunCheckpoint
from codec.engine.objectives import Objective
from codec.engine.run_log import RunLog
from codec.engine.validation import eval_paths, validate

__all__ = ["Trainer", "TrainingDiverged", "learning_rate", "step_seed", "command_line", "BatchSource"]

#: ``batches(step, generator) -> batch``: the batch of a step, drawn only from ``generator``.
BatchSource = Callable[[int, torch.Generator], Any]
#: ``callback(trainer, summary) -> dict | None``, called on rank 0 at the end of ``fit``; what
#: it returns is merged into the summary and the wandb run summary (profiler figures, the gate).
EndCallback = Callable[["Trainer", dict], "dict | None"]


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN/inf; the message names the step and the last good checkpoint."""


def learning_rate(step: int, trainer_cfg) -> float:
    """Step decay at fractions of max_steps (VMuC/CompressAI-style) after an optional linear
    warm-up; a pure function of the step, so resume needs no scheduler state."""
    lr = float(trainer_cfg.lr)
    for frac in trainer_cfg.get("lr_decay_at", []) or []:
        if step >= int(float(frac) * int(trainer_cfg.max_steps)):
            lr *= float(trainer_cfg.get("lr_gamma", 0.1))
    warmup = int(trainer_cfg.get("warmup_steps", 0) or 0)
    if warmup and step < warmup:
        lr *= (step + 1) / warmup
    return lr


def step_seed(seed: int, step: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + step * 7919 + rank * 104_729) % (2**63)


def command_line() -> str:
    """The command as typed: ``python -m PKG args...`` for a package's __main__ or a module."""
    prog = Path(sys.argv[0])
    if prog.name == "__main__.py":
        prog_name = f"python -m {prog.parent.name}"
    elif prog.suffix == ".py" and prog.parent.name in ("codec", "teacher", "student", "bench", "profiling", "distill",
                                                       "prune"):
        prog_name = f"python -m {prog.parent.name}.{prog.stem}"
    else:
        prog_name = str(prog)
    return " ".join([prog_name, *sys.argv[1:]])


def _device(cfg_device: str | None, local_rank: int) -> torch.device:
    if cfg_device in (None, "auto"):
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg_device)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _check_trainer_cfg(tc) -> None:
    def positive(key, value):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"trainer.{key} must be a whole number >= 1, got {value!r} (conf/trainer/default.yaml)")

    positive("max_steps", tc.max_steps)
    positive("batch_size", tc.batch_size)
    minutes = tc.get("max_minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes > 0):
        raise ValueError(f"trainer.max_minutes must be a number of minutes > 0 (or null), got {minutes!r}")
    lr = float(tc.lr)
    if not lr > 0:
        raise ValueError(f"trainer.lr must be > 0, got {tc.lr!r}")
    for key in ("checkpoint_every", "val_every", "log_every", "warmup_steps"):
        v = tc.get(key, 0)
        if v is not None and (not isinstance(v, int) or v < 0):
            raise ValueError(f"trainer.{key} must be a whole number >= 0, got {v!r}")
    for frac in tc.get("lr_decay_at", []) or []:
        if not 0 <= float(frac) <= 1:
            raise ValueError(f"trainer.lr_decay_at holds fractions of max_steps in [0, 1], got {frac!r}")


class Trainer:
    """Train ``model`` on ``objective``; ``fit()`` writes ``last.ckpt``, ``metrics.jsonl`` and
    ``summary.json`` into ``out_dir`` and returns the summary.

    ``cfg`` is the run's config (``trainer``, ``data``, ``seed``, ``logger``; the whole node is
    recorded in checkpoints and in wandb). ``batches`` defaults to crops from
    ``codec.data.make_sampler(cfg.data)``. ``meta`` is extra provenance recorded in every
    checkpoint and the summary (e.g. ``init_from``, the teacher of a distillation).
    """

    def __init__(self, cfg, model: Codec, objective: Objective, out_dir: str | os.PathLike, *,
                 batches: BatchSource | None = None, meta: dict | None = None,
                 callbacks: list[EndCallback] = ()):
        self.cfg, self.tc = cfg, cfg.trainer
        _check_trainer_cfg(self.tc)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = _device(self.tc.get("device", "auto"), self.local_rank)
        self.model = model.to(self.device)
        self.objective = objective.to(self.device)
        self.batches = batches
        self.meta = dict(meta or {})
        self.callbacks = list(callbacks)
        self.checkpoint = RunCheckpoint(self.out_dir, self.rank)
        self.val_metrics: dict = {}
        from omegaconf import OmegaConf

        # the run's config as recorded in every checkpoint, resolved once
        self._config = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)

    # -- pieces ---------------------------------------------------------------------------
    def _init_distributed(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)

    def _default_batches(self) -> BatchSource:
        from codec.data import make_sampler

        self._sampler = make_sampler(self.cfg.data)
        batch_size = int(self.tc.batch_size)
        return lambda step, gen: self._sampler.sample(batch_size, gen)

    def _meta(self) -> dict:
        return {"config": self._config, "val": self.val_metrics, "torch": str(torch.__version__), **self.meta}

    def _out_of_time(self, t_start: float, limit: float) -> bool:
        """Past the wall-time limit? Every rank takes rank 0's answer, so they stop together."""
        over = torch.tensor([float(time.perf_counter() - t_start > limit)], device=self.device)
        if self.world > 1:
            torch.distributed.broadcast(over, src=0)
        return bool(over.item())

    def _sync_objective_grads(self) -> None:
        """DDP averages the model's gradients; the objective's own parameters (adapters) are
        averaged here so every rank keeps the same copy."""
        if self.world > 1:
            import torch.distributed as dist

            for p in self.objective.trainables():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world

    def _guard(self, what: str, value: torch.Tensor, step: int) -> None:
        if not torch.isfinite(value):
            raise TrainingDiverged(f"{what} became {value.item()} at step {step}; "
                                   f"last good checkpoint: {self.checkpoint.describe()}")

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        import json

        from tqdm import tqdm

        tc, rank = self.tc, self.rank
        if tc.get("threads"):
            torch.set_num_threads(int(tc.threads))
        self._init_distributed()
        model, objective = self.model, self.objective
        params = list(model.parameters()) + objective.trainables()
        optimizer = torch.optim.Adam(params, lr=float(tc.lr))
        start_step = 0
        src = self.checkpoint.source(tc.get("resume", "auto"))
        if src is not None:
            start_step = self.checkpoint.resume(src, model, objective, optimizer)
            if rank == 0:
                print(f"resumed from {src} at step {start_step}")
        net = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        batches = self.batches or self._default_batches()
        val_paths = eval_paths(self.cfg.data.get("eval_dir"), self.cfg.data.get("max_eval_images"))
        log = RunLog(self.cfg, self.out_dir, rank, extra_config=self.meta)
        log.truncate(start_step)
        max_steps, seed = int(tc.max_steps), int(self.cfg.seed)
        log_every = max(1, int(tc.get("log_every", 10) or 10))
        ckpt_every = int(tc.get("checkpoint_every", 0) or 0)
        val_every = int(tc.get("val_every", 0) or 0)
        clip = float(tc.get("grad_clip", 0) or 0)
        t_start = time.perf_counter()
        time_limit = 60.0 * float(tc.get("max_minutes") or 0)
        stopped_at = None
        summary: dict = {}
        try:
            bar = tqdm(range(start_step, max_steps), initial=start_step, total=max_steps,
                       desc=f"train {model.registry_name}", disable=rank != 0 or not tc.get("progress", True),
                       dynamic_ncols=True)
            if tc.get("val_at_start", False) and start_step == 0 and rank == 0:
                log.log({"step": 0, **{f"val/{k}": v for k, v in validate(model, val_paths).items()}})
            model.train()
            objective.train()
            for step in bar:
                s = step_seed(seed, step, rank)
                batch = _to(batches(step, torch.Generator().manual_seed(s)), self.device)
                torch.manual_seed(s + 1)  # quantization noise
                if self.device.type == "cuda":
                    torch.cuda.manual_seed(s + 1)
                lr = learning_rate(step, tc)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                terms = objective(net, batch)
                loss = terms["loss"]
                self._guard("loss", loss, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._sync_objective_grads()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
                self._guard("gradient norm", grad_norm, step)
                optimizer.step()
                done = step + 1
                if done % log_every == 0 or done == max_steps:
                    row = {"step": done, "lr": lr, **{k: float(v.detach()) for k, v in terms.items()}}
                    if "mse" in terms:
                        row["psnr"] = float(-10 * torch.log10(terms["mse"].detach().clamp_min(1e-12)))
                    log.log(row)
                    bar.set_postfix({k: f"{row[k]:.4g}" for k in ("loss", "bpp", "psnr") if k in row})
                if val_every and (done % val_every == 0 or done == max_steps) and rank == 0:
                    self.val_metrics = validate(model, val_paths)
                    log.log({"step": done, **{f"val/{k}": v for k, v in self.val_metrics.items()}})
                if (ckpt_every and done % ckpt_every == 0) or done == max_steps:
                    self.checkpoint.save(model, objective, optimizer, done, self._meta(), final=done == max_steps)
                if time_limit and done < max_steps and self._out_of_time(t_start, time_limit):
                    # a time-boxed run (a lent GPU, a session): save and stop; rerunning resumes here
                    self.checkpoint.save(model, objective, optimizer, done, self._meta(), final=False)
                    stopped_at = done
                    if rank == 0:
                        print(f"trainer.max_minutes={tc.max_minutes}: stopped at step {done} of {max_steps}; "
                              f"rerun the same command to resume")
                    break
            summary = {"codec": model.registry_name, "command": command_line(),
                       "steps": max_steps if stopped_at is None else stopped_at, "max_steps": max_steps,
                       "resumed_from": start_step, "seconds": time.perf_counter() - t_start, "val": self.val_metrics,
                       "checkpoint": str(self.checkpoint.path), **self.meta}
            if stopped_at is not None:
                summary["stopped_at_time_limit"] = True
            if rank == 0:
                for callback in self.callbacks:
                    extra = callback(self, summary) or {}
                    summary.update(extra)
                    log.summary(extra)
        finally:
            log.finish()
            sampler = getattr(self, "_sampler", None)
            if sampler is not None and hasattr(sampler, "close"):
                sampler.close()
        if rank == 0:
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary
