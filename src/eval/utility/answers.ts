/**
 * The generated answers of the utility benchmarks that generate (GSM8K, HumanEval), kept one record per answer as
 * they arrive, with the safety answers' machinery (eval/generation-cache.ts on io/append-log.ts: each record
 * fsync'd, a torn last line dropped), before any of them is scored. UtilityCache (cache.ts) keeps only finished
 * benchmarks: without this file an interrupted benchmark (Ctrl-C, a kill, a HumanEval sandbox failure, a server that
 * gives up) lost every answer generated for it, and a rerun asked for all 1,319 GSM8K answers again. A rerun takes
 * the answers from here and asks the model only for the others.
 *
 * An answer's key is a hash of the benchmark, the prompt as given to the model (few-shot blocks included), the
 * generation settings the benchmark passes (token budget, stop sequences) and `identity`: what else answers it (the
 * model's answersFingerprint, io/hash.ts: weights, tokenizer, chat template, generation_config.json; the build;
 * the end-of-answer ids; the repetition penalty applied). The subsample (limit, seed) is not in it: the prompt names
 * the item, so a `--limit 50` run's answers serve the full run.
 */
import { canonicalJson, sha256 } from "../../io/hash.js";
import {
  GenerationCacheWriter,
  addRecord,
  readGenerationCache,
  type CachedAnswer,
} from "../generation-cache.js";
import type { UtilityModel } from "./model.js";

export class UtilityAnswerCache {
  private readonly answers: Map<string, CachedAnswer>;
  // opened at the first answer written: a run that only reads the cache makes no file; shared with withIdentity's,
  // and closed for all of them by one close()
  private readonly out: { writer: GenerationCacheWriter | null; closed?: boolean };

  /** `identity`: what answers the prompts besides the prompt and the benchmark's settings (see the file's comment). */
  constructor(
    readonly file: string,
    readonly identity: unknown,
    shared?: {
      answers: Map<string, CachedAnswer>;
      out: { writer: GenerationCacheWriter | null; closed?: boolean };
    },
  ) {
    this.answers = shared?.answers ?? readGenerationCache(file);
    this.out = shared?.out ?? { writer: null };
  }

  /**
   * The same file's answers under another identity (another engine answers: eval --url's servers), written through
   * the one writer.
   */
  withIdentity(identity: unknown): UtilityAnswerCache {
    return new UtilityAnswerCache(this.file, identity, { answers: this.answers, out: this.out });
  }

  keyOf(benchmark: string, prompt: string, gen: object): string {
    return sha256(canonicalJson({ benchmark, prompt, gen, identity: this.identity })).slice(0, 32);
  }

  get(key: string): string | undefined {
    return this.answers.get(key)?.answer;
  }

  put(key: string, id: string, answer: string): void {
    // a put after close would open the file again and leave it open
    if (this.out.closed) throw new Error(`${this.file}: put after close`);
    if (this.answers.has(key)) return;
    this.out.writer ??= new GenerationCacheWriter(this.file);
    const rec = { key, id, answer };
    this.out.writer.append(rec);
    addRecord(this.answers, rec);
  }

  close(): void {
    this.out.writer?.close();
    this.out.writer = null;
    this.out.closed = true;
  }
}

/**
 * `model.generate` over `prompts` in fixed batches of `batchSize` (the same slices whatever is cached), asking only
 * for the prompts `cache` has no answer to; each answer is kept as it arrives (the model's onAnswer) and, at the
 * latest, when its batch returns, so a failure loses at most the answers of the batch in flight that the model
 * had not told. The answers, in the order of `prompts`, as the model returned them.
 */
export async function generateKept(
  model: UtilityModel,
  prompts: readonly { id: string; prompt: string }[],
  gen: { maxNewTokens: number; stop: string[] },
  batchSize: number,
  cache?: { answers: UtilityAnswerCache; benchmark: string },
  onProgress?: (done: number, total: number) => void,
): Promise<string[]> {
  const out = new Array<string>(prompts.length);
  const keys = cache ? prompts.map((p) => cache.answers.keyOf(cache.benchmark, p.prompt, gen)) : [];
  // progress in answers, the cached ones counted: told before the first answer is asked for (ProgressMeter's clock
  // starts there), after each answer, and at the end
  let done = 0;
  let reported = false;
  const report = () => {
    reported = true;
    onProgress?.(done, prompts.length);
  };
  for (let start = 0; start < prompts.length; start += batchSize) {
    const batch = prompts.slice(start, start + batchSize).map((_, i) => start + i);
    // one look-up per prompt: the cached answer taken, the others asked for
    const missing: number[] = [];
    for (const j of batch) {
      const cached = cache?.answers.get(keys[j]!);
      if (cached === undefined) missing.push(j);
      else out[j] = cached;
    }
    done += batch.length - missing.length;
    if (missing.length === 0) continue;
    if (!reported) report();
    const told = new Set<number>();
    const keep = (k: number, answer: string) => {
      const j = missing[k]!;
      cache?.answers.put(keys[j]!, prompts[j]!.id, answer);
      if (told.has(k)) return;
      told.add(k);
      done++;
      report();
    };
    const outs = await model.generate(
      missing.map((j) => prompts[j]!.prompt),
      { ...gen, onAnswer: keep },
    );
    if (outs.length !== missing.length)
      throw new Error(`the model returned ${outs.length} answers for ${missing.length} prompts`);
    outs.forEach((answer, k) => {
      keep(k, answer);
      out[missing[k]!] = answer;
    });
  }
  if (!reported) report(); // every answer from the cache
  return out;
}
