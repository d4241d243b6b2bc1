#!/bin/bash
# The benchmark report of results/bench (README "Benchmark", results/REPORT.md): every classical
# codec with its current settings (JPEG 2000 rate-controlled, HEVC 4:4:4 through x265), and the
# learned models trained on this CPU, each with its profile for the Pareto figure.
# (vmuc.json, the 150-step CPU teacher, is from an earlier session; its command is in the file.)
set -e
cd /work/main
E="data.eval_dir=data/prepared/eval threads=1 progress=false"
python -m bench $E 'classical=[jpeg,jpeg2000,webp,avif,jpegxl,hevc]'
python -m bench $E "learned={student_dw_ckbd_fixed:[results/variable_rate/fixed/*/last.ckpt]}"
python -m bench $E "learned={pruned_vr:[results/prune/vr/dw2x_to_35x/last.ckpt],scratch_vr:[results/prune/vr/dw2x_to_35x_scratch/last.ckpt]}"
python -m bench $E "learned={teacher_dw2x_vr:[results/train/teacher_dw2x/vr_rates_6/last.ckpt]}"
# the variable-rate vmuc recipe trained on this CPU (results/train/vmuc_vr_cpu/run.sh)
python -m bench $E "learned={vmuc_vr_cpu:[results/train/vmuc_vr_cpu/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={zoo6_ckbd_prune:[results/zoo6/ckbd/prune/last.ckpt]}"
python -m bench $E "learned={zoo6_ckbd_scratch:[results/zoo6/ckbd/scratch/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={zoo6_ckbd_distill:[results/zoo6/ckbd/distill/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={zoo6_msp_scratch:[results/zoo6/msp/scratch/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={zoo6_msp_distill:[results/zoo6/msp/distill/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={zoo6_msp_prune:[results/zoo6/msp/prune/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
# issue 13: the checkerboard students made for decoding speed (results/zoo6/run.sh ckbd_fast, ckbd_narrow)
python -m bench $E "learned={zoo6_ckbd_fast:[results/zoo6/ckbd/fast/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={zoo6_ckbd_narrow:[results/zoo6/ckbd/narrow/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={zoo6_ckbd_fast_latent:[results/zoo6/ckbd/fast_latent/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={default_rates7:[results/default/rates_7/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={default_msp_rates7:[results/default/msp_rates_7/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m bench $E "learned={default_msp_rates8:[results/default/msp_rates_8/last.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
# the shipped default model (python -m codec ship --checkpoint results/default/rates_7/last.ckpt)
python -m bench $E "learned={default_model:[codec/assets/default.ckpt]}" anchor_teacher=teacher_dw2x_vr gate_teacher=vmuc
python -m profiling checkpoint=codec/assets/default.ckpt wall_runs=0 hydra.run.dir=results/profile/default_model
python -m profiling checkpoint=results/prune/vr/dw2x_to_35x/last.ckpt wall_runs=0 hydra.run.dir=results/profile/pruned_vr
python -m profiling checkpoint=results/train/teacher_dw2x/vr_rates_6/last.ckpt wall_runs=0 hydra.run.dir=results/profile/teacher_dw2x_vr
python -m profiling checkpoint=results/zoo6/ckbd/prune/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_ckbd_prune
python -m profiling checkpoint=results/zoo6/ckbd/scratch/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_ckbd_scratch
python -m profiling checkpoint=results/zoo6/ckbd/distill/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_ckbd_distill
python -m profiling checkpoint=results/zoo6/msp/scratch/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_msp_scratch
python -m profiling checkpoint=results/zoo6/msp/distill/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_msp_distill
python -m profiling checkpoint=results/zoo6/msp/prune/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_msp_prune
python -m profiling checkpoint=results/zoo6/ckbd/fast/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_ckbd_fast
python -m profiling checkpoint=results/zoo6/ckbd/narrow/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_ckbd_narrow
python -m profiling checkpoint=results/zoo6/ckbd/fast_latent/last.ckpt wall_runs=0 hydra.run.dir=results/profile/zoo6_ckbd_fast_latent
python -m profiling checkpoint=results/default/rates_7/last.ckpt wall_runs=0 hydra.run.dir=results/profile/default_rates7
python -m profiling checkpoint=results/default/msp_rates_7/last.ckpt wall_runs=0 hydra.run.dir=results/profile/default_msp_rates7
python -m profiling checkpoint=results/default/msp_rates_8/last.ckpt wall_runs=0 hydra.run.dir=results/profile/default_msp_rates8
python -m bench.report results/bench --teacher teacher_dw2x_vr --gate-teacher vmuc
