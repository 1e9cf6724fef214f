#!/bin/bash
# The GPU check, one command, for the first session that has a GPU (issue 13 §2). In order, each step logged to
# $OUT/gpu-check.log and stopped at the first failure:
#   1. the machine: nvidia-smi, the CUDA libtorch to build against ($LIBTORCH, else the Python torch's own libtorch)
#   2. the addon built against it (C++17; the same sources as Debian's 1.13 build), TypeScript compiled
#   3. the addon sees the GPU (cudaAvailable, device count, libtorch version)
#   4. the fixtures on the GPU: PyTorch's logits, identification and 3 AdamW steps of GoodVibe and LoRA
#      (test/models/on-device.test.ts), the device policy (test/tensor/device.test.ts), then the CPU fixture
#      suites (tensor, models, method) on that libtorch build
#   5. side by side on the GPU against PyTorch eager, same bf16 weights: the identification pass and one step of
#      GoodVibe / LoRA / full fine-tuning on Qwen2.5-0.5B's shape (LAYERS, default 24), JSON per run in $OUT
#
#   bash scripts/gpu-check.sh              # on the GPU machine (about 5 minutes on one H100-class GPU)
#   bash scripts/gpu-check.sh --rehearse   # without a GPU: the same steps on the CPU with the installed addon
#                                          # (no CUDA build; LAYERS=2 by default), to keep this script working
# Environment: LIBTORCH (a CUDA libtorch; default: python3 -c 'import torch' when it has CUDA), OUT (default
# /tmp/goodvibe-gpu-check), LAYERS, PY (default: the first of python3, /usr/bin/python3 with torch; step 5), SKIP_BENCH=1.
# Not covered here (do by hand, see README "CUDA"): the 7B shape, the Hugging Face round trip (transformers loading
# a hardened checkpoint, peft loading an exported adapter).
set -euo pipefail
cd "$(dirname "$0")/.."
REHEARSE=0
[ "${1:-}" = "--rehearse" ] && REHEARSE=1
OUT=${OUT:-/tmp/goodvibe-gpu-check}
if [ -z "${PY:-}" ]; then # the first Python with a torch: the user's, else Debian's python3-torch
  PY=python3
  for p in python3 /usr/bin/python3; do
    if $p -c 'import torch' 2>/dev/null; then PY=$p && break; fi
  done
fi
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
: >"$LOG"
say() { echo "== $*" | tee -a "$LOG"; }
step() { # description, command...
  local what=$1
  shift
  say "$what"
  if ! "$@" 2>&1 | tee -a "$LOG"; then
    say "FAILED: $what (log: $LOG)"
    exit 1
  fi
}

if [ $REHEARSE = 1 ]; then
  DEVICE=cpu
  LAYERS=${LAYERS:-2}
  say "rehearsal on the CPU: no CUDA build, device cpu, $LAYERS layers"
else
  DEVICE=cuda
  LAYERS=${LAYERS:-24}
  command -v nvidia-smi >/dev/null && step "nvidia-smi" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  if [ -z "${LIBTORCH:-}" ]; then
    LIBTORCH=$($PY -c 'import os, torch; assert torch.cuda.is_available(), "this torch has no CUDA"; print(os.path.dirname(torch.__file__))') || {
      say "no CUDA libtorch: set LIBTORCH to an unpacked CUDA libtorch, or install a CUDA torch for $PY"
      exit 1
    }
  fi
  export LIBTORCH
  say "LIBTORCH=$LIBTORCH"
  step "addon against $LIBTORCH" node scripts/build-native.mjs --force
fi
step "TypeScript" npm run build:ts --silent
step "the addon and the device" node -e '
  import("./dist/src/tensor/index.js").then((t) => {
    console.log("libtorch", t.torchVersion(), "cuda", t.cudaAvailable(), "kernels", t.kernelMode());
    const d = t.resolveDevice(process.argv[1]); // a clear error here when CUDA is absent
    const x = t.Tensor.randn([256, 256]).toDevice(d);
    const y = x.matmul(x).sum().item();
    console.log("device", d, "matmul ok", Number.isFinite(y));
  });' "$DEVICE"
step "fixtures on $DEVICE (logits, identification, GoodVibe and LoRA steps against PyTorch)" \
  env GOODVIBE_TEST_DEVICE=$DEVICE node --test --test-concurrency=1 dist/test/models/on-device.test.js dist/test/tensor/device.test.js
step "CPU fixture suites on this addon build" node --test --test-concurrency=1 dist/test/tensor dist/test/models dist/test/method

if [ "${SKIP_BENCH:-0}" = 1 ]; then
  say "benchmarks skipped (SKIP_BENCH=1)"
  exit 0
fi
if ! $PY -c 'import torch' 2>/dev/null; then
  say "no torch for $PY: benchmarks skipped"
  exit 0
fi
node -e "import('./dist/bench/common.js').then((m) => m.randomModelDir($LAYERS))" | tee -a "$LOG"
MODEL=/tmp/goodvibe-bench/qwen2.5-0.5b-random-L$LAYERS
bench() { # name, command...
  local name=$1
  shift
  say "$name"
  "$@" --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 || { say "FAILED: $name (log: $OUT/$name.log)"; exit 1; }
  tail -n 3 "$OUT/$name.log" | tee -a "$LOG"
}
bench fwdbwd-addon node dist/bench/forward-backward.js --device $DEVICE --layers "$LAYERS"
bench fwdbwd-torch $PY bench/torch_reference.py fwdbwd --model "$MODEL" --device $DEVICE
for m in goodvibe lora full; do
  bench "train-$m-addon" node dist/bench/train-step.js --method $m --device $DEVICE --layers "$LAYERS"
  bench "train-$m-torch" $PY bench/torch_train.py --model "$MODEL" --method $m --device $DEVICE
done
say "done: $OUT"
