#!/usr/bin/env bash
# The AmbientGAN experiment of docs/ambient.md: measure the embedded digits, train the default
# preset in ambient / ignore / unmeasure mode (and once on the clean digits), evaluate every run
# against the CLEAN digits after each stage, draw the comparison grid.
# Usage: benchmarks/ambient.sh [OUT_DIR]
#   (env: STAGES="800 1600 2400" SEED=0 THETA_SEED=0 JOBS=2 THREADS=1 PYTHON=python)
# SEED seeds training, THETA_SEED the measurement of the data (`gankit measure --seed`).
# Each run trains to the first stage, then `gankit resume` continues it to the next (exact on
# CPU: the same weights as one straight run). Evals: OUT_DIR/logs/NAME.eval.STEPS.json.
# THREADS torch threads per run, JOBS runs at a time, niced (a shared 2-core machine; JOBS=1
# THREADS=2 finishes sooner there than two one-thread runs side by side).
set -euo pipefail
OUT="${1:-runs/ambient}"
STAGES="${STAGES:-800 1600 2400}"
SEED="${SEED:-0}"
THETA_SEED="${THETA_SEED:-0}"
JOBS="${JOBS:-2}"
THREADS="${THREADS:-1}"
PY="${PYTHON:-python}"
export OMP_NUM_THREADS="$THREADS" PY OUT SEED
FAMILIES=("bp block_pixels:p=0.5" "cn conv_noise:sigma=1,noise=0.4")  # run-name prefix, spec
mkdir -p "$OUT/data" "$OUT/logs" "$OUT/runs"

for family in "${FAMILIES[@]}"; do
  spec=${family#* }
  "$PY" -m gankit.cli measure --measurement "$spec" --seed "$THETA_SEED" \
    --out "$OUT/data/${spec//[:=,]/_}.npz"
done

one() {  # NAME SPEC MODE STEPS: train or continue (SPEC "-" = clean digits), eval on clean digits
  local name=$1 spec=$2 mode=$3 steps=$4 extra=()
  if [ -d "$OUT/runs/$name/checkpoints" ]; then
    nice -n 10 "$PY" -m gankit.cli resume "$OUT/runs/$name" --steps "$steps" --quiet
  else
    if [ "$spec" != "-" ]; then
      extra=(--data "$OUT/data/${spec//[:=,]/_}.npz" --set "train.measurement=$spec"
             --set "train.ambient_mode=$mode")
    fi
    nice -n 10 "$PY" -m gankit.cli train --out "$OUT/runs/$name" --steps "$steps" \
      --seed "$SEED" --quiet "${extra[@]}"
  fi > "$OUT/logs/$name.train.$steps.log" 2>&1
  nice -n 10 "$PY" -m gankit.cli eval "$OUT/runs/$name" \
    --metrics class_acc,cfid,swd,cprdc,ccoverage_class --n 1000 --data "" --quiet \
    > "$OUT/logs/$name.eval.$steps.json"
}
export -f one
for steps in $STAGES; do
  {
    for family in "${FAMILIES[@]}"; do
      for mode in ambient ignore unmeasure; do
        echo "${family% *}_$mode ${family#* } $mode $steps"
      done
    done
    echo "clean - none $steps"
  } | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _
done

"$PY" benchmarks/ambient_grid.py "$OUT" docs/ambient_grid.png
