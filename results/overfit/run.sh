#!/bin/bash
# Issue 15 evidence: latent overfitting of one checkpoint per model on all eval images, N = 100
# and 500 against the feed-forward curve (bench writes results/overfit/bench/*.json, overfit.json
# and results/overfit/REPORT.md; python -m bench.readme puts them in the README).
set -e
cd /work/main
E="data.eval_dir=data/prepared/eval progress=false out_dir=results/overfit/bench report=results/overfit/REPORT.md"
# the default model as shipped until commit b6353c8 (variable-rate student_dw_ckbd), its four trained
# rates, one thread; since then another model ships: `git show b6353c8:codec/assets/default.ckpt`
python -m bench $E threads=1 'learned={student_dw_ckbd:[codec/assets/default.ckpt]}' 'rates=[0,1,2,3]' 'overfit_steps=[100,500]'
# the variable-rate mid-size teacher (results/train/teacher_dw2x/run_vr.sh), four of its six rates;
# N = 100 and N = 500 as two processes, one core each (the same feed-forward curve is written by both)
python -m bench $E threads=1 'learned={teacher_dw2x:[results/train/teacher_dw2x/vr_rates_6/last.ckpt]}' 'rates=[0,2,4,5]' 'overfit_steps=[100]' &
python -m bench $E threads=1 'learned={teacher_dw2x:[results/train/teacher_dw2x/vr_rates_6/last.ckpt]}' 'rates=[0,2,4,5]' 'overfit_steps=[500]'
wait
python -m bench.report results/overfit/bench --report results/overfit/REPORT.md
