/**
 * An experiment over many machines: each worker (`experiment run --shard i/n`, or a Slurm array / Kubernetes
 * Indexed Job task) computes a deterministic share of the cells, all of them in one shared output folder.
 *
 * Sharing one folder is safe because every cache entry is keyed by the hash of its inputs and written atomically
 * (a temporary, then a rename), and because whatever a worker computes in place — a cell's run folders, the base
 * model's evaluation, a judge's training — is done under a claim: a file created exclusively and whole (a
 * temporary hard-linked into place) in that entry's folder, kept fresh by a heartbeat. A claimed cell is left to
 * its holder; a shared input another worker is computing is waited for. A claim whose worker died is taken over
 * (io/claim.ts). At worst a cell is computed twice with the same result (atomic writes: the last rename wins), never
 * half-written.
 */
import type { ShardSpec } from "../util/shard.js";

/**
 * The keys of the cells that are this shard's: distinct cell keys in plan order, dealt round-robin (cells with
 * one key are one computation, so they go to one shard). The same plan gives every worker the same deal.
 */
export function cellShare<C extends { key: string }>(cells: readonly C[], shard: ShardSpec): Set<string> {
  const keys = [...new Set(cells.map((c) => c.key))];
  return new Set(keys.filter((_, i) => i % shard.count === shard.index - 1));
}
