#!/usr/bin/env bash
# GoodVibe on a Slurm cluster: sharded identification, then the experiment's cells spread over a job array,
# then one report. Every task shares one folder on a shared file system (NFS, Lustre, ...).
#
#   mkdir -p logs                                             # Slurm does not create the --output folder
#   sbatch --array=0-7 examples/slurm-array.sh identify      # 8 identification shards
#   sbatch --dependency=afterok:<that job id> examples/slurm-array.sh merge
#   sbatch --array=0-15 examples/slurm-array.sh cells         # 16 workers over the experiment's cells
#   sbatch --dependency=afterany:<that job id> examples/slurm-array.sh report
#
# Each task finds its share itself: goodvibe reads SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (or MIN/MAX/STEP)
# for `experiment run`; `identify` takes the same numbers as --shard i/n. Rerunning a task (requeue, preemption, the
# whole array resubmitted) resumes where it stopped or finds its step done; a task that died leaves a claim that is
# taken over (same host at once, others after GOODVIBE_CLAIM_STALE_SECONDS without a heartbeat, default 600), and a
# cells worker waits for a cell of its own share that another worker holds. A step whose output exists is taken as
# done: start a new experiment in a new $SHARED (or remove the old outputs).
#SBATCH --job-name=goodvibe
#SBATCH --cpus-per-task=16
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

SHARED=${SHARED:-/shared/goodvibe}           # on the shared file system
MODEL=${MODEL:-$SHARED/models/Qwen2.5-Coder-0.5B-Instruct}
DATA=${DATA:-$SHARED/data/cybernative/train.jsonl}
# a copy of the project's experiments/paper.yaml with your paths; its relative paths (models/..., data/...) are read
# from the folder the command runs in, $SHARED below
EXPERIMENT=${EXPERIMENT:-$SHARED/experiments/paper.yaml}
OUT=${OUT:-$SHARED/runs/paper}
# goodvibe on PATH (npm i -g goodvibe); from a checkout: GOODVIBE="node /path/to/goodvibe/dist/src/cli/main.js"
# (not `npx goodvibe` there: npx would link the checkout and rebuild its addon in every fresh task)
GOODVIBE=${GOODVIBE:-goodvibe}
export GOODVIBE_THREADS=${SLURM_CPUS_PER_TASK:-16}
cd "$SHARED"

case "${1:?usage: slurm-array.sh identify|merge|cells|report}" in
  identify)
    # shard i/n from the array: the tasks in order (--array=0-7, or 0-14:2) → shards 1..n
    n=${SLURM_ARRAY_TASK_COUNT:?run as an array job: sbatch --array=0-N}
    i=$(((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0}) / ${SLURM_ARRAY_TASK_STEP:-1} + 1))
    # a shard folder is published whole, so one that exists is finished
    [ -e "$SHARED/identify/shard-$i" ] && { echo "shard $i/$n is done"; exit 0; }
    $GOODVIBE identify -m "$MODEL" -d "$DATA" --languages c++ \
      --shard "$i/$n" -o "$SHARED/identify/shard-$i" --run-dir "$SHARED/identify/run-$i"
    ;;
  merge)
    # every shard, in any order: the neuron map one machine would have written (bit for bit but its wallSeconds)
    # the shards, not a shard-3.old-<time> that --overwrite moved aside
    shards=()
    for d in "$SHARED"/identify/shard-*; do [[ $d =~ /shard-[0-9]+$ ]] && shards+=("$d"); done
    [ -e "$SHARED/identify/neurons.json" ] ||
      $GOODVIBE identify merge -o "$SHARED/identify/neurons.json" "${shards[@]}"
    [ -e "$SHARED/identify/clusters.json" ] ||
      $GOODVIBE cluster -n "$SHARED/identify/neurons.json" -o "$SHARED/identify/clusters.json"
    # resumes from its run folder when requeued; a finished one does nothing
    $GOODVIBE train -m "$MODEL" -d "$DATA" --languages c++ --clusters "$SHARED/identify/clusters.json" \
      -o "$SHARED/hardened"
    ;;
  cells)
    # the shard comes from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT; all tasks share $OUT
    $GOODVIBE experiment run "$EXPERIMENT" -o "$OUT"
    ;;
  report)
    # every cell is cached by now: this writes results.json and the report (seconds)
    $GOODVIBE experiment run "$EXPERIMENT" -o "$OUT"
    ;;
  *)
    echo "unknown step $1" >&2
    exit 2
    ;;
esac
