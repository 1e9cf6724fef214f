/**
 * CPU cores this process may really use: os.availableParallelism() (CPU affinity) capped by a cgroup CPU quota
 * (containers and CI runners often give a fraction of the host's cores). Engines that start one thread per
 * core they think they have (node-llama-cpp starts at least 4) run many times slower when oversubscribed.
 */
import * as fs from "node:fs";
import * as os from "node:os";

/** The cgroup CPU quota in cores (v2 cpu.max, else v1 cfs quota/period), or null when unlimited or unknown. */
export function cgroupCpuQuota(root = "/sys/fs/cgroup"): number | null {
  const read = (f: string): string | null => {
    try {
      return fs.readFileSync(f, "utf8").trim();
    } catch {
      return null;
    }
  };
  const v2 = read(`${root}/cpu.max`);
  if (v2 !== null) {
    const [quota, period] = v2.split(/\s+/);
    if (quota === "max" || !quota || !period) return null;
    const q = Number(quota) / Number(period);
    return Number.isFinite(q) && q > 0 ? q : null;
  }
  const quota = Number(read(`${root}/cpu/cpu.cfs_quota_us`) ?? read(`${root}/cpu,cpuacct/cpu.cfs_quota_us`));
  const period = Number(
    read(`${root}/cpu/cpu.cfs_period_us`) ?? read(`${root}/cpu,cpuacct/cpu.cfs_period_us`),
  );
  if (!(quota > 0) || !(period > 0)) return null;
  return quota / period;
}

/** Whole cores to compute with: GOODVIBE_THREADS when set, else affinity capped by the cgroup quota (at least 1). */
export function usableCores(): number {
  const env = Number(process.env.GOODVIBE_THREADS ?? "");
  if (Number.isInteger(env) && env > 0) return env;
  const quota = cgroupCpuQuota();
  const affinity = os.availableParallelism();
  return Math.max(1, quota === null ? affinity : Math.min(affinity, Math.floor(quota)));
}

/**
 * Runnable tasks on this machine now besides the caller: /proc/stat's procs_running sampled `samples` times
 * `gapMs` apart, averaged, less the caller itself. null where /proc/stat is not there (not Linux).
 */
export function otherRunnable(samples = 5, gapMs = 10, stat = "/proc/stat"): number | null {
  const wait = new Int32Array(new SharedArrayBuffer(4));
  let sum = 0;
  for (let i = 0; i < samples; i++) {
    let text: string;
    try {
      text = fs.readFileSync(stat, "utf8");
    } catch {
      return null;
    }
    const m = /^procs_running\s+(\d+)/m.exec(text);
    if (!m) return null;
    sum += Number(m[1]);
    if (i + 1 < samples) Atomics.wait(wait, 0, 0, gapMs);
  }
  return Math.max(0, sum / samples - 1);
}

/**
 * How libtorch's OpenMP threads wait for work between parallel regions, as environment variables to set before
 * libtorch loads (GNU OpenMP reads them once). libgomp's default spins about 300,000 times first: best on an idle
 * machine, but when another process holds a core each region waits on a thread that is not scheduled — the
 * identification pass on 2 cores went from 0.76 s to 4.9–5.9 s with one competing process (BENCHMARKS §5). So:
 * when other work is runnable as we start, threads sleep at once (OMP_WAIT_POLICY=PASSIVE: 1.36 s under that
 * load, 0.95 s idle); otherwise they spin briefly (GOMP_SPINCOUNT=30000: 0.78 s idle, 2.7 s if a competitor
 * arrives later). Whatever the user set for either variable is left alone.
 */
export function openmpWaitEnv(
  env: Record<string, string | undefined>,
  others: number | null,
): Record<string, string> {
  if (env.OMP_WAIT_POLICY !== undefined || env.GOMP_SPINCOUNT !== undefined) return {};
  return others !== null && others >= 0.5 ? { OMP_WAIT_POLICY: "PASSIVE" } : { GOMP_SPINCOUNT: "30000" };
}

/**
 * How OpenBLAS's threads (libtorch's float32 products on Debian) wait after a product, as an environment variable
 * to set before libtorch loads. OpenBLAS's default spins in sched_yield for 2^28 cycles (~0.1 s) after every
 * product, taking the core from oneDNN's OpenMP threads between products: the GoodVibe step at 24 layers on 2
 * cores took 1.15–1.30 s with it and 1.00–1.12 s with 2^4 cycles, the float32 step 0.59–0.86 against 0.52–0.54 s
 * (BENCHMARKS "OpenBLAS's threads"). A user's own OPENBLAS_THREAD_TIMEOUT or GOTO_THREAD_TIMEOUT is left alone.
 */
export function blasWaitEnv(env: Record<string, string | undefined>): Record<string, string> {
  if (env.OPENBLAS_THREAD_TIMEOUT !== undefined || env.GOTO_THREAD_TIMEOUT !== undefined) return {};
  return { OPENBLAS_THREAD_TIMEOUT: "4" };
}
