#!/bin/bash
# Issue 16: a default-model candidate whose curve reaches 33 dB PSNR-RGB. The shipped default (the
# pruned-width student_dw_ckbd trained from scratch, results/prune/vr/dw2x_to_35x_scratch) stops at
# 31.25 dB with betas up to 0.013; the six-rate zoo students stop at 32.3 dB with beta 0.05. This run
# starts from the same fixed-rate 15000-step checkpoint as the shipped default and trains it
# variable-rate at seven betas, 0.0018 to 0.1, for 8000 steps, one rate point drawn per crop.
# Run from a clone of a committed state; resumes exactly when rerun.
set -e
R=/work/main
python -m student "codec.rates=[0.0018,0.0035,0.0067,0.013,0.025,0.05,0.1]" \
  trainer.init_from=$R/results/prune/dw2x_to_35x_scratch/last.ckpt trainer.max_steps=8000 \
  trainer.batch_size=8 data.crop_size=128 trainer.lr=3e-4 "trainer.lr_decay_at=[0.8]" trainer.val_every=8000 \
  trainer.checkpoint_every=250 trainer.log_every=50 trainer.threads=1 trainer.progress=false \
  data.train_dir=$R/data/prepared/train data.eval_dir=$R/data/prepared/eval logger=none \
  hydra.run.dir=$R/results/default/rates_7
