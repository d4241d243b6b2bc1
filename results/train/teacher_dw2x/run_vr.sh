#!/bin/bash
# The mid-size teacher (student_dw_ckbd at twice the widths, 6.2 kMAC/px decoder) made variable-rate:
# its 12000-step fixed-rate checkpoint (beta 0.0067) + gain units at six rates from beta 0.0018 to 0.05
# (the default model's four plus two higher ones, so the curve can reach 33 dB PSNR-RGB), trained
# 10000 more steps with one rate point drawn per crop (issues 15 and 16: a teacher curve from one checkpoint).
# Run from a clone of a committed state; resumes exactly when rerun.
set -e
R=/work/main
python -m student codec=student_dw_ckbd "codec.widths=[32,64,128,352]" codec.hyper_width=192 codec.entropy_width=256 \
  codec.context.width=128 "codec.rates=[0.0018,0.0035,0.0067,0.013,0.025,0.05]" \
  trainer.init_from=$R/results/train/teacher_dw2x/beta_0.0067/last.ckpt trainer.max_steps=10000 \
  trainer.batch_size=8 data.crop_size=128 trainer.lr=2e-4 "trainer.lr_decay_at=[0.8]" trainer.val_every=10000 \
  trainer.checkpoint_every=250 trainer.log_every=50 trainer.threads=1 trainer.progress=false \
  data.train_dir=$R/data/prepared/train data.eval_dir=$R/data/prepared/eval logger=none \
  hydra.run.dir=$R/results/train/teacher_dw2x/vr_rates_6
