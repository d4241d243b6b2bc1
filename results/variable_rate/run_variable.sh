#!/bin/bash
# One variable-rate student_dw_ckbd (gain units, 4 rate points) for 12000 steps: the same total
# steps as the four fixed-rate runs of run_fixed.sh, same recipe (issue 12 evidence).
set -e
python -m student codec=student_dw_ckbd "codec.rates=[0.0018,0.0035,0.0067,0.013]" trainer.max_steps=12000 \
  trainer.batch_size=8 data.crop_size=128 trainer.lr=5e-4 trainer.lr_decay_at=[0.8] trainer.val_every=6000 \
  trainer.checkpoint_every=250 trainer.log_every=50 trainer.threads=1 trainer.progress=false \
  data.train_dir=data/prepared/train data.eval_dir=data/prepared/eval logger=none \
  hydra.run.dir=/work/main/results/variable_rate/variable/rates_4
