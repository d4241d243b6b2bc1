"""Rate-distortion benchmark of vmuc-lite: real bitstreams, PSNR/MS-SSIM, BD-rate, plots, report.

    python -m bench data.eval_dir=DIR classical=[jpeg,webp,...] learned=[CKPT_OR_GLOB,...]   # measure
    python -m bench.report [RESULTS_DIR]                                                  # report only

Modules: :mod:`bench.measure` (codecs x images -> per-image rows), :mod:`bench.results` (the
per-codec JSON, CompressAI layout), :mod:`bench.bd` (BD-rate), :mod:`bench.classical`
(classical codecs), :mod:`bench.profiles` (kMAC/px from the profiler's JSON),
:mod:`bench.plots` (RD curves, Pareto), :mod:`bench.report` (tables and REPORT.md),
:mod:`bench.cli` (the Hydra app, conf/bench.yaml).
"""
