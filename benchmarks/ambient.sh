#!/usr/bin/env bash
# The AmbientGAN experiment of docs/ambient.md: measure the embedded digits, train the default
# preset in ambient / ignore / unmeasure mode (and once on the clean digits), evaluate every run
# against the CLEAN digits, draw the comparison grid.
# Usage: benchmarks/ambient.sh [OUT_DIR]   (env: STEPS=800 SEED=0 JOBS=2 PYTHON=python)
# One torch thread per run, JOBS runs at a time, niced (a shared 2-core machine).
set -euo pipefail
OUT="${1:-runs/ambient}"
STEPS="${STEPS:-800}"
SEED="${SEED:-0}"
JOBS="${JOBS:-2}"
PY="${PYTHON:-python}"
export OMP_NUM_THREADS=1 PY OUT STEPS SEED
FAMILIES=("bp block_pixels:p=0.5" "cn conv_noise:sigma=1,noise=0.4")  # run-name prefix, spec
mkdir -p "$OUT/data" "$OUT/logs" "$OUT/runs"

file() { echo "$OUT/data/${1//[:=,]/_}.npz"; }
for family in "${FAMILIES[@]}"; do
  spec=${family#* }
  "$PY" -m gankit.cli measure --measurement "$spec" --seed "$SEED" --out "$(file "$spec")"
done

one() {  # NAME SPEC MODE: train (SPEC "-" = clean digits), then eval on the clean digits
  local name=$1 spec=$2 mode=$3 extra=()
  if [ "$spec" != "-" ]; then
    extra=(--data "$OUT/data/${spec//[:=,]/_}.npz" --set "train.measurement=$spec"
           --set "train.ambient_mode=$mode")
  fi
  nice -n 10 "$PY" -m gankit.cli train --out "$OUT/runs/$name" --steps "$STEPS" --seed "$SEED" \
    --quiet "${extra[@]}" > "$OUT/logs/$name.train.log" 2>&1
  nice -n 10 "$PY" -m gankit.cli eval "$OUT/runs/$name" --metrics class_acc,cfid,swd --n 1000 \
    --data "" --quiet > "$OUT/logs/$name.eval.json"
}
export -f one
{
  for family in "${FAMILIES[@]}"; do
    for mode in ambient ignore unmeasure; do echo "${family% *}_$mode ${family#* } $mode"; done
  done
  echo "clean - none"
} | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _

"$PY" benchmarks/ambient_grid.py "$OUT" docs/ambient_grid.png
