#!/bin/bash
# Issue 16: a default-model candidate from the best zoo student. The distilled six-rate MSP student
# (results/zoo6/msp/distill, 12000 steps) beats the shipped default over the range they share but
# stops at 32.2 dB PSNR-RGB (beta 0.05 at most); as for the shipped default, a seventh rate point
# (beta 0.1) is added and the model trained 8000 more variable-rate steps, one rate point per crop,
# without the teacher (its rates stop at 0.05). Run from a clone of a committed state; resumes exactly.
set -e
R=/work/main
python -m student codec=student_dw_msp "codec.rates=[0.0018,0.0035,0.0067,0.013,0.025,0.05,0.1]" \
  trainer.init_from=$R/results/zoo6/msp/distill/last.ckpt trainer.max_steps=8000 \
  trainer.batch_size=8 data.crop_size=128 trainer.lr=3e-4 "trainer.lr_decay_at=[0.8]" trainer.val_every=8000 \
  trainer.checkpoint_every=250 trainer.log_every=50 trainer.threads=1 trainer.progress=false \
  data.train_dir=$R/data/prepared/train data.eval_dir=$R/data/prepared/eval logger=none \
  hydra.run.dir=$R/results/default/msp_rates_7
