#!/bin/bash
# Issue 16: the CPU recipe at equal wall time. student_dw_ckbd (registry widths) from scratch at one
# rate point (loss=vmuc, beta 0.0067), each recipe trained for MINUTES of one core
# (trainer.max_minutes; constant learning rate, so no decay point depends on a step count),
# then measured by `python -m bench.recipe results/recipe` (real bitstreams on the eval set).
# Usage: bash results/recipe/run.sh NAME [NAME ...], NAME in base lr2e-4 lr1e-3 lr1e-3_warm b4 b16 c256.
# Run from a clone of a committed state; a stage resumes if rerun (then its wall time is not comparable).
set -e
R=/work/main
OUT=$R/results/recipe
MINUTES=${MINUTES:-8}
COMMON="codec=student_dw_ckbd loss.beta=0.0067 trainer.max_steps=1000000 trainer.max_minutes=$MINUTES
  trainer.lr_decay_at=[] trainer.val_every=0 trainer.checkpoint_every=500 trainer.threads=1
  trainer.progress=false trainer.log_every=50 data.train_dir=$R/data/prepared/train
  data.eval_dir=$R/data/prepared/eval logger=none"
for name in "$@"; do
  case $name in
    base)       X="trainer.lr=5e-4 trainer.batch_size=8 data.crop_size=128" ;;
    lr2e-4)     X="trainer.lr=2e-4 trainer.batch_size=8 data.crop_size=128" ;;
    lr1e-3)     X="trainer.lr=1e-3 trainer.batch_size=8 data.crop_size=128" ;;
    lr1e-3_warm) X="trainer.lr=1e-3 trainer.warmup_steps=500 trainer.batch_size=8 data.crop_size=128" ;;
    b4)         X="trainer.lr=5e-4 trainer.batch_size=4 data.crop_size=128" ;;
    b16)        X="trainer.lr=5e-4 trainer.batch_size=16 data.crop_size=128" ;;
    c256)       X="trainer.lr=5e-4 trainer.batch_size=2 data.crop_size=256" ;;
    *) echo "unknown recipe $name" >&2; exit 2 ;;
  esac
  python -m student $COMMON $X hydra.run.dir=$OUT/$name
done
