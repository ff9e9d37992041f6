#!/usr/bin/env bash
# Every benchmark of benchmarks/RESULTS.md on this machine, one JSON line each (stdout).
# Usage: benchmarks/run_all.sh [cpu|cuda]   (GPU: also i128 and the bf16 attention bench)
set -euo pipefail
DEV="${1:-cpu}"
PY="${PYTHON:-python}"
bench() { "$PY" -m gankit.cli bench --device "$DEV" --json "$@"; }

if [ "$DEV" = cuda ]; then
  bench --workload cifar --steps 50 --warmup 10
  bench --workload i128 --steps 20 --warmup 5
  bench --workload attention --resolution 128 --channels 256 --batch-size 8 --steps 5 --warmup 2
  "$PY" benchmarks/ablation.py --device cuda --steps 20 --warmup 5
else
  bench --workload cifar --steps 2 --warmup 1
  # N = 16,384 positions (128x128), batch 8: the reference needs ~4 B N M floats of scores; it
  # is skipped with a message when they do not fit in free memory (then try --batch-size 2).
  bench --workload attention --resolution 128 --channels 256 --batch-size 8 --steps 1 --warmup 1
  # compiling with inductor takes minutes on 2 cores: the CPU ablation runs eagerly
  "$PY" benchmarks/ablation.py --device cpu --steps 1 --warmup 1 --eager
fi
