#!/bin/bash
# The addon against PyTorch eager, side by side in one run and one environment: the identification pass
# (addon with its per-op defaults / addon op by op / addon with a product per linear (--concat off) / PyTorch) and the training step of each method (addon / PyTorch), pairs run
# back to back so both sides meet the same load; the 1-minute load average is logged at the start of every run.
#
#   npx tsc -p . && bash bench/side-by-side.sh [matmul] [fwdbwd] [train] [train-fused] [frozendx] [wait-policy] [scores]
#
# Environment (the same for both sides; each run's JSON records it):
#   THREADS      libtorch threads on both sides (default: every core, what both default to)
#   OPENBLAS_CORETYPE  exported once for both sides; default: SkylakeX on AVX-512 CPUs (what the addon picks when
#                it is unset). A machine whose environment sets it (e.g. Haswell) gets that value on both sides.
#   LAYERS       decoder layers of the 0.5B-shaped model for fwdbwd (24) and TRAIN_LAYERS for train (24)
#   CHECKPOINTING  train steps with gradient checkpointing too (both, the default) or without only (off)
#   METHODS      the training methods that train / train-fused / frozendx run (default: goodvibe lora full)
#   PASS         frozendx runs the identification pass too (on, the default) or not (off)
#   HEAD         the pass's loss on both sides: labels (identify()'s two label tokens, the default) or full (the
#                full-vocabulary logits: figures before 2026-12-01); bench/pass.ts PassHead
#   GRADS        what the pass does with each linear output's gradient, on both sides (bench/pass.ts PassGrads):
#                hook (identify()'s reduction to a per-neuron mean |g| in a hook; the default with HEAD=labels) or
#                retain (every gradient kept by retainGrad / retain_grad: figures before 2026-12-01 06:00; the
#                default with HEAD=full). With hook, frozendx's and scores' pass pairs also compare the two sides'
#                per-neuron importances (bench/compare-scores.ts; scores: in float32, then bfloat16)
#   HOGS         busy processes started for the whole run as a controlled competing load (default 0)
#   OUT          results folder (default /tmp/goodvibe-bench/side-by-side)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/goodvibe-bench/side-by-side}
PY=/usr/bin/python3
THREADS=${THREADS:-$(nproc)}
LAYERS=${LAYERS:-24}
TRAIN_LAYERS=${TRAIN_LAYERS:-24}
HOGS=${HOGS:-0}
CHECKPOINTING=${CHECKPOINTING:-both}
METHODS=${METHODS:-goodvibe lora full}
HEAD=${HEAD:-labels}
if [ "$HEAD" = full ]; then GRADS=${GRADS:-retain}; else GRADS=${GRADS:-hook}; fi
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
mkdir -p "$OUT"

hogs=()
stop_hogs() { for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_hogs EXIT
for ((i = 0; i < HOGS; i++)); do
  node -e 'for (;;) {}' &
  hogs+=($!)
done

run() { # name, command...
  local name=$1
  shift
  echo "== $name (load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), THREADS=$THREADS OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(auto)} HOGS=$HOGS HEAD=$HEAD GRADS=$GRADS)" | tee -a "$OUT/runs.log"
  "$@" --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 || echo "   FAILED: see $OUT/$name.log" | tee -a "$OUT/runs.log"
  tail -n 3 "$OUT/$name.log" | sed 's/^/   /' | tee -a "$OUT/runs.log"
}

node -e "import('./dist/bench/common.js').then((m) => { m.randomModelDir($LAYERS); m.randomModelDir($TRAIN_LAYERS); })"
MODEL=/tmp/goodvibe-bench/qwen2.5-0.5b-random-L$LAYERS
TRAIN_MODEL=/tmp/goodvibe-bench/qwen2.5-0.5b-random-L$TRAIN_LAYERS
# GoodVibe's random rows and clusters: drawn and written by the addon's first step (train-step.ts --selection),
# read by PyTorch's, so both sides train the same rows (same trainable count)
SEL="$OUT/goodvibe-rows-L$TRAIN_LAYERS.json"

for part in ${*:-matmul fwdbwd train}; do
  case $part in
  matmul)
    run matmul-addon node dist/bench/matmul-peak.js --threads "$THREADS" --sizes 1024,2048
    run matmul-torch $PY bench/torch_reference.py matmul --threads "$THREADS" --sizes 1024,2048
    ;;
  fwdbwd)
    run fwdbwd-addon node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --head "$HEAD" --grads "$GRADS"
    run fwdbwd-torch $PY bench/torch_reference.py fwdbwd --model "$MODEL" --threads "$THREADS" --head "$HEAD" --grads "$GRADS"
    run fwdbwd-addon-opbyop node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --unfused --head "$HEAD" --grads "$GRADS"
    run fwdbwd-addon-separate node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --concat off --head "$HEAD" --grads "$GRADS"
    run fwdbwd-addon-2 node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --head "$HEAD" --grads "$GRADS"
    run fwdbwd-torch-2 $PY bench/torch_reference.py fwdbwd --model "$MODEL" --threads "$THREADS" --head "$HEAD" --grads "$GRADS"
    ;;
  train)
    for m in $METHODS; do
      cks=("" --checkpointing)
      [ "$CHECKPOINTING" = off ] && cks=("")
      for ck in "${cks[@]}"; do
        run "train-$m${ck:+-ckpt}-addon" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS" --threads "$THREADS" --selection "$SEL" $ck
        run "train-$m${ck:+-ckpt}-torch" $PY bench/torch_train.py --model "$TRAIN_MODEL" --method $m --threads "$THREADS" --selection "$SEL" $ck
      done
    done
    ;;
  train-fused) # per method, back to back: the addon op by op (--unfused), with every fused op, PyTorch
    for m in $METHODS; do
      run "train-$m-addon-opbyop" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS" --threads "$THREADS" --unfused --selection "$SEL"
      run "train-$m-addon-fused" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS" --threads "$THREADS" --fused --selection "$SEL"
      run "train-$m-torch" $PY bench/torch_train.py --model "$TRAIN_MODEL" --method $m --threads "$THREADS" --selection "$SEL"
    done
    ;;
  frozendx) # the defaults (frozenDx within its memory budget) beside frozenDx off and PyTorch, back to back: each
    # training method of METHODS (GoodVibe with the shared rows), then the identification pass
    for m in $METHODS; do
      run "train-$m-addon" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS" --threads "$THREADS" --selection "$SEL" --steps 5
      [ "$m" = full ] || run "train-$m-addon-dxoff" node dist/bench/train-step.js --method $m --layers "$TRAIN_LAYERS" --threads "$THREADS" --selection "$SEL" --steps 5 --frozen-dx off
      run "train-$m-torch" $PY bench/torch_train.py --model "$TRAIN_MODEL" --method $m --threads "$THREADS" --selection "$SEL" --steps 5
    done
    if [ "${PASS:-on}" = on ]; then
      sc_addon=() sc_torch=()
      if [ "$GRADS" = hook ]; then sc_addon=(--scores "$OUT/scores-addon.json") sc_torch=(--scores "$OUT/scores-torch.json"); fi
      run fwdbwd-addon node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --head "$HEAD" --grads "$GRADS" "${sc_addon[@]}"
      run fwdbwd-addon-dxoff node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --frozen-dx off --head "$HEAD" --grads "$GRADS"
      run fwdbwd-torch $PY bench/torch_reference.py fwdbwd --model "$MODEL" --threads "$THREADS" --head "$HEAD" --grads "$GRADS" "${sc_torch[@]}"
      if [ "$GRADS" = hook ]; then run scores-bf16 node dist/bench/compare-scores.js "$OUT/scores-addon.json" "$OUT/scores-torch.json"; fi
    fi
    ;;
  scores) # the two sides' per-neuron importances of one pass (GRADS=hook): float32 (the same model, weights upcast
    # exactly: only the order of float32 sums differs) and bfloat16
    for dt in float32 bfloat16; do
      run "scores-addon-$dt" node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --passes 1 --dtype $dt --scores "$OUT/scores-addon-$dt.json"
      run "scores-torch-$dt" $PY bench/torch_reference.py fwdbwd --model "$MODEL" --threads "$THREADS" --passes 1 --dtype $dt --scores "$OUT/scores-torch-$dt.json"
      run "scores-$dt" node dist/bench/compare-scores.js "$OUT/scores-addon-$dt.json" "$OUT/scores-torch-$dt.json"
    done
    ;;
  wait-policy) # the addon's wait policy (util/cores.ts openmpWaitEnv) against libgomp's default spin and PyTorch, same load
    run "fwdbwd-addon-default-wait" node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --head "$HEAD" --grads "$GRADS"
    run "fwdbwd-addon-gomp-spin300000" env GOMP_SPINCOUNT=300000 node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --head "$HEAD" --grads "$GRADS"
    run "fwdbwd-addon-omp-PASSIVE" env OMP_WAIT_POLICY=PASSIVE node dist/bench/forward-backward.js --threads "$THREADS" --layers "$LAYERS" --head "$HEAD" --grads "$GRADS"
    run "fwdbwd-torch-wait" $PY bench/torch_reference.py fwdbwd --model "$MODEL" --threads "$THREADS" --head "$HEAD" --grads "$GRADS"
    run "fwdbwd-addon-1thread" node dist/bench/forward-backward.js --threads 1 --layers "$LAYERS" --head "$HEAD" --grads "$GRADS"
    ;;
  esac
done
