#!/usr/bin/env bash
# The GPU rows of benchmarks/RESULTS.md in one call of a lent GPU machine (~9 minutes):
# GPU tests, the BigGAN-PyTorch anchor (when ANCHOR names the folder of its unpacked code and
# ANCHOR_KIT the folder holding anchor_biggan_bench.py and stubs/, by default ANCHOR/..),
# gankit's cifar and i128 rows (eager + CUDA graph, compiled + CUDA graph, the memory levers),
# the default demo and its evaluation.
#
# PART=memory runs instead the compiled cifar rows for the memory target: first the variants
# that recompute activations (checkpoint regions, the partitioner's memory budget) side by side
# (peaks only), then one at a time the anchor's cifar row, compiled cifar, the variant with the
# lowest peak (times and peaks; the inductor cache is warm by then) and what is live at the peak.
#
# PART=compiled times the compiled rows against the anchor, for a session with little device
# time: first compiled i128 and cifar side by side for one iteration each (filling the inductor
# cache; times not used), then one at a time the anchor's cifar and i128 rows, compiled i128 and
# compiled cifar on the warm cache, where compiled i128's GPU time goes
# (benchmarks/kernel_profile.py), and the GPU tests. BASELINE=dir (the src/ folder of another
# tree, e.g. from `git archive REV src`) adds that tree's compiled i128 row, compiled beside the
# others and timed right after this tree's, its JSON lines marked "tree": "baseline".
#
# Usage (repository root, gankit importable):
#   OUT=dir [ANCHOR=dir [ANCHOR_KIT=dir]] [END=seconds] [PART=main|memory|compiled] \
#     [P1=seconds] [BASELINE=dir] [CACHE_IN=prefix] [CACHE_OUT=dir] benchmarks/gpu_round.sh
# P1 (default 250; 340 with BASELINE: three cold compiles side by side ran past 250 s) limits
# each process of the parallel phases (PART=memory, PART=compiled), which END does not.
# CACHE_IN=prefix unpacks a compile cache packed by an earlier call (files prefix.00, .01, ...)
# into $GANKIT_CACHE before the first step; CACHE_OUT=dir packs $GANKIT_CACHE/inductor into
# dir/inductor.tgz.00, .01, ... (15 MiB each, the size a lent machine returns) at exit. A fresh
# machine compiles `i128` in ~200 s and `cifar` in ~85 s; with the cache, ~23 and ~12 s.
# Each step is its own process with a timeout; a step that would end after END seconds (default
# 540) is skipped, most informative first. Bench JSON lines go to $OUT/bench.jsonl, the anchor's
# to $OUT/anchor.jsonl, the demo's metrics and evaluation to $OUT/demo_*.
set -u
: "${OUT:?set OUT to a folder for the results}"
export PYTHONUNBUFFERED=1 GANKIT_CACHE="${GANKIT_CACHE:-/tmp/gkcache}"
PY="${PYTHON:-python3}"
END="${END:-540}"
T0=$(date +%s)
left() { echo $(( END - ($(date +%s) - T0) )); }
step() {  # step TIMEOUT CMD...: run CMD unless fewer than TIMEOUT seconds are left
  local limit=$1; shift
  if [ "$(left)" -lt "$limit" ]; then echo "=== skip (left $(left) s): $*" >&2; return; fi
  echo "=== [$(( $(date +%s) - T0 )) s] $*" >&2
  local start; start=$(date +%s%N)
  timeout "$limit" "$@"
  echo "=== rc=$? wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))" >&2
}
bench() { local limit=$1; shift
  step "$limit" "$PY" -m gankit.cli bench --device cuda --json "$@" | grep '^{' | tee -a "$OUT/bench.jsonl"; }

GPU_TESTS=(-m pytest -q -p no:cacheprovider -m gpu tests/test_cuda_graph.py
  tests/test_data_cache_build.py)
anchor() {  # anchor TIMEOUT [WORKLOADS]: the anchor's rows (both workloads unless named)
  [ -n "${ANCHOR:-}" ] || return 0
  local kit; kit=$(cd "${ANCHOR_KIT:-$ANCHOR/..}" && pwd)
  (cd "$ANCHOR" && step "$1" env DEV=cuda WORKLOADS="${2:-}" PYTHONPATH="$kit/stubs" "$PY" \
    "$kit/anchor_biggan_bench.py") | grep '^{' | tee -a "$OUT/anchor.jsonl"
}

if [ -n "${CACHE_IN:-}" ]; then
  mkdir -p "$GANKIT_CACHE" && cat "$CACHE_IN".* | tar xz -C "$GANKIT_CACHE" \
    && echo "=== compile cache unpacked: $(du -sh "$GANKIT_CACHE/inductor" | cut -f1)" >&2
fi
pack_cache() {
  [ -n "${CACHE_OUT:-}" ] && [ -d "$GANKIT_CACHE/inductor" ] || return 0
  tar cz -C "$GANKIT_CACHE" inductor | split -b 15M -d - "$CACHE_OUT/inductor.tgz."
  echo "=== compile cache packed: $(cat "$CACHE_OUT"/inductor.tgz.* | wc -c) bytes" >&2
}
trap pack_cache EXIT
nvidia-smi -L
if [ "${PART:-main}" = memory ]; then
  # Phase 1: the compiled cifar variants at once, each its own process. The allocator's peak is
  # per process, so running them side by side leaves it as it is alone; their times are not
  # used. They fill the inductor cache, so phase 2 re-runs the ones to time without compiling
  # anew. (i128 and the GPU tests belong to the main part: six compiles at once starve them.)
  CIFAR=(--workload cifar --steps 30 --warmup 3)
  NB=(--set train.batched_fakes=false)
  CKPT=(--set train.checkpoint_activations=true)
  B0=(--set train.activation_memory_budget=0)
  variants=("" "${NB[*]} ${CKPT[*]}" "${NB[*]} ${B0[*]}" "${NB[*]} ${CKPT[*]} ${B0[*]}"
    "${NB[*]} --set train.activation_memory_budget=0.5" "${CKPT[*]}")
  for i in "${!variants[@]}"; do
    # shellcheck disable=SC2086  # each variant is a list of flags
    timeout "${P1:-250}" "$PY" -m gankit.cli bench --device cuda --json "${CIFAR[@]}" \
      ${variants[$i]} 2>"$OUT/p1_$i.err" | grep '^{' > "$OUT/p1_$i.json" &
  done
  wait
  cat "$OUT"/p1_*.json > "$OUT/parallel.jsonl"
  echo "=== [$(( $(date +%s) - T0 )) s] phase 1 done" >&2
  # Phase 2, one process at a time: the anchor's cifar row, then the timed rows, then what is
  # live at the defaults' peak (benchmarks/peak_breakdown.py). An anchor script that ignores
  # WORKLOADS prints its cifar line first; the step's limit then cuts its i128 run.
  anchor 60 cifar
  bench 60 "${CIFAR[@]}"
  best=$("$PY" - "$OUT" "${variants[@]}" <<'PYEOF'
import json, pathlib, sys
out, variants = pathlib.Path(sys.argv[1]), sys.argv[2:]
peaks = []
for i in range(1, len(variants)):
    text = (out / f"p1_{i}.json").read_text().strip()
    if text:
        peaks.append((json.loads(text.splitlines()[-1])["peak_mem_GiB"], i))
print(variants[min(peaks)[1]] if peaks else "")
PYEOF
)
  # shellcheck disable=SC2086
  [ -n "$best" ] && bench 60 "${CIFAR[@]}" $best
  step 60 "$PY" benchmarks/peak_breakdown.py cifar | tee -a "$OUT/peak_breakdown.jsonl"
  echo "=== total $(( $(date +%s) - T0 )) s" >&2
  exit 0
fi
if [ "${PART:-main}" = compiled ]; then
  BASE=(env PYTHONPATH="${BASELINE:-}:${PYTHONPATH:-}")
  runs=(i128 cifar); [ -n "${BASELINE:-}" ] && runs+=(base) && P1=${P1:-340}
  for w in "${runs[@]}"; do  # phase 1: compile all at once (CPU-bound), one iteration each
    if [ "$w" = base ]; then cmd=("${BASE[@]}" "$PY"); wl=i128; else cmd=("$PY"); wl=$w; fi
    timeout "${P1:-250}" "${cmd[@]}" -m gankit.cli bench --device cuda --json --workload "$wl" \
      --steps 1 --warmup 1 2>"$OUT/p1_$w.err" | grep '^{' > "$OUT/p1_$w.json" &
  done
  wait
  [ -f "$OUT/p1_base.json" ] && sed -i 's/^{/{"tree": "baseline", /' "$OUT/p1_base.json"
  cat "$OUT"/p1_*.json > "$OUT/parallel.jsonl"
  echo "=== [$(( $(date +%s) - T0 )) s] phase 1 done" >&2
  anchor 120
  bench 120 --workload i128 --steps 10 --warmup 2
  if [ -n "${BASELINE:-}" ]; then
    step 120 "${BASE[@]}" "$PY" -m gankit.cli bench --device cuda --json --workload i128 \
      --steps 10 --warmup 2 | grep '^{' | sed 's/^{/{"tree": "baseline", /' \
      | tee -a "$OUT/bench.jsonl"
  fi
  bench 60 --workload cifar --steps 30 --warmup 3
  step 120 "$PY" benchmarks/kernel_profile.py i128 | tee -a "$OUT/kernel_profile.jsonl"
  step 90 "$PY" "${GPU_TESTS[@]}"
  echo "=== total $(( $(date +%s) - T0 )) s" >&2
  exit 0
fi
step 60 "$PY" "${GPU_TESTS[@]}"
anchor 120
EAGER=(--set train.compile=false)
bench 30 --workload cifar --steps 30 --warmup 5 "${EAGER[@]}"
bench 45 --workload i128 --steps 10 --warmup 2 "${EAGER[@]}"
bench 30 --workload cifar --steps 30 --warmup 5 "${EAGER[@]}" --set train.batched_fakes=false \
  --set train.checkpoint_activations=true
step 60 "$PY" -m gankit.cli train --out "$OUT/demo" --device cuda --quiet
cp "$OUT/demo/metrics.jsonl" "$OUT/demo_metrics.jsonl" 2>/dev/null
step 40 "$PY" -m gankit.cli eval "$OUT/demo" --device cuda \
  --metrics class_acc,cfid,swd,cprdc,ccoverage_class --n 1000 > "$OUT/demo_eval.json"
rm -rf "$OUT/demo"
bench 90 --workload cifar --steps 30 --warmup 3
bench 170 --workload i128 --steps 10 --warmup 2
echo "=== total $(( $(date +%s) - T0 )) s" >&2
