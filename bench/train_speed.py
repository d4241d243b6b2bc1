"""``python -m bench.train_speed codecs=[vmuc,student_dw_ckbd]``: training steps per second, side by side.

Each codec takes the same training step of the shared engine (forward, rate-distortion loss,
backward, Adam) on the same batch size and crop, on the same machine; the codecs are measured
in alternating rounds so that a change in machine load hits all of them alike. Writes
``results/train_speed.json`` with the medians, their ratios to the first codec, and the command.
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
from codec.train import rd_loss


def measure(names: list[str], batch_size: int, crop: int, rounds: int, steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    sampler = make_sampler({"train_dir": None, "crop_size": crop})  # the built-in images, in memory
    loss_cfg = OmegaConf.create({"distortion": "ycbcr_mse", "lmbda": 0.0067})
    models = {}
    for name in names:
        torch.manual_seed(0)
        model = create_codec(name).train()
        models[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):  # round 0 warms up and is dropped
        for name, (model, opt) in models.items():
            g = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            for _ in range(steps):
                x = sampler.sample(batch_size, g)
                loss = rd_loss(model(x), x, loss_cfg)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if r:
                times[name].append((time.perf_counter() - t0) / steps)
    first = statistics.median(times[names[0]])
    rows = {}
    for name in names:
        med = statistics.median(times[name])
        rows[name] = {"median_s_per_step": med, "steps_per_s": 1 / med, "speedup_vs_first": first / med,
                      "params": sum(p.numel() for p in models[name][0].parameters())}
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("codecs", nargs="+", help="registered codec names; ratios are to the first")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per codec per round")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default="results/train_speed.json")
    a = p.parse_args(argv)
    rows = measure(a.codecs, a.batch_size, a.crop, a.rounds, a.steps, a.threads)
    result = {"command": shlex.join(["python", "-m", "bench.train_speed", *(argv if argv is not None else sys.argv[1:])]),
              "batch_size": a.batch_size, "crop": a.crop, "rounds": a.rounds, "steps_per_round": a.steps,
              "threads": a.threads, "device": "cpu", "machine": platform.processor() or platform.machine(),
              "codecs": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in rows.items():
        print(f"{name:24s} {r['steps_per_s']:8.3f} steps/s  {r['speedup_vs_first']:6.2f}x vs {a.codecs[0]}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
