"""``python -m bench.quickstart``: the toy end-to-end pipeline of the README's quick start.

Runs the project's real commands, in order, on the built-in images, on the CPU, in a few
minutes, printing each command before it runs it::

    python -m teacher -m  codec=vmuc_tiny ...        4 rate points of a tiny teacher
    python -m student -m  codec=student_tiny ...     4 rate points of a tiny student
    python -m distill -m  codec=student_tiny ...     the same student distilled from the teacher
                                                     of each rate point (distill/loss=full)
    python -m codec compress / decompress            a real bitstream and back
    python -m profiling.gate codec=student_tiny teacher=vmuc
    python -m bench classical=[jpeg,webp] learned=[...]   RD curves, BD-rates, plots, REPORT.md

Everything lands in ``--out`` (default ``outputs/quickstart``), never in ``results/``: toy
numbers are a smoke test of the pipeline, not results.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

BETAS = "0.0018,0.0067,0.025,0.1"


def _run(args: list[str]) -> None:
    print(f"\n$ python {shlex.join(args)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quickstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/quickstart", help="where every file goes")
    parser.add_argument("--steps", type=int, default=60, help="training steps per rate point")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    common = [f"trainer.max_steps={args.steps}", "trainer.batch_size=4", "data.crop_size=128", "trainer.lr=1e-3",
              "trainer.lr_decay_at=[0.8]", "trainer.val_every=0", "trainer.checkpoint_every=0",
              "trainer.progress=false", "logger=none", f"loss.beta={BETAS}"]
    _run(["-m", "teacher", "-m", "codec=vmuc_tiny", *common, f"hydra.sweep.dir={out}/teacher"])
    _run(["-m", "student", "-m", "codec=student_tiny", *common, f"hydra.sweep.dir={out}/student"])
    _run(["-m", "distill", "-m", "codec=student_tiny", "distill/loss=full", *common,
          f"teacher='{out}/teacher/beta=${{loss.beta}}/last.ckpt'", f"hydra.sweep.dir={out}/distill",
          "hydra.sweep.subdir='beta=${loss.beta}'"])

    from codec.data import builtin_images

    image = builtin_images()[0]
    ckpt = sorted((out / "teacher").glob("*/last.ckpt"))[-1]
    _run(["-m", "codec", "compress", str(image), str(out / "image.bin"), "--checkpoint", str(ckpt)])
    _run(["-m", "codec", "decompress", str(out / "image.bin"), str(out / "image.png"), "--checkpoint", str(ckpt)])
    # the gate is against the real teacher: the tiny teacher is itself far below the budget
    _run(["-m", "profiling.gate", "codec=student_tiny", "teacher=vmuc", f"hydra.run.dir={out}/gate"])
    learned = (f"{{vmuc_tiny:[{out}/teacher/*/last.ckpt],student_tiny:[{out}/student/*/last.ckpt],"
               f"student_tiny_distilled:[{out}/distill/*/last.ckpt]}}")
    _run(["-m", "bench", "data.eval_dir=builtin", "data.max_images=2", "classical=[jpeg,webp]", "max_qualities=4",
          f"learned={learned}", "anchor_teacher=vmuc_tiny*", "anchor_classical=jpeg", f"out_dir={out}/bench",
          f"report={out}/REPORT.md", f"profile_dir={out}/gate", "progress=false", f"hydra.run.dir={out}/bench_run"])
    print(f"\nquickstart done: report {out / 'REPORT.md'}, decoded image {out / 'image.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
