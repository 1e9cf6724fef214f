#!/bin/bash
# GoodVibe end to end, side by side: `goodvibe harden` (identification, clustering, 2 epochs of GoodVibe training,
# fold) against the same pipeline in PyTorch (bench/torch_harden.py), on the same model folder (Qwen2.5-0.5B's
# shape, random bf16 weights, the real Qwen tokenizer) and the same token ids (bench/e2e-inputs.ts dumps what the
# recipe computes), in one run and one environment, A/B/A/B; then the agreement of the two and a table with the
# extrapolation to one language of the paper's data (424 pairs: 848 identification samples, 2 epochs).
#
#   npx tsc -p . && bash bench/e2e-harden.sh
#
# Environment (the same for both sides; runs.log records it with the load at the start of every run):
#   THREADS      libtorch threads on both sides (default 1: GOODVIBE_THREADS for ours, torch.set_num_threads)
#   OPENBLAS_CORETYPE  exported once for both sides as bench/side-by-side.sh does: default SkylakeX on AVX-512
#                CPUs (what the addon picks when it is unset); a value set in the environment is kept for both.
#                Elsewhere (AVX2) it stays unset for both, as the addon leaves it: both processes load the same
#                libopenblas.so.0, whose own detection picks the same core (Zen on a Zen 3); runs.log names it
#   OURS_SETS    extra settings for our side only, space-separated key=value (e.g. "dtype=float32": our compute in
#                float32 as the PyTorch side's TORCH_DTYPE=float32); recorded in runs.log
#   OURS_NODE_FLAGS  options for our side's node process (e.g. "--single-threaded-gc"); recorded in runs.log
#   TORCH_CHECKPOINTING  the PyTorch side's per-layer gradient checkpointing in training: on, off, or config
#                (default: the recipe's train.gradientCheckpointing; its "auto", which our side decides from its
#                memory estimate, is on there). Ours is set with OURS_SETS="train.gradientCheckpointing=false|auto"
#   TORCH_DTYPE  the PyTorch side's compute dtype: bfloat16 (default, the checkpoint's) or float32 (the weights
#                upcast: what a PyTorch user does where CPU bf16 products are slow, i.e. without AVX-512; the
#                folded checkpoint is bf16 either way). Ours is unchanged (it picks its CPU bf16 route itself)
#   LAYERS       decoder layers of the 0.5B shape (default 24, the real model's)
#   PAIRS        pairs of the sample (default 16: 32 identification samples, 16 training examples)
#   E2E_LANG     language of the CyberNative train pairs (default c++); EPOCHS (2), MAXLEN train.maxLength (512)
#   REPEATS      A/B pairs (default 2)
#   ONLY         "ours" or "torch": run one side only, and RUNS (e.g. "2") only those repeats, so that a long
#                measurement can be split into short ones under the core-0 lock; the comparison of a repeat and
#                the table are made once both sides' files are in OUT (the runs' folders are kept until then)
#   TRAIN_CHECK  1: then train the PyTorch side once more on our first run's cluster map (clusters differ
#                between the sides where bf16 noise moves a k-means choice), so every step's loss is comparable
#   OUT          results folder (default /tmp/goodvibe-bench/e2e-harden); the hardened folders are deleted after use
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/goodvibe-bench/e2e-harden}
PY=/usr/bin/python3
THREADS=${THREADS:-1}
LAYERS=${LAYERS:-24}
PAIRS=${PAIRS:-16}
E2E_LANG=${E2E_LANG:-c++}
EPOCHS=${EPOCHS:-2}
MAXLEN=${MAXLEN:-512}
REPEATS=${REPEATS:-2}
ONLY=${ONLY:-}
RUNS=${RUNS:-$(seq -s ' ' 1 "$REPEATS")}
TRAIN_CHECK=${TRAIN_CHECK:-0}
TORCH_DTYPE=${TORCH_DTYPE:-bfloat16}
TORCH_CHECKPOINTING=${TORCH_CHECKPOINTING:-config}
DATA=../shared/data/cybernative/train.jsonl
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
export GOODVIBE_THREADS=$THREADS
# the core OpenBLAS runs on in both processes (the variable's value, or its own detection when unset)
BLAS_CORE=$($PY -c 'import sys; sys.path.insert(0, "bench"); import torch_harden; print(torch_harden.openblas_core() or "unknown")' 2>/dev/null || echo unknown)
if [ ! -f "$DATA" ]; then
  echo "skipped: $DATA is not there"
  exit 0
fi
mkdir -p "$OUT"
SETS=(--set identify.maxPairs="$PAIRS" --set train.maxPairs="$PAIRS" --set train.epochs="$EPOCHS" --set train.maxLength="$MAXLEN")
OURS_SETS=${OURS_SETS:-}
OURS_NODE_FLAGS=${OURS_NODE_FLAGS:-}
OURS=()
for kv in $OURS_SETS; do OURS+=(--set "$kv"); done
node dist/bench/e2e-inputs.js --layers "$LAYERS" --data "$DATA" --languages "$E2E_LANG" --json "$OUT/inputs.json" "${SETS[@]}"
MODEL=/tmp/goodvibe-bench/e2e-L$LAYERS

# Runs a command with stderr and stdout timestamped per line: "<epoch seconds> <CPU seconds of the process> line";
# /usr/bin/time -v gives the peak RSS and the total wall and CPU time.
timed() { # name, command...
  local name=$1
  shift
  local pidf="$OUT/$name.pid"
  echo "== $name (load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), THREADS=$THREADS OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(auto)} (core $BLAS_CORE) TORCH_DTYPE=$TORCH_DTYPE TORCH_CHECKPOINTING=$TORCH_CHECKPOINTING OURS_SETS=${OURS_SETS:-(none)} OURS_NODE_FLAGS=${OURS_NODE_FLAGS:-(none)}, CPUs $(awk '/Cpus_allowed_list/ { print $2 }' /proc/self/status))" | tee -a "$OUT/runs.log"
  echo "start $EPOCHREALTIME" >"$OUT/$name.log"
  (
    /usr/bin/time -v -o "$OUT/$name.time" "$@" 2>&1 &
    echo $! >"$pidf"
    wait $!
  ) | {
    child=""
    while IFS= read -r line; do
      [ -n "$child" ] || child=$(pgrep -P "$(cat "$pidf")" | head -n 1 || true)
      cpu=-
      mem=""
      if [ -n "$child" ] && [ -r "/proc/$child/stat" ]; then
        cpu=$(sed 's/.*) //' "/proc/$child/stat" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / hz }')
        # resident and peak resident memory so far (GiB), read at the line: where the peak arises
        mem=$(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { if (r) printf " [rss %.2f hwm %.2f GiB]", r / 1048576, h / 1048576 }' "/proc/$child/status" 2>/dev/null || true)
      fi
      printf '%s %s %s%s\n' "$EPOCHREALTIME" "$cpu" "$line" "$mem"
    done
  } >>"$OUT/$name.log" || echo "   FAILED: see $OUT/$name.log" | tee -a "$OUT/runs.log"
  echo "end $EPOCHREALTIME" >>"$OUT/$name.log"
  rm -f "$pidf"
  grep -v '^start \|^end ' "$OUT/$name.log" | tail -n 2 | cut -d' ' -f3- | sed 's/^/   /' | tee -a "$OUT/runs.log"
}

cat "$MODEL/model.safetensors" >/dev/null # both sides start from the page cache
for r in $RUNS; do
  if [ "$ONLY" != torch ]; then
    rm -rf "$OUT/ours-$r" "$OUT/.ours-$r.run" "$OUT/ours-$r-kept"
    timed "ours-$r" node $OURS_NODE_FLAGS dist/src/cli/main.js harden -m "$MODEL" -d "$DATA" -o "$OUT/ours-$r" --languages "$E2E_LANG" "${SETS[@]}" ${OURS[@]+"${OURS[@]}"}
    # the stats and maps stay; the checkpoints go (about 1 GB each at 24 layers)
    mkdir -p "$OUT/ours-$r-kept"
    cp "$OUT/ours-$r"/*.json "$OUT/ours-$r-kept/"
    cp "$OUT/.ours-$r.run"/train-*/checkpoint/state.json "$OUT/ours-$r-kept/train-state.json"
    rm -rf "$OUT/ours-$r" "$OUT/.ours-$r.run"
  fi
  if [ "$ONLY" != ours ]; then
    rm -rf "$OUT/torch-$r"
    timed "torch-$r" $PY bench/torch_harden.py run --inputs "$OUT/inputs.json" --out "$OUT/torch-$r" --threads "$THREADS" --dtype "$TORCH_DTYPE" --checkpointing "$TORCH_CHECKPOINTING" --json "$OUT/torch-$r.json"
    rm -rf "$OUT/torch-$r"
  fi
  if [ -f "$OUT/ours-$r-kept/neurons.json" ] && [ -f "$OUT/torch-$r.json" ]; then
    $PY bench/torch_harden.py compare --ours "$OUT/ours-$r-kept" --torch "$OUT/torch-$r.json" --json "$OUT/agreement-$r.json" | tee -a "$OUT/runs.log"
  fi
done
for ((r = 1; r <= REPEATS; r++)); do
  if [ ! -f "$OUT/ours-$r.time" ] || [ ! -f "$OUT/torch-$r.time" ]; then
    echo "table: not every run of 1..$REPEATS is in $OUT yet"
    exit 0
  fi
done
$PY bench/torch_harden.py table --dir "$OUT" --repeats "$REPEATS" | tee "$OUT/table.md"
if [ "$TRAIN_CHECK" = 1 ]; then # training alone on our first run's cluster map: every step's loss comparable
  timed torch-train-check $PY bench/torch_harden.py run --inputs "$OUT/inputs.json" --out "$OUT/torch-check" --threads "$THREADS" --dtype "$TORCH_DTYPE" \
    --clusters "$OUT/ours-1-kept/clusters.json" --json "$OUT/torch-train-check.json"
  rm -rf "$OUT/torch-check"
  $PY bench/torch_harden.py compare --ours "$OUT/ours-1-kept" --torch "$OUT/torch-train-check.json" | tee -a "$OUT/table.md"
fi
