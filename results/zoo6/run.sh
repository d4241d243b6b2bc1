#!/bin/bash
# Issue 16: two zoo students (checkerboard student_dw_ckbd, multi-scale progressive student_dw_msp),
# each variable-rate at six rates (beta 0.0018 to 0.05) and trained three ways at equal student steps
# (12000): from scratch, distilled from the variable-rate mid-size teacher, and pruned from a wider
# model (3 pruning steps x 4000 fine-tuning steps). Usage: bash results/zoo6/run.sh STAGE [STAGE ...]
# with STAGE in ckbd_scratch msp_scratch ckbd_distill msp_distill ckbd_prune msp_wide msp_prune ckbd_fast ckbd_narrow ckbd_fast_latent.
# Issue 13 (speed): ckbd_fast prunes the distilled checkerboard student (not its latent: a variable-rate
# checkpoint keeps its latent width) to 0.8 kMAC/px decoder side in 2 steps, each followed by 5000
# distillation fine-tuning steps from the same teacher; ckbd_narrow distills a narrow checkerboard student
# (widths 8/16/48/128, latent 128: about 1.0 kMAC/px decoder side) for the zoo's 12000 steps;
# ckbd_fast_latent is ckbd_fast with the latent pruned too (prune.latent=true cuts the gains with y),
# 2 steps x 4000 fine-tuning steps.
# Run from a clone of a committed state; every stage resumes exactly when rerun.
set -e
R=/work/main
OUT=$R/results/zoo6
RATES="codec.rates=[0.0018,0.0035,0.0067,0.013,0.025,0.05]"
TEACHER=$R/results/train/teacher_dw2x/vr_rates_6/last.ckpt
COMMON="trainer.batch_size=8 data.crop_size=128 trainer.threads=1 trainer.progress=false trainer.log_every=50
  data.train_dir=$R/data/prepared/train data.eval_dir=$R/data/prepared/eval logger=none"
STEPS="trainer.max_steps=12000 trainer.lr=5e-4 trainer.lr_decay_at=[0.8] trainer.val_every=12000 trainer.checkpoint_every=250"
PRUNE="target.teacher=vmuc target.ratio=35 prune.steps=3 prune.finetune_steps=4000 trainer.lr=2e-4
  trainer.lr_decay_at=[0.8] trainer.checkpoint_every=250"
WIDE="codec.widths=[32,64,128,352] codec.hyper_width=192 codec.entropy_width=256 codec.context.width=128"
for stage in "$@"; do
  case $stage in
    ckbd_scratch) python -m student codec=student_dw_ckbd "$RATES" $STEPS $COMMON hydra.run.dir=$OUT/ckbd/scratch ;;
    msp_scratch)  python -m student codec=student_dw_msp "$RATES" $STEPS $COMMON hydra.run.dir=$OUT/msp/scratch ;;
    ckbd_distill) python -m distill teacher=$TEACHER codec=student_dw_ckbd "$RATES" distill/loss=full $STEPS $COMMON hydra.run.dir=$OUT/ckbd/distill ;;
    msp_distill)  python -m distill teacher=$TEACHER codec=student_dw_msp "$RATES" distill/loss=full $STEPS $COMMON hydra.run.dir=$OUT/msp/distill ;;
    ckbd_prune)   python -m prune checkpoint=$TEACHER $PRUNE $COMMON hydra.run.dir=$OUT/ckbd/prune ;;
    msp_wide)     python -m student codec=student_dw_msp $WIDE "$RATES" $STEPS $COMMON hydra.run.dir=$OUT/msp/wide ;;
    msp_prune)    python -m prune checkpoint=$OUT/msp/wide/last.ckpt $PRUNE $COMMON hydra.run.dir=$OUT/msp/prune ;;
    ckbd_fast)    python -m prune checkpoint=$OUT/ckbd/distill/last.ckpt teacher=$TEACHER target.decoder_kmac=0.8 \
                    target.encoder_kmac=0.9 prune.steps=2 prune.finetune_steps=5000 trainer.lr=2e-4 \
                    trainer.lr_decay_at=[0.8] trainer.checkpoint_every=250 $COMMON hydra.run.dir=$OUT/ckbd/fast ;;
    ckbd_narrow)  python -m distill teacher=$TEACHER codec=student_dw_ckbd codec.widths=[8,16,48,128] codec.latent=128 \
                    "$RATES" distill/loss=full $STEPS $COMMON hydra.run.dir=$OUT/ckbd/narrow ;;
    ckbd_fast_latent) python -m prune checkpoint=$OUT/ckbd/distill/last.ckpt teacher=$TEACHER target.decoder_kmac=0.8 \
                    target.encoder_kmac=0.9 prune.latent=true prune.steps=2 prune.finetune_steps=4000 trainer.lr=2e-4 \
                    trainer.lr_decay_at=[0.8] trainer.checkpoint_every=250 $COMMON hydra.run.dir=$OUT/ckbd/fast_latent ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
