#!/bin/bash
# Issue 11 evidence at four rate points: the pruned student (2x teacher -> 35x budget, 3 x 1000
# fine-tuning steps) and the same architecture trained from scratch for the same total steps
# (15000), each turned into a variable-rate model (trainer.init_from + codec.rates) and trained
# 2000 more steps at the four rate points, the same recipe for both. Then one bench curve each.
set -e
R="[0.0018,0.0035,0.0067,0.013]"
common="trainer.max_steps=2000 trainer.batch_size=8 data.crop_size=128 trainer.lr=2e-4 trainer.lr_decay_at=[0.8] \
 trainer.val_every=2000 trainer.checkpoint_every=250 trainer.log_every=50 trainer.threads=1 trainer.progress=false \
 data.train_dir=data/prepared/train data.eval_dir=data/prepared/eval logger=none"
for name in dw2x_to_35x dw2x_to_35x_scratch; do
  python -m student "codec.rates=$R" trainer.init_from=/work/main/results/prune/$name/last.ckpt $common \
    hydra.run.dir=/work/main/results/prune/vr/$name
done
