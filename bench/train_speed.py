"""``python -m bench.train_speed vmuc student_dw_ckbd``: training steps per second, side by side.

Each codec takes the same training step of the shared engine (forward, rate-distortion loss,
backward, Adam) on the same batch size and crop, on the same machine; the codecs are measured
in alternating rounds so that a change in machine load hits all of them alike. Writes
``results/train_speed.json`` with the medians, their ratios to the first codec, and the command.

``--teacher CKPT`` measures distillation instead: for each student, a scratch step, a step of
the ``full`` KD objective with the live teacher, and the same step reading the teacher's
outputs from a teacher-output cache (distill.cache), side by side (labels ``NAME``,
``NAME+kd-live``, ``NAME+kd-cache``).
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from codec.data import make_sampler
from codec.registry import create_codec


LOSS = {"distortion": "ycbcr_mse", "ycbcr_weights": [6, 1, 1], "lmbda": 0.0067}


def _setups(names: list[str], batch_size: int, crop: int, teacher: str | None, workdir: Path) -> dict:
    """label -> (model, objective, batch source(step, generator))."""
    from codec.engine import RateDistortion

    loss_cfg = OmegaConf.create(LOSS)
    sampler = make_sampler({"train_dir": None, "crop_size": crop})  # the built-in images, in memory

    def crops(step, g):
        return sampler.sample(batch_size, g)

    def student(name):
        torch.manual_seed(0)
        return create_codec(name).train()

    setups = {}
    if teacher is None:
        for name in names:
            setups[name] = (student(name), RateDistortion(loss_cfg), crops)
        return setups
    from distill.cache import TeacherCache, build_cache
    from distill.objective import Distillation, kd_weights, probe_channels
    from distill.teacher import load_teacher

    teacher_model, _ = load_teacher(teacher)
    build_cache(teacher, {"train_dir": None, "crop_size": crop}, crops=4 * batch_size, out_dir=workdir / "cache",
                progress=False)
    cache = TeacherCache(workdir / "cache")
    weights = kd_weights({"gt": 0.6, "output": 0.2, "latent": 0.2})
    for name in names:
        setups[name] = (student(name), RateDistortion(loss_cfg), crops)
        m = student(name)
        setups[f"{name}+kd-live"] = (m, Distillation(loss_cfg, weights, m, probe_channels(teacher_model),
                                                     teacher=teacher_model), crops)
        m = student(name)
        setups[f"{name}+kd-cache"] = (m, Distillation(loss_cfg, weights, m, cache.channels()), cache.batches(batch_size))
    return setups


def measure(names: list[str], batch_size: int, crop: int, rounds: int, steps: int, threads: int,
            teacher: str | None = None) -> dict:
    import tempfile

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        setups = _setups(names, batch_size, crop, teacher, Path(tmp))
        runs = {label: (model, objective, batches,
                        torch.optim.Adam(list(model.parameters()) + objective.trainables(), lr=1e-4))
                for label, (model, objective, batches) in setups.items()}
        times: dict[str, list[float]] = {label: [] for label in runs}
        for r in range(rounds + 1):  # round 0 warms up and is dropped
            for label, (model, objective, batches, opt) in runs.items():
                g = torch.Generator().manual_seed(r)
                t0 = time.perf_counter()
                for step in range(steps):
                    loss = objective(model, batches(step, g))["loss"]
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if r:
                    times[label].append((time.perf_counter() - t0) / steps)
    labels = list(runs)
    first = statistics.median(times[labels[0]])
    rows = {}
    for label in labels:
        med = statistics.median(times[label])
        rows[label] = {"median_s_per_step": med, "steps_per_s": 1 / med, "speedup_vs_first": first / med,
                       "params": sum(p.numel() for p in runs[label][0].parameters())}
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("codecs", nargs="+", help="registered codec names; ratios are to the first")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per codec per round")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--teacher", default=None, help="a teacher checkpoint: measure scratch vs live-teacher KD vs "
                                                   "cached-teacher KD for each codec")
    p.add_argument("--out", default=None, help="default: results/train_speed.json, "
                                               "results/distill/train_speed.json with --teacher")
    a = p.parse_args(argv)
    a.out = a.out or ("results/distill/train_speed.json" if a.teacher else "results/train_speed.json")
    rows = measure(a.codecs, a.batch_size, a.crop, a.rounds, a.steps, a.threads, a.teacher)
    result = {"command": shlex.join(["python", "-m", "bench.train_speed", *(argv if argv is not None else sys.argv[1:])]),
              "batch_size": a.batch_size, "crop": a.crop, "rounds": a.rounds, "steps_per_round": a.steps,
              "threads": a.threads, "teacher": a.teacher, "device": "cpu", "machine": platform.processor() or platform.machine(),
              "codecs": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in rows.items():
        print(f"{name:32s} {r['steps_per_s']:8.3f} steps/s  {r['speedup_vs_first']:6.2f}x vs {next(iter(rows))}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
