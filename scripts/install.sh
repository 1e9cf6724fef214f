#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks (libtorch + OpenBLAS + bubblewrap from apt, npm packages), then builds
# the libtorch addon and the TypeScript. Safe to rerun: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
dpkg -s libtorch-dev >/dev/null 2>&1 || need_apt+=(libtorch-dev)
# without it apt pulls the slow reference BLAS
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need_apt+=(libopenblas0-pthread)
if [ -n "${LIBTORCH:-}" ]; then need_apt=(); fi
# the sandbox for generated code (HumanEval): src/eval/sandbox.ts refuses to run it without
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing ${need_apt[*]} (apt)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm packages"
  # the addon is built just below, once, whether or not npm ran
  GOODVIBE_SKIP_NATIVE=1 NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --no-audit --no-fund
fi

# builds the libtorch addon unless one for the same sources, libtorch and Node is there (~200 s of compiling,
# one compiler per core)
node scripts/build-native.mjs
# GOODVIBE_SKIP_TS=1: the caller compiles next anyway (CI's npm test does)
if [ -z "${GOODVIBE_SKIP_TS:-}" ]; then
  echo "compiling TypeScript"
  npm run build:ts --silent
fi
