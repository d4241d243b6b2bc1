#!/bin/bash
# Encoder kMAC/px with N latent-overfitting steps (profiling/overfit.py), at 768x512, 1 thread.
set -e
python -m profiling checkpoint=results/variable_rate/fixed/beta_0.0018/last.ckpt encoder.overfit_steps=500 \
  wall_runs=3 threads=1 hydra.run.dir=results/overfit/profile/student_dw_ckbd
python -m profiling checkpoint=results/train/teacher_dw2x/beta_0.0067/last.ckpt encoder.overfit_steps=500 \
  wall_runs=3 threads=1 hydra.run.dir=results/overfit/profile/teacher_dw2x
python -m profiling codec=vmuc encoder.overfit_steps=500 wall_runs=1 threads=1 hydra.run.dir=results/overfit/profile/vmuc
