#!/bin/bash
# Four fixed-rate student_dw_ckbd, 3000 steps each (12000 in all), the baseline of the
# variable-rate evidence (issue 12). Run from a clone of the commit named in each summary.
set -e
for beta in 0.0018 0.0035 0.0067 0.013; do
  python -m student codec=student_dw_ckbd loss.beta=$beta trainer.max_steps=3000 trainer.batch_size=8 \
    data.crop_size=128 trainer.lr=5e-4 trainer.lr_decay_at=[0.8] trainer.val_every=3000 \
    trainer.checkpoint_every=250 trainer.log_every=50 trainer.threads=1 trainer.progress=false \
    data.train_dir=data/prepared/train data.eval_dir=data/prepared/eval logger=none \
    hydra.run.dir=/work/main/results/variable_rate/fixed/beta_$beta
done
