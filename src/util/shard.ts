/**
 * Shares of a job spread over many machines: `--shard i/n`, or the share a scheduler gives a worker — a Slurm job
 * array (SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT, or MIN/MAX[/STEP]) or a Kubernetes Indexed Job
 * (JOB_COMPLETION_INDEX, with the number of shards in GOODVIBE_SHARD_COUNT, the Job's `completions`).
 */
import { InputError } from "../errors.js";

/** The `index`-th (from 1) of `count` shares. */
export interface ShardSpec {
  index: number;
  count: number;
}

/** "i/n" with 1 ≤ i ≤ n. */
export function parseShard(text: string, flag = "--shard"): ShardSpec {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index >= 1) || index > count || count > 1_000_000)
    throw new InputError(
      `${flag} ${text}: expected i/n with 1 ≤ i ≤ n (e.g. 3/8)` +
        // a scheduler's task index counts from 0 (Slurm arrays, Kubernetes indexed jobs): shards count from 1
        (m && index === 0 && count >= 1
          ? `; shards count from 1 (from a task index counted from 0, give index + 1)`
          : ""),
    );
  return { index, count };
}

const int = (env: NodeJS.ProcessEnv, name: string): number | undefined => {
  const v = env[name];
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v.trim())) throw new InputError(`${name}=${v}: not a whole number`);
  return Number(v);
};

/**
 * The share a scheduler gives this worker, or null when none is set. Slurm: index = (TASK_ID − MIN) / STEP + 1 of
 * TASK_COUNT (or (MAX − MIN) / STEP + 1); an array with gaps (--array=1,4,9) cannot be mapped and is refused.
 * Kubernetes: index = JOB_COMPLETION_INDEX + 1 of GOODVIBE_SHARD_COUNT (required with it).
 */
export function shardFromEnvironment(
  env: NodeJS.ProcessEnv = process.env,
): { shard: ShardSpec; from: string } | null {
  const id = int(env, "SLURM_ARRAY_TASK_ID");
  if (id !== undefined) {
    const min = int(env, "SLURM_ARRAY_TASK_MIN") ?? 0;
    const max = int(env, "SLURM_ARRAY_TASK_MAX");
    const step = int(env, "SLURM_ARRAY_TASK_STEP") ?? 1;
    const count =
      int(env, "SLURM_ARRAY_TASK_COUNT") ??
      (max !== undefined && step >= 1 ? Math.floor((max - min) / step) + 1 : undefined);
    if (count === undefined)
      throw new InputError(
        "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is: pass --shard i/n",
      );
    const k = (id - min) / (step || 1);
    if (!Number.isInteger(k) || k < 0 || k >= count)
      throw new InputError(
        `Slurm array task ${id} (min ${min}, step ${step}, ${count} tasks) is not one of a contiguous array; ` +
          "use --array=0-N (or 1-N) or pass --shard i/n",
      );
    return {
      shard: { index: k + 1, count },
      from: `SLURM_ARRAY_TASK_ID=${id} of ${count} (min ${min}${step !== 1 ? `, step ${step}` : ""})`,
    };
  }
  const jobIndex = int(env, "JOB_COMPLETION_INDEX");
  if (jobIndex !== undefined) {
    const count = int(env, "GOODVIBE_SHARD_COUNT");
    if (count === undefined || count < 1)
      throw new InputError(
        "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but GOODVIBE_SHARD_COUNT is " +
          (count === undefined ? "not" : `${count}, not a number of shards`) +
          ": set it to the Job's completions, or pass --shard i/n",
      );
    if (jobIndex >= count)
      throw new InputError(`JOB_COMPLETION_INDEX=${jobIndex} is not below GOODVIBE_SHARD_COUNT=${count}`);
    return {
      shard: { index: jobIndex + 1, count },
      from: `JOB_COMPLETION_INDEX=${jobIndex} of GOODVIBE_SHARD_COUNT=${count}`,
    };
  }
  return null;
}
