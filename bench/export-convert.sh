#!/usr/bin/env bash
# GGUF export side by side: build A (e.g. main's dist copied aside, with native/ and node_modules reachable) and
# build B (this repository), alternated A, B, A, B ... on the core this shell is pinned to (taskset -c N bash ...).
# Per run: wall and CPU (user + system) seconds and peak RSS (/usr/bin/time -v) of `goodvibe export --outtype T` and
# the sha256 of the file (CPU seconds are what to compare on a core that other work shares);
# then the seconds from SIGINT to exit while the first (largest) tensor is converted (bench/export-convert.ts stop).
#
#   bash bench/export-convert.sh <A-root> <model> <stop-model> <scratch> [reps=3] [outtypes="f16 bf16 q8_0"]
set -euo pipefail
A=$1 MODEL=$2 STOP_MODEL=$3 S=$4 REPS=${5:-3} OUTTYPES=${6:-"f16 bf16 q8_0"}
B=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$S"
echo "# rep outtype side wall_s cpu_s peak_rss_MiB sha256[0:16]"
for rep in $(seq "$REPS"); do
  for t in $OUTTYPES; do
    for side in A B; do
      root=$A; [ "$side" = B ] && root=$B
      rm -f "$S/out.gguf"
      /usr/bin/time -v -o "$S/time.txt" node "$root/dist/src/cli/main.js" export -m "$MODEL" -o "$S/out.gguf" \
        --outtype "$t" >/dev/null 2>"$S/stderr.txt"
      wall=$(awk -F': ' '/Elapsed/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$S/time.txt")
      cpu=$(awk -F': ' '/(User|System) time/ {s += $2} END {printf "%.2f", s}' "$S/time.txt")
      rss=$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2 / 1024}' "$S/time.txt")
      echo "$rep $t $side $wall $cpu $rss $(sha256sum "$S/out.gguf" | cut -c1-16)"
    done
  done
done
rm -f "$S/out.gguf"
echo "# rep side stop (SIGINT 300 ms after the header is written, during the first tensor's conversion)"
for rep in $(seq "$REPS"); do
  for side in A B; do
    root=$A; [ "$side" = B ] && root=$B
    echo "$rep $side $(node "$root/dist/bench/export-convert.js" stop "$STOP_MODEL" "$S/stop" q8_0 300)"
  done
done
