#!/usr/bin/env bash
# Small data: the default preset on 500 of the embedded digits (data.limit=500, a fixed random
# subset, seed 0), five recipes (the preset as it is, without its instance noise, and three
# stabilisers on top of it), each evaluated against the whole digit set; one JSON line per
# recipe (offline metrics + how many collapse warnings the run logged).
# Usage: benchmarks/small_data.sh [OUT_DIR]   (env: STEPS=2400 SEED=0 JOBS=1 PYTHON=python)
set -euo pipefail
OUT="${1:-runs/small_data}"
STEPS="${STEPS:-2400}"
SEED="${SEED:-0}"
JOBS="${JOBS:-1}"
PY="${PYTHON:-python}"
export OUT STEPS SEED PY
mkdir -p "$OUT"

one() {  # NAME SETS...: train, evaluate, print one JSON line
  local name=$1; shift
  local sets=(--set data.limit=500)
  for kv in "$@"; do sets+=(--set "$kv"); done
  "$PY" -m gankit.cli train --out "$OUT/$name" --steps "$STEPS" --seed "$SEED" --quiet \
    "${sets[@]}" > "$OUT/$name.train.log" 2>&1
  "$PY" -m gankit.cli eval "$OUT/$name" --metrics class_acc,cfid,swd,cprdc --n 1000 --quiet \
    > "$OUT/$name.eval.json"
  "$PY" - "$name" "$OUT" <<'PYEOF'
import json, sys
name, out = sys.argv[1], sys.argv[2]
ev = json.load(open(f"{out}/{name}.eval.json"))["eval"]
warnings = sum("possible collapse" in line for line in open(f"{out}/{name}.train.log"))
keys = ["class_acc", "cfid", "swd", "ccoverage", "crecall", "cprecision"]
print(json.dumps({"recipe": name, **{k: ev[k] for k in keys}, "collapse_warnings": warnings,
                  "cfid_real_heldout": ev["cfid_real_heldout"],
                  "ccoverage_real_heldout": ev["ccoverage_real_heldout"]}))
PYEOF
}
export -f one
printf '%s\n' \
  "baseline" \
  "no_instance_noise train.d_measurement=" \
  "diffaug train.diffaug=translation,cutout" \
  "diffaug_lecam train.diffaug=translation,cutout train.lecam_weight=0.1" \
  "rpgan_r1r2 train.loss=rpgan train.r1_gamma=0.05 train.r2_gamma=0.05 train.reg_every=4" \
  | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _
