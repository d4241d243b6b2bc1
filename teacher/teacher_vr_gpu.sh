#!/usr/bin/env bash
# The variable-rate vmuc teacher on a GPU, resumable: run it again (same folder) to continue.
#   bash teacher/teacher_vr_gpu.sh [MAX_MINUTES] [extra Hydra overrides...]
# It trains for MAX_MINUTES (default 10; trainer.max_minutes), saves, and exits 0; the checkpoint
# in results/train/vmuc_vr/last.ckpt is what to bring back. Needs data/prepared (python -m codec.data
# prepare data/prepared); without it, it trains on the built-in images (a smoke run, say so).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"; shift || true
data=()
if [ -d data/prepared/train ]; then
  data=(data.train_dir=data/prepared/train data.eval_dir=data/prepared/eval data.max_eval_images=4)
else
  echo "teacher_vr_gpu: no data/prepared; training on the built-in images" >&2
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "teacher_vr_gpu: no GPU found" >&2
python -m teacher --config-name teacher_vr trainer.device=auto trainer.max_minutes="$minutes" \
  trainer.progress=false logger=none "${data[@]}" "$@"
ls -l results/train/vmuc_vr/last.ckpt 2>/dev/null || true  # another hydra.run.dir: look there
