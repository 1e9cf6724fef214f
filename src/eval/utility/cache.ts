/**
 * Finished utility benchmarks kept across runs: a JSONL file per model (in `--cache`, beside the generation and
 * score caches) with one record per benchmark evaluated, `{key, name, result}`, fsync'd as it is written. The key
 * is a hash of everything that shapes the result: the model's weights and tokenizer files, the benchmark's files
 * (by content), its settings (subsample limit and seed, shots, new tokens) and the build that computed it
 * (tensor/build.ts buildKey: version, compiled code, addon, libtorch, device, bf16 route; not the commit, which a
 * docs-only change moves), so a result is reused only where computing it again would give the same figures.
 * `eval --base` evaluates the base's utility on every run: with one `--cache`, the second model compared with the
 * same base takes the base's benchmarks from here.
 */
import { InputError, rowWhere } from "../../errors.js";
import { AppendLog, readAppendLog } from "../../io/append-log.js";
import { canonicalJson, sha256 } from "../../io/hash.js";
import { perItemProblem, type ItemScores } from "./items.js";

/**
 * A benchmark's headline figure, as a report cell keeps it (report/schema.ts utility), with its per-item scores
 * where the benchmark has them (eval/utility/items.ts), so that a figure taken from the cache pairs with the
 * base's as one evaluated now does. A record written before they were kept has none: it is used as it is, and a
 * comparison with it is the unpaired one (never a pairing on scores it lacks).
 */
export interface UtilityFigure {
  metric: string;
  value: number;
  stderr: number;
  n: number;
  perItem?: ItemScores;
  /** the few-shot benchmarks' (GSM8K, MMLU) shots before each question: 5, or 0 without a few-shot source */
  nShot?: number;
  /**
   * the held-out real-code loss of --code, per language: each its own figure with its standard error
   * (eval/utility/code-loss.ts); absent from the benchmarks and from a figure cached before 2026-12-01
   */
  perLanguage?: Record<string, { value: number; stderr: number; n: number; tokens: number }>;
}

function isLanguageFigure(x: unknown): boolean {
  const l = x as { value?: unknown; stderr?: unknown; n?: unknown; tokens?: unknown } | null;
  return (
    !!l &&
    typeof l.value === "number" &&
    Number.isFinite(l.value) &&
    typeof l.stderr === "number" &&
    Number.isFinite(l.stderr) &&
    l.stderr >= 0 &&
    Number.isSafeInteger(l.n) &&
    (l.n as number) > 0 &&
    typeof l.tokens === "number" &&
    l.tokens > 0
  );
}

function isFigure(x: unknown): x is UtilityFigure {
  const r = x as Partial<UtilityFigure> | null;
  return (
    !!r &&
    typeof r.metric === "string" &&
    typeof r.value === "number" &&
    Number.isFinite(r.value) &&
    typeof r.stderr === "number" &&
    Number.isFinite(r.stderr) &&
    r.stderr >= 0 &&
    Number.isSafeInteger(r.n) &&
    r.n! >= 0 &&
    (r.perItem === undefined ||
      (typeof r.perItem === "object" &&
        r.perItem !== null &&
        typeof r.perItem.items === "string" &&
        perItemProblem(r as UtilityFigure) === undefined)) &&
    (r.perLanguage === undefined ||
      (typeof r.perLanguage === "object" &&
        r.perLanguage !== null &&
        Object.values(r.perLanguage).every(isLanguageFigure)))
  );
}

/** The key of one benchmark's result: a hash of what shapes it (see the file's comment). */
export function utilityKey(parts: {
  name: string;
  model: unknown;
  build: unknown;
  settings: unknown;
}): string {
  return sha256(canonicalJson(parts)).slice(0, 32);
}

export class UtilityCache {
  private readonly done = new Map<string, UtilityFigure>();
  // opened at the first result written: a run that only reads the cache makes no file
  private log: AppendLog | null = null;
  private closed = false;

  constructor(readonly file: string) {
    for (const { row, value } of readAppendLog(file)) {
      const rec = value as { key?: unknown; result?: unknown };
      if (typeof rec.key !== "string" || !isFigure(rec.result))
        throw new InputError(
          `${rowWhere(file, row)}: a record needs a string "key" and a "result" {metric, value, stderr, n, perItem?, perLanguage?} whose per-item scores (if any) give its value; delete the file to evaluate again`,
        );
      this.done.set(rec.key, rec.result);
    }
  }

  get(key: string): UtilityFigure | undefined {
    return this.done.get(key);
  }

  /**
   * Keeps `result` under `key`; one JSON cannot hold (a NaN standard error, as one item gives) is not kept, so that
   * a rerun computes it again rather than reading back something else.
   */
  put(key: string, name: string, result: UtilityFigure): void {
    if (!isFigure(result)) return;
    if (this.closed) throw new Error(`${this.file}: put after close`);
    this.log ??= new AppendLog(this.file);
    this.log.append({ key, name, result });
    this.done.set(key, { ...result });
  }

  close(): void {
    this.log?.close();
    this.log = null;
    this.closed = true;
  }
}
