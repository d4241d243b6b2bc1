#!/bin/bash
# Issue 16: the variable-rate vmuc teacher recipe (conf/teacher_vr.yaml, what teacher/teacher_vr_gpu.sh
# runs on a GPU) trained on this CPU for as long as a session allows: the GPU config with the CPU
# batch and crop of every other CPU run (8 of 128x128; 16 of 256x256 is about 8x slower per step) and
# the CPU learning rate (5e-4, no warm-up: the GPU's 1000 warm-up steps are a large part of a CPU run).
# Time-boxed by MINUTES (trainer.max_minutes); rerun to resume exactly, session after session.
# Then: python -m bench data.eval_dir=data/prepared/eval threads=1 progress=false
#   'learned={vmuc_vr_cpu:[results/train/vmuc_vr_cpu/last.ckpt]}' anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
set -e
R=/work/main
MINUTES=${1:-60}
python -m teacher --config-name teacher_vr trainer.max_minutes=$MINUTES trainer.device=cpu trainer.threads=1 \
  trainer.batch_size=8 data.crop_size=128 trainer.lr=5e-4 trainer.warmup_steps=0 trainer.progress=false \
  trainer.log_every=25 trainer.checkpoint_every=100 trainer.val_every=0 logger=none \
  data.train_dir=$R/data/prepared/train data.eval_dir=$R/data/prepared/eval hydra.run.dir=$R/results/train/vmuc_vr_cpu
