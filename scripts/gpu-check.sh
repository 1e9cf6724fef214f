#!/bin/bash
# The GPU checklist in one command (issue 13 §2), for a session that is lent a GPU machine (one H200 there: no
# Node.js, no network, 15 minutes of device time in all, at most 600 s per command). Three modes:
#
#   bash scripts/gpu-check.sh --prepare    HERE, before the call: compiles the TypeScript and packs into .gpu-carry/
#                                          (ignored) what the machine lacks: Node (this machine's node, stripped,
#                                          xz), Node's headers for node-gyp, the node_modules the run loads, dist/.
#                                          Prints the size of what travels (limit 64 MiB) and the call below.
#   bash scripts/gpu-check.sh              ON THE GPU MACHINE (the call below).
#   bash scripts/gpu-check.sh --rehearse   without a GPU: the same steps on the CPU, small shapes, the round trip's
#                                          reference engine (no transformers/peft here). scripts/gpu-rehearse.sh runs it
#                                          in a clean copy of the tree + .gpu-carry only, without network, with the
#                                          host's node hidden.
#
# The call (run tool), after --prepare, from the repository root the tool sends:
#   command:   bash scripts/gpu-check.sh
#   carry:     [".gpu-carry"]
#   timeout_s: 560
# What comes back ($OUT, at most 8 files): summary.md (a line per step, written as it goes), gpu-check.log (all
# output), logs.tar.gz (each step's log, the benchmark and round-trip JSON; rewritten after every step), bench.md,
# and the addon built there with its stamp (goodvibe_torch.node, goodvibe-build.json).
#
# A second call (the machine is given back 30 s after a call, and a fresh one is bare): STEPS picks the groups to run
# (default "machine fixtures hf bench05 bench7 suites"; also "perf": where our step's time goes on the GPU, "ops":
# both sides' steps at 7B widths op by op, "host": both sides' steps at tiny widths (make-random-model's host
# shape: what each op costs the host, seconds), "fused": the addon's fused ops on the device, each against op by op
# (FUSED_AB lists them), and "demo": goodvibe demo on the GPU; imports, build and device always
# run), and the addon the
# first call sent back skips the build: copy goodvibe_torch.node and goodvibe-build.json into .gpu-carry/prebuilt/.
# The build then only checks its stamp (same libtorch folder, same sources) and that it loads; else it rebuilds.
#   command:   STEPS="bench7 suites" BUDGET=230 bash scripts/gpu-check.sh      timeout_s: 270
#
# Steps, each under its own timeout and skipped when the budget (BUDGET s, default 500, from the start) cannot
# hold it; a failed step does not stop the ones that do not need it:
#   0 imports      every package dist/ reaches loads from the carried node_modules (scripts/check-imports.mjs)
#   1 machine      nvidia-smi, nvcc, python3's torch / transformers / peft, g++, make
#   2 build        the addon against python3's CUDA libtorch (scripts/build-native.mjs: node-gyp, make -j, C++17;
#                  without make, binding.gyp's compile and link lines by hand: build_direct, DIRECT_BUILD=1 to force)
#   3 device       the addon loads, sees CUDA, a matmul on the GPU
#   4 fixtures     test/models/on-device.test.ts on cuda (PyTorch's logits, identification, GoodVibe and LoRA AdamW
#                  steps of all four families) and test/tensor/device.test.ts
#   5 hf           the Hugging Face round trip: bench/hf-roundtrip.ts (random bf16 Llama/Qwen2/Qwen3/Gemma3 bases and a multimodal Gemma3,
#                  CLI harden goodvibe + lora, GoodVibe exported as PEFT, our logits) then bench/hf_roundtrip.py
#                  (transformers loads each checkpoint, peft each adapter, merged too: logits against ours), then
#                  the other way (hf-back): transformers' save_pretrained of each base, read by our loader
#   6 bench-0.5b   Qwen2.5-0.5B's shape (LAYERS_05B, default 24), TOKENS tokens (default 1024): the identification pass
#                  (bench/forward-backward.ts vs bench/torch_reference.py fwdbwd) and one training step of GoodVibe,
#                  LoRA and full fine-tuning (bench/train-step.ts vs bench/torch_train.py), same bf16 weights
#   7 bench-7b     the same at Qwen2.5-7B's widths, LAYERS_7B layers (default 8 of 28: the time), tied embeddings
#   8 suites       the CPU fixture suites (tensor, models, method) on this libtorch build, CONCURRENCY files at once
# bench.md: tokens/s of both sides, the ratio, the share of PEAK_TFLOPS (790: the bf16 matmul rate measured on this
# kind of machine) and the peak GPU memory each process reached (nvidia-smi's memory.used, sampled every 200 ms,
# minus the idle level).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
MODE=gpu
case "${1:-}" in
--prepare) MODE=prepare ;;
--rehearse) MODE=rehearse ;;
"") ;;
*) echo "usage: bash scripts/gpu-check.sh [--prepare | --rehearse]" >&2 && exit 2 ;;
esac
CARRY=$REPO/.gpu-carry

# ---------------------------------------------------------------------------------------------------- --prepare
if [ $MODE = prepare ]; then
  set -e
  NODE=$(command -v node)
  mkdir -p "$CARRY"
  echo "== TypeScript → dist/"
  node node_modules/typescript/bin/tsc -p .
  stamp="$(node --version) $(stat -c %s-%Y "$NODE")"
  if [ ! -f "$CARRY/node.xz" ] || [ "$(cat "$CARRY/node.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "== $NODE ($(node --version)), stripped, xz (about 2 minutes)"
    strip -o "$CARRY/node.tmp" "$NODE"
    xz --x86 --lzma2=preset=9e -T0 -c "$CARRY/node.tmp" >"$CARRY/node.xz.tmp"
    rm -f "$CARRY/node.tmp" && mv "$CARRY/node.xz.tmp" "$CARRY/node.xz" && echo "$stamp" >"$CARRY/node.stamp"
  fi
  echo "== Node's headers (node-gyp --nodedir, no download)"
  INC=$(dirname "$(dirname "$NODE")")/include/node
  [ -f "$INC/common.gypi" ] || INC=/usr/include/node
  [ -f "$INC/common.gypi" ] || { echo "no Node headers (include/node/common.gypi) beside $NODE or in /usr/include/node" >&2; exit 1; }
  tar -C "$(dirname "$INC")" -cJf "$CARRY/node-headers.tar.xz" --transform 's,^node,include/node,' \
    $(cd "$(dirname "$INC")" && ls node/*.h node/*.gypi)
  echo "== node_modules: the production closure and the dev dependencies the tests import, without node-llama-cpp"
  # llama.cpp generation is not run there; TypeScript sources and declarations, source maps, docs, vega's minified and UMD
  # duplicates and JSON schemas are not loaded at run time (scripts/check-imports.mjs, step imports, checks that)
  npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$REPO/||" | grep '^node_modules/' |
    grep -v -E '^node_modules/(node-llama-cpp|@node-llama-cpp/[^/]*)(/|$)' |
    grep -v '^node_modules/.*/node_modules/' >"$CARRY/modules.txt"
  printf '%s\n' node_modules/@huggingface/gguf node_modules/@huggingface/tasks node_modules/hyparquet-writer >>"$CARRY/modules.txt"
  # prettier's core and its TypeScript parser and printer only (test/tensor/native-ops.test.ts formats with them)
  for f in package.json index.cjs index.mjs doc.js doc.mjs plugins/typescript.js plugins/typescript.mjs \
    plugins/estree.js plugins/estree.mjs; do echo "node_modules/prettier/$f"; done >>"$CARRY/modules.txt"
  tar -cJf "$CARRY/node_modules.tar.xz" --exclude='*.ts' --exclude='*.d.mts' --exclude='*.d.cts' --exclude='*.map' \
    --exclude='*.md' --exclude='node_modules/vega*/build/*.min.js' --exclude='*-schema.json' --exclude='node_modules/vega/build/vega.js' \
    --exclude='node_modules/vega/build/vega-core.js' -T "$CARRY/modules.txt"
  echo "== dist/"
  tar -cJf "$CARRY/dist.tar.xz" dist
  git rev-parse HEAD >"$CARRY/commit"
  tracked=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}')
  carried=$(du -sb "$CARRY" | cut -f1)
  echo "== what travels: tree $((tracked / 1048576)) MiB + .gpu-carry $((carried / 1048576)) MiB = $(((tracked + carried) / 1048576)) MiB (limit 64)"
  ls -la "$CARRY"
  [ $((tracked + carried)) -lt $((63 * 1048576)) ] || { echo "over the 64 MiB the run tool carries" >&2; exit 1; }
  cat <<'EOF'
== the call (run tool):
   command:   bash scripts/gpu-check.sh
   carry:     [".gpu-carry"]
   timeout_s: 560
EOF
  exit 0
fi

# ---------------------------------------------------------------------------------------------------- the run
OUT=${OUT:-/tmp/goodvibe-gpu-check}
WORK=${WORK:-/tmp/goodvibe-gpu-work}
BUDGET=${BUDGET:-500}
[ $MODE = rehearse ] && BUDGET=${REHEARSE_BUDGET:-4000} # this 2-core machine is 50-100x slower
PEAK_TFLOPS=${PEAK_TFLOPS:-790}
mkdir -p "$OUT" "$WORK/logs" "$WORK/bench"
LOG=$OUT/gpu-check.log
SUMMARY=$OUT/summary.md
: >"$LOG"
if [ $MODE = rehearse ]; then
  DEVICE=cpu
  LAYERS_05B=${LAYERS_05B:-2} LAYERS_7B=${LAYERS_7B:-1} TOKENS=${TOKENS:-64} FAMILIES=${FAMILIES:-llama,qwen2,qwen3,gemma3,gemma3mm,qwen2yarn}
  PY=${PY:-/usr/bin/python3}
  ENGINE=reference
else
  DEVICE=cuda
  LAYERS_05B=${LAYERS_05B:-24} LAYERS_7B=${LAYERS_7B:-8} TOKENS=${TOKENS:-1024} FAMILIES=${FAMILIES:-llama,qwen2,qwen3,gemma3,gemma3mm,qwen2yarn}
  PY=${PY:-python3}
  ENGINE=hf
fi
CONCURRENCY=${CONCURRENCY:-8}
STEPS=${STEPS:-machine fixtures hf bench05 bench7 suites}
want() { [[ " $STEPS " == *" $1 "* ]]; }
{
  echo "# GPU check ($MODE), $(date -u +%FT%TZ), commit $(cat "$CARRY/commit" 2>/dev/null || git rev-parse HEAD 2>/dev/null)"
  echo
  echo "| step | result | seconds | note |"
  echo "| --- | --- | --- | --- |"
} >"$SUMMARY"
say() { echo "== $*" | tee -a "$LOG"; }
pack() { tar -C "$WORK" -czf "$OUT/logs.tar.gz.tmp" logs bench 2>/dev/null && mv "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"; }
declare -A RESULT
# run_step NAME TIMEOUT NOTE CMD...: skipped when the budget cannot hold TIMEOUT; its log in $WORK/logs/NAME.log
run_step() {
  local name=$1 limit=$2 note=$3
  shift 3
  local left=$((BUDGET - SECONDS))
  if [ $left -lt 20 ]; then
    RESULT[$name]=skipped
    echo "| $name | skipped (budget: ${left} s left) | 0 | $note |" >>"$SUMMARY"
    say "$name: skipped, ${left} s of the budget left"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "$name (timeout ${limit} s): $note"
  local t0=$SECONDS rc
  timeout -k 10 "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
  rc=$?
  cat "$WORK/logs/$name.log" >>"$LOG"
  local took=$((SECONDS - t0)) res=ok
  if [ $rc = 124 ] || [ $rc = 137 ]; then res="TIMEOUT after ${limit} s"; elif [ $rc != 0 ]; then res="FAILED (exit $rc)"; fi
  RESULT[$name]=$res
  echo "| $name | $res | $took | $note |" >>"$SUMMARY"
  say "$name: $res (${took} s)"
  [ "$res" = ok ] || tail -n 25 "$WORK/logs/$name.log"
  pack
  [ "$res" = ok ]
}
need() { # need STEP...: every named step passed
  for s in "$@"; do [ "${RESULT[$s]:-}" = ok ] || return 1; done
}

# ---------------------------------------------------------------- Node, its headers, node_modules, dist from .gpu-carry
# untar ARCHIVE DIR: tar -J where xz is installed, else python3's tarfile (lzma is in the standard library)
untar() {
  if xz --version >/dev/null 2>&1; then
    tar -C "$2" -xJf "$1"
  else
    "$PY" -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
t.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "data_filter") else {}))' "$1" "$2"
  fi
}
if [ -f "$CARRY/node.xz" ]; then
  mkdir -p "$WORK/node/bin"
  if [ ! -x "$WORK/node/bin/node" ]; then
    "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "$CARRY/node.xz" "$WORK/node/bin/node.tmp" && chmod +x "$WORK/node/bin/node.tmp" && mv "$WORK/node/bin/node.tmp" "$WORK/node/bin/node"
  fi
  untar "$CARRY/node-headers.tar.xz" "$WORK/node"
  export PATH=$WORK/node/bin:$PATH npm_config_nodedir=$WORK/node
fi
# the carried ones replace whatever an earlier call left on a warm machine; never a developer's own (a --rehearse run
# in a git checkout would replace its node_modules, dev tools included, and its dist with the carried ones)
if [ $MODE = rehearse ] && [ -e .git ]; then
  echo "gpu-check.sh --rehearse replaces node_modules and dist with .gpu-carry's: run it in a copy of what travels" \
    "(sudo bash scripts/gpu-rehearse.sh), not in this git checkout ($REPO)" >&2
  exit 2
fi
[ -f "$CARRY/node_modules.tar.xz" ] && rm -rf node_modules && untar "$CARRY/node_modules.tar.xz" .
[ -f "$CARRY/dist.tar.xz" ] && rm -rf dist && untar "$CARRY/dist.tar.xz" .
if ! command -v node >/dev/null; then
  say "no node: run bash scripts/gpu-check.sh --prepare here and carry .gpu-carry"
  echo "| setup | FAILED: no node (.gpu-carry missing) | 0 | |" >>"$SUMMARY"
  exit 1
fi
say "node $(command -v node) $(node --version), python $PY, budget $BUDGET s, device $DEVICE, steps: $STEPS"
export JOBS=max npm_config_jobs=max # node-gyp's make -j (the 16 cores)

# ---------------------------------------------------------------- 0 imports, 1 machine, 2 build, 3 device
run_step imports 60 "every package dist/ reaches loads from the carried node_modules" node scripts/check-imports.mjs
# ---------------------------------------------------------------- 1 machine, 2 build, 3 device
want machine && run_step machine 60 "GPU, compilers, Python packages" bash -c "
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo 'no nvidia-smi'
  nvcc --version 2>&1 | tail -n 2 || true
  g++ --version | head -n 1; make --version | head -n 1; cmake --version | head -n 1 || true; nproc; free -g | head -n 2
  $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available(), \"cxx11 abi\", torch.compiled_with_cxx11_abi())'
  for m in transformers peft safetensors numpy; do $PY -c \"import \$m; print(\\\"\$m\\\", \$m.__version__)\" 2>&1 | tail -n 1; done
"
# Without make (the machine's image lists CMake and ninja, not make): the same compile and link lines as
# binding.gyp's, by hand, one g++ per source in parallel; then the same load check as build-native.mjs
build_direct() {
  set -e
  local inc libs out=native/build/Release
  inc=$(node native/find-libtorch.mjs --include)
  libs=$(node native/find-libtorch.mjs --libs)
  mkdir -p "$out/obj"
  local flags=($(node native/find-libtorch.mjs --cflags) -fPIC -pthread -O3 -fexceptions -frtti -fno-math-errno -fno-trapping-math -Wno-unused-parameter
    -Wno-deprecated-declarations -DNAPI_CPP_EXCEPTIONS -DNAPI_VERSION=8 -DBUILDING_NODE_EXTENSION
    -DNODE_GYP_MODULE_NAME=goodvibe_torch -I"$(node -p "require('node-addon-api').include_dir")"
    -I"${npm_config_nodedir:-/usr}/include/node")
  for i in $inc; do flags+=(-I"$i"); done
  local srcs pids=()
  srcs=$(python3 -c 'import ast; print(" ".join(ast.literal_eval(open("native/binding.gyp").read())["targets"][0]["sources"]))')
  for f in $srcs; do
    g++ "${flags[@]}" -c "native/$f" -o "$out/obj/$(basename "$f" .cc).o" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  # shellcheck disable=SC2086
  g++ -shared -pthread -rdynamic -o "$out/goodvibe_torch.node" "$out"/obj/*.o $libs
  node -e "console.log('addon built by hand, libtorch', require('./$out/goodvibe_torch.node').version())"
}
[ $MODE = gpu ] && export LIBTORCH=${LIBTORCH:-$($PY -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)}
if [ -f "$CARRY/prebuilt/goodvibe_torch.node" ] && [ -f "$CARRY/prebuilt/goodvibe-build.json" ]; then
  # an earlier call's build: build-native.mjs keeps it when its stamp matches this libtorch and these sources, else
  # rebuilds; the device step checks that it loads
  mkdir -p native/build/Release
  cp "$CARRY/prebuilt/goodvibe_torch.node" native/build/Release/ && cp "$CARRY/prebuilt/goodvibe-build.json" native/build/
  run_step build 300 "the carried addon of an earlier call when its stamp matches ${LIBTORCH:-the found libtorch}, else node-gyp" \
    node scripts/build-native.mjs
elif [ $MODE = gpu ] || [ "${DIRECT_BUILD:-0}" = 1 ]; then
  if command -v make >/dev/null && [ "${DIRECT_BUILD:-0}" != 1 ]; then
    run_step build 300 "addon against ${LIBTORCH:-the found libtorch} (node-gyp, make -j)" node scripts/build-native.mjs --force
  else
    export -f build_direct
    run_step build 300 "addon against ${LIBTORCH:-the found libtorch} (no make: binding.gyp's lines by hand, g++ per source)" \
      bash -c build_direct
  fi
elif [ ! -f native/build/Release/goodvibe_torch.node ] || [ "${REHEARSE_BUILD:-1}" = 1 ]; then
  run_step build 900 "addon against the host libtorch (rehearsal)" node scripts/build-native.mjs --force
else
  RESULT[build]=ok
fi
# the addon back to this machine, for a second call's .gpu-carry/prebuilt (it links libtorch by its path there)
if need build; then
  cp native/build/Release/goodvibe_torch.node "$OUT/" 2>/dev/null
  cp native/build/goodvibe-build.json "$OUT/" 2>/dev/null
fi
run_step device 60 "the addon loads, sees the device, a matmul there" node -e '
  import("./dist/src/tensor/index.js").then((t) => {
    console.log("libtorch", t.torchVersion(), "cuda", t.cudaAvailable(), "kernels", t.kernelMode());
    const d = t.resolveDevice(process.argv[1]); // a clear error here when CUDA is absent
    const x = t.Tensor.randn([1024, 1024]).toDevice(d);
    const y = x.matmul(x).sum().item();
    console.log("device", d, "matmul finite", Number.isFinite(y));
    if (!Number.isFinite(y)) process.exit(1);
  });' "$DEVICE"

# ---------------------------------------------------------------- 4 fixtures on the device
if want fixtures && need build device; then
  run_step fixtures 180 "on-device fixtures (4 families) + device policy, GOODVIBE_TEST_DEVICE=$DEVICE" \
    env GOODVIBE_TEST_DEVICE=$DEVICE node --test --test-concurrency=1 dist/test/models/on-device.test.js dist/test/tensor/device.test.js
fi

# ---------------------------------------------------------------- 5 the Hugging Face round trip
if want hf && need build device; then
  # the formats do not depend on where our side ran: if the CLI fails on the GPU, the round trip still runs from
  # the CPU (and the failure stays in the summary)
  { run_step hf-ours 240 "$FAMILIES: bases, CLI harden goodvibe + lora, GoodVibe as PEFT, our logits" \
    node dist/bench/hf-roundtrip.js --out "$WORK/hf" --device "$DEVICE" --families "$FAMILIES" ||
    { [ $DEVICE != cpu ] && run_step hf-ours-cpu 150 "the same on the CPU, after hf-ours failed on $DEVICE" \
      node dist/bench/hf-roundtrip.js --out "$WORK/hf" --device cpu --families "$FAMILIES"; }; } &&
    run_step hf-theirs 180 "engine $ENGINE: checkpoints and adapters loaded by the Python side, logits against ours" \
      "$PY" bench/hf_roundtrip.py "$WORK/hf" --device "$DEVICE" --engine $ENGINE --json "$WORK/bench/hf-roundtrip.json"
  [ -f "$WORK/hf/hf-saved.json" ] &&
    run_step hf-back 120 "the other way: the bases as the Python side saved them, read by our loader, logits against its" \
      node dist/bench/hf-roundtrip.js --check "$WORK/hf/hf-saved.json" --device "$DEVICE"
fi

# ---------------------------------------------------------------- 6, 7 benchmarks side by side
GPUMEM=""
gpumem_start() {
  GPUMEM=""
  command -v nvidia-smi >/dev/null || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$WORK/bench/$1.gpumem" 2>/dev/null &
  GPUMEM=$!
}
gpumem_stop() { [ -n "$GPUMEM" ] && kill "$GPUMEM" 2>/dev/null && wait "$GPUMEM" 2>/dev/null; GPUMEM=""; }
bench_pair() { # shape layers methods...
  local shape=$1 layers=$2
  shift 2
  local dir=$WORK/models/qwen2.5-$shape-random-L$layers
  local common=(--device "$DEVICE" --tokens "$TOKENS")
  # the host shape's steps take milliseconds: enough of them for a median past V8's warm-up
  local n=3
  [ "$shape" = host ] && n=30
  run_step "model-$shape" 120 "random bf16 checkpoint, Qwen2.5-$shape widths, $layers layers" \
    node dist/bench/make-random-model.js "$dir" "$layers" "$shape" "$DEVICE" || return 1
  one() { # name, command... (nvidia-smi sampled while it runs)
    local name=$1
    shift
    gpumem_start "$name"
    run_step "$name" 150 "$shape, $layers layers, $TOKENS tokens" "$@" --json "$WORK/bench/$name.json"
    local rc=$?
    gpumem_stop
    return $rc
  }
  one "fwdbwd-$shape-ours" node dist/bench/forward-backward.js --model "$dir" "${common[@]}" --passes $n
  one "fwdbwd-$shape-torch" "$PY" bench/torch_reference.py fwdbwd --model "$dir" "${common[@]}" --passes $n
  for m in "$@"; do
    one "train-$m-$shape-ours" node dist/bench/train-step.js --model "$dir" --method "$m" "${common[@]}" --steps $n
    one "train-$m-$shape-torch" "$PY" bench/torch_train.py --model "$dir" --method "$m" "${common[@]}" --steps $n
  done
  rm -rf "$dir"
}
if { want bench05 || want bench7 || want host; } && need build device; then
  # the host shape first: seconds, and the figure the others are read against (what the host pays per op)
  want host && bench_pair host 8 goodvibe lora full
  want bench05 && bench_pair 0.5b "$LAYERS_05B" goodvibe lora full
  if want bench7; then
    if [ $MODE = rehearse ]; then bench_pair 7b "$LAYERS_7B" goodvibe; else bench_pair 7b "$LAYERS_7B" goodvibe lora full; fi
  fi
  "$PY" bench/gpu_summary.py "$WORK/bench" --peak-tflops "$PEAK_TFLOPS" >"$OUT/bench.md" 2>>"$LOG" || true
  cat "$OUT/bench.md" | tee -a "$LOG"
fi

# ---------------------------------------------------------------- perf: where a GPU step's time goes (host or device)
if want perf && need build device; then
  pdir=$WORK/models/qwen2.5-0.5b-random-L24
  if run_step perf-model 120 "random bf16 checkpoint, Qwen2.5-0.5b widths, 24 layers" \
    node dist/bench/make-random-model.js "$pdir" 24 0.5b "$DEVICE"; then
    pc=(--model "$pdir" --device "$DEVICE" --tokens "$TOKENS")
    # the same GoodVibe step: as run (libtorch threads by size), one libtorch thread, a V8 CPU profile, PyTorch's
    run_step perf-step 90 "GoodVibe step, 0.5b, default threads (wall and CPU per step)" \
      node dist/bench/train-step.js "${pc[@]}" --method goodvibe --steps 5 --json "$WORK/bench/perf-step.json"
    run_step perf-step-t1 90 "the same with one libtorch thread" \
      node dist/bench/train-step.js "${pc[@]}" --method goodvibe --steps 5 --threads 1 --json "$WORK/bench/perf-step-t1.json"
    run_step perf-step-cpuprof 90 "the same under node --cpu-prof (JavaScript, GC and native time on the main thread)" \
      node --cpu-prof --cpu-prof-dir="$WORK/bench/cpuprof" dist/bench/train-step.js "${pc[@]}" --method goodvibe --steps 5
    run_step perf-step-torch 90 "PyTorch's GoodVibe step, same run" \
      "$PY" bench/torch_train.py "${pc[@]}" --method goodvibe --steps 5 --json "$WORK/bench/perf-step-torch.json"
    run_step perf-fwd-profile 90 "forward only, host time by piece (--profile), then the pass" \
      node dist/bench/forward-backward.js "${pc[@]}" --passes 3 --profile
    run_step perf-fwdbwd-unfused 90 "the identification pass op by op (GOODVIBE_FUSED=0)" \
      node dist/bench/forward-backward.js "${pc[@]}" --passes 3 --unfused
    rm -rf "$pdir"
  fi
fi

# ---------------------------------------------------------------- ops: both sides' steps op by op (bench/op-profile.ts)
# At Qwen2.5-7B's widths (LAYERS_7B layers), the same GoodVibe and full fine-tuning steps and identification pass on
# both sides, then the GoodVibe step at the 0.5B shape (LAYERS_05B layers), each with --op-profile: every op libtorch runs, its calls and self time, ours set beside PyTorch's.
# With CUDA_LAUNCH_BLOCKING=1 an op's time holds its kernel's (the device's time, op by op); the GoodVibe step also
# without it (the host's launch time). The tables go to bench/ops-*.md in logs.tar.gz and to the log.
if want ops && need build device; then
  odir=$WORK/models/qwen2.5-7b-random-L$LAYERS_7B
  if run_step ops-model 120 "random bf16 checkpoint, Qwen2.5-7b widths, $LAYERS_7B layers" \
    node dist/bench/make-random-model.js "$odir" "$LAYERS_7B" 7b "$DEVICE"; then
    oc=(--model "$odir" --device "$DEVICE" --tokens "$TOKENS")
    ops_pair() { # name, blocking (1 or 0), ours' command..., --, PyTorch's command...
      local name=$1 blocking=$2
      shift 2
      local ours=() torch=()
      while [ "$1" != -- ]; do ours+=("$1"); shift; done
      shift
      torch=("$@")
      run_step "ops-$name-ours" 120 "$name, ours, CUDA_LAUNCH_BLOCKING=$blocking, op profile" \
        env CUDA_LAUNCH_BLOCKING="$blocking" "${ours[@]}" --op-profile "$WORK/bench/ops-$name-ours.json" &&
        run_step "ops-$name-torch" 120 "$name, PyTorch, CUDA_LAUNCH_BLOCKING=$blocking, op profile" \
          env CUDA_LAUNCH_BLOCKING="$blocking" "${torch[@]}" --op-profile "$WORK/bench/ops-$name-torch.json" &&
        node dist/bench/op-profile.js "$WORK/bench/ops-$name-ours.json" "$WORK/bench/ops-$name-torch.json" --top 25 \
          >"$WORK/bench/ops-$name.md" 2>>"$LOG" && sed -n 1,35p "$WORK/bench/ops-$name.md" | tee -a "$LOG"
    }
    ops_pair goodvibe-blocking 1 node dist/bench/train-step.js "${oc[@]}" --method goodvibe --steps 3 \
      --selection "$WORK/bench/ops-selection.json" -- \
      "$PY" bench/torch_train.py "${oc[@]}" --method goodvibe --steps 3 --selection "$WORK/bench/ops-selection.json"
    ops_pair goodvibe-async 0 node dist/bench/train-step.js "${oc[@]}" --method goodvibe --steps 3 \
      --selection "$WORK/bench/ops-selection.json" -- \
      "$PY" bench/torch_train.py "${oc[@]}" --method goodvibe --steps 3 --selection "$WORK/bench/ops-selection.json"
    ops_pair full-blocking 1 node dist/bench/train-step.js "${oc[@]}" --method full --steps 3 -- \
      "$PY" bench/torch_train.py "${oc[@]}" --method full --steps 3
    ops_pair pass-blocking 1 node dist/bench/forward-backward.js "${oc[@]}" --passes 3 -- \
      "$PY" bench/torch_reference.py fwdbwd "${oc[@]}" --passes 3
    rm -rf "$odir"
  fi
  # the 0.5B shape, where both sides ran under 4% of the matmul rate (launch-bound or not: the async profile's host
  # times against the blocking one's)
  odir=$WORK/models/qwen2.5-0.5b-random-L$LAYERS_05B
  if run_step ops-model-05b 120 "random bf16 checkpoint, Qwen2.5-0.5b widths, $LAYERS_05B layers" \
    node dist/bench/make-random-model.js "$odir" "$LAYERS_05B" 0.5b "$DEVICE"; then
    oc=(--model "$odir" --device "$DEVICE" --tokens "$TOKENS")
    for b in 1 0; do
      ops_pair "goodvibe-05b-$([ $b = 1 ] && echo blocking || echo async)" $b \
        node dist/bench/train-step.js "${oc[@]}" --method goodvibe --steps 3 --selection "$WORK/bench/ops-selection-05b.json" -- \
        "$PY" bench/torch_train.py "${oc[@]}" --method goodvibe --steps 3 --selection "$WORK/bench/ops-selection-05b.json"
    done
    rm -rf "$odir"
  fi
fi

# ---------------------------------------------------------------- fused: the addon's fused ops on the device
# Off the CPU every per-op switch is off by default (op by op: transformers' eager code). There the fused ops run as
# composites of ATen ops (attention: SDPA from libtorch 2.1; GoodVibe's row update in place, its dU per cluster);
# which of them pay on the device is measured here, not assumed: the fixtures with all of them on (exactness against
# PyTorch), then the GoodVibe step and the identification pass at 7B widths and at the 0.5B shape, one process each,
# rotating all off / each one on alone (the benches' --ab list), so every setting meets the same machine.
FUSED_AB=${FUSED_AB:-attention,clusterRowUpdate,rmsNorm,gatedAct,concatLinear}
if want fused && need build device; then
  run_step fused-fixtures 180 "on-device fixtures with $FUSED_AB on, GOODVIBE_TEST_DEVICE=$DEVICE" \
    env GOODVIBE_TEST_DEVICE=$DEVICE GOODVIBE_FUSED="+${FUSED_AB//,/,+}" \
    node --test --test-concurrency=1 dist/test/models/on-device.test.js
  fsteps=30 fpasses=6
  [ $MODE = rehearse ] && fsteps=5 fpasses=1
  for shape in 7b 0.5b; do
    layers=$LAYERS_7B
    [ $shape = 0.5b ] && layers=$LAYERS_05B
    fdir=$WORK/models/qwen2.5-$shape-random-L$layers
    if run_step "fused-model-$shape" 120 "random bf16 checkpoint, Qwen2.5-$shape widths, $layers layers" \
      node dist/bench/make-random-model.js "$fdir" "$layers" $shape "$DEVICE"; then
      fc=(--model "$fdir" --device "$DEVICE" --tokens "$TOKENS")
      run_step "fused-step-$shape" 120 "GoodVibe step, $shape, $layers layers: all off, then each of $FUSED_AB on alone" \
        node dist/bench/train-step.js "${fc[@]}" --method goodvibe --steps $fsteps --ab "$FUSED_AB" \
        --json "$WORK/bench/ab-step-$shape.json"
      run_step "fused-pass-$shape" 120 "identification pass, $shape, $layers layers: the same settings" \
        node dist/bench/forward-backward.js "${fc[@]}" --passes $fpasses --ab "$FUSED_AB"
      for f in step pass; do grep -E '^(A/B|all off|[a-zA-Z]+ on):' "$WORK/logs/fused-$f-$shape.log" 2>/dev/null | tee -a "$LOG"; done
      rm -rf "$fdir"
    fi
  done
fi

# ---------------------------------------------------------------- demo: the embedded demo on the GPU
if want demo && need build device; then
  run_step demo 200 "goodvibe demo with GOODVIBE_DEVICE=$DEVICE (judge, evaluation, harden, fold, report)" \
    env GOODVIBE_DEVICE="$DEVICE" node dist/src/cli/main.js demo -o "$WORK/demo" --overwrite
fi

# ---------------------------------------------------------------- 8 the CPU fixture suites on this build
if want suites && need build; then
  # test/method/goodvibe-lora.test.ts runs llama.cpp (node-llama-cpp, not carried: 70 MB): left out here
  SUITES=${SUITES:-$(find dist/test/tensor dist/test/models dist/test/method -name '*.test.js' ! -name goodvibe-lora.test.js | sort | tr '\n' ' ')}
  run_step suites 600 "$(echo $SUITES | wc -w) test files of tensor, models, method, $CONCURRENCY at once, 2 libtorch threads each" \
    env GOODVIBE_THREADS=2 node --test --test-concurrency="$CONCURRENCY" $SUITES
  grep -E '^# (tests|pass|fail|skipped)' "$WORK/logs/suites.log" 2>/dev/null | tee -a "$LOG"
fi
pack
say "done in $SECONDS s: $OUT"
cat "$SUMMARY"
