#!/usr/bin/env bash
# The main job on the built-in defaults: install, profile the student zoo against the teacher,
# then a toy end-to-end pipeline (train, code real bitstreams, benchmark, report) on CPU.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -q --disable-pip-version-check torch==2.13.0
python -m pip install -q --disable-pip-version-check -e ".[test]"
python -m profiling.zoo teacher=vmuc
python -m bench.quickstart "$@"
