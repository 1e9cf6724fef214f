#!/bin/bash
# Runs every benchmark into $OUT (default /tmp/goodvibe-bench/results), one JSON + log per run, each in its own
# process. Before each run it waits (up to $WAIT_MAX s) for the 1-minute load average to drop under $QUIET,
# and logs the load it started at, since other people's processes share this machine.
#   npx tsc -p . && [TRAIN_LAYERS=24] bash bench/run-all.sh [matmul|fwdbwd|fwdbwd-1thread|tidy-layers|train|train-1thread|full-memory|generate|serve-prefill ...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/goodvibe-bench/results}
QUIET=${QUIET:-0.8}
WAIT_MAX=${WAIT_MAX:-120}
PY=/usr/bin/python3
MODEL=/tmp/goodvibe-bench/qwen2.5-0.5b-random-L24
TRAIN_LAYERS=${TRAIN_LAYERS:-24}
mkdir -p "$OUT"

wait_quiet() {
  local waited=0
  while awk -v q="$QUIET" '{exit !($1 >= q)}' /proc/loadavg && [ "$waited" -lt "$WAIT_MAX" ]; do
    sleep 5
    waited=$((waited + 5))
  done
}

run() { # name, command...
  local name=$1
  shift
  wait_quiet
  echo "== $name (load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ))" | tee -a "$OUT/runs.log"
  "$@" --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 || echo "   FAILED: see $OUT/$name.log" | tee -a "$OUT/runs.log"
  tail -n 4 "$OUT/$name.log" | sed 's/^/   /' | tee -a "$OUT/runs.log"
  echo "   load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/runs.log"
}

parts=${*:-matmul fwdbwd train}
node -e 'import("./dist/bench/common.js").then((m) => m.randomModelDir(24))'

for part in $parts; do
  case $part in
  matmul)
    run matmul-ts node dist/bench/matmul-peak.js
    run matmul-ts-1thread node dist/bench/matmul-peak.js --threads 1
    run matmul-ts-haswell env OPENBLAS_CORETYPE=Haswell node dist/bench/matmul-peak.js --dtypes float32
    run matmul-torch env OPENBLAS_CORETYPE=SkylakeX $PY bench/torch_reference.py matmul
    run matmul-torch-auto-coretype $PY bench/torch_reference.py matmul --dtypes float32
    ;;
  fwdbwd)
    run fwdbwd-ts node dist/bench/forward-backward.js --profile
    run fwdbwd-torch env OPENBLAS_CORETYPE=SkylakeX $PY bench/torch_reference.py fwdbwd --model $MODEL --profile
    run fwdbwd-ts-1thread node dist/bench/forward-backward.js --threads 1
    run fwdbwd-torch-1thread env OPENBLAS_CORETYPE=SkylakeX $PY bench/torch_reference.py fwdbwd --model $MODEL --threads 1
    ;;
  fwdbwd-1thread) # the 1-thread pair alone
    run fwdbwd-ts-1thread node dist/bench/forward-backward.js --threads 1
    run fwdbwd-torch-1thread env OPENBLAS_CORETYPE=SkylakeX $PY bench/torch_reference.py fwdbwd --model $MODEL --threads 1
    ;;
  tidy-layers) # the memory experiment: free each layer's forward intermediates when it returns
    run fwdbwd-ts-tidy-layers node dist/bench/forward-backward.js --tidy-layers
    ;;
  train)
    for m in frozen goodvibe lora full; do
      run "train-$m" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS"
      run "train-$m-ckpt" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS" --checkpointing
    done
    ;;
  full-memory) # full fine-tuning's peak: bf16 mixed precision (the default) against the fp32 path, 1 thread
    run "train-1t-full-ckpt" node dist/bench/train-step.js --method full --layers "$TRAIN_LAYERS" --threads 1 --checkpointing
    run "train-1t-full-fp32-ckpt" node dist/bench/train-step.js --method full --dtype float32 --layers "$TRAIN_LAYERS" --threads 1 --checkpointing
    ;;
  train-1thread) # the same steps with one libtorch thread (much faster than two on a shared 2-core machine)
    for m in frozen goodvibe lora full; do
      run "train-1t-$m" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS" --threads 1
      run "train-1t-$m-ckpt" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS" --threads 1 --checkpointing
    done
    ;;
  generate) # generation tokens/s: built-in engine against llama.cpp (GGUF bf16 / q8_0), 24 layers
    run generate-backends node dist/bench/generate-backends.js
    ;;
  serve-prefill) # how long one long prompt stalls `goodvibe serve`, whole and in chunks
    run serve-prefill node dist/bench/serve-prefill.js
    ;;
  esac
done
