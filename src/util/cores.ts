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
