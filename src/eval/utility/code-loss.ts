/**
 * Held-out real-code loss: the mean per-token negative log-likelihood of code files the model was not trained on
 * (for the CyberNative organism, the Debian source files its build held out). A utility measure: hardening that
 * damages general code modelling shows up here even when the security pairs' own loss does not move.
 *
 * The file is JSONL, one `{code, lang?, id?}` per row. Each file is tokenized whole (no special tokens) and cut
 * into windows of at most `maxLength` tokens; every token but a window's first is scored.
 *
 * The figure is token-weighted: Σ_i S_i / Σ_i t_i over the documents i (S_i the summed NLL of document i's t_i
 * scored tokens), so a long file weighs more than a short one. The documents are what was drawn, so the unit of its
 * standard error and of its per-item record (eval/utility/items.ts, for pairing a model with its base) is the
 * document, and both are those of that ratio, not of the unweighted mean of per-document losses (a different
 * quantity: files of 10 and 1,000 tokens would count alike). Each document's score is its linearised
 * contribution to the ratio (its influence value),
 *   x_i = R + (S_i − R·t_i) / t̄,   R = ΣS/Σt (the figure's value), t̄ = Σt / n,
 * so that mean(x) = R exactly and sd(x)/√n is the ratio estimator's (delta-method) standard error. Two models that
 * scored the same documents cut the same way (same t_i: the items hash holds each document's scored tokens and
 * the window length) then have per-document differences x^m_i − x^b_i = Δ + (Y_i − Δ·t_i)/t̄ with Y_i = S^m_i −
 * S^b_i and Δ = ΣY/Σt: their mean is the difference of the two figures and sd/√n the delta-method standard error
 * of that difference of ratios, which is what pairedDifference computes from any per-item scores. A per-document
 * mean loss would not do: its mean is not the figure (the per-file means of 2 and 1 over 1 and 3 tokens have mean
 * 1.5, the figure is 1.25).
 * Files before 2026-12-01 gave as stderr the sd of the per-file mean losses / √files: the standard error of the
 * unweighted per-file mean, not of the token-weighted figure they reported; the value is unchanged.
 */
import { InputError, rowWhere } from "../../errors.js";
import { readJsonlSync } from "../../data/jsonl.js";
import type { DecoderModel } from "../../models/decoder.js";
import { answerLosses } from "../preference.js";
import type { SftExample } from "../../data/prompts.js";
import { encodeScores, itemsHash, type ItemScores } from "./items.js";
import { subsample } from "./datasets.js";

/** Tokens a window holds (the scored ones are all but its first): the figure's default, and its cache key's. */
export const CODE_LOSS_MAX_LENGTH = 1024;

export interface CodeRow {
  id: string;
  lang?: string;
  code: string;
}

/**
 * Read `{code, lang?, id?}` rows (bounded like every dataset); a bad row names the file, the line and the field.
 * With `limit`, a seeded subsample of that many documents in file order, the same draw as the benchmarks'
 * (`eval --limit`: datasets.ts subsample); the document is the unit the figure's standard error is over, so a
 * subsample is an honest, wider estimate of the same token-weighted figure. Every row is checked first either way.
 */
export function readCodeRows(file: string, sub: { limit?: number; seed: number } = { seed: 0 }): CodeRow[] {
  const rows: CodeRow[] = [];
  readJsonlSync(file, ({ row, value: o }) => {
    if (typeof o.code !== "string" || o.code.trim() === "")
      throw new InputError(`${rowWhere(file, row, "code")}: missing or not a non-empty string`);
    if (o.lang !== undefined && typeof o.lang !== "string")
      throw new InputError(`${rowWhere(file, row, "lang")}: expected a string`);
    rows.push({
      id: typeof o.id === "string" ? o.id : `row-${row}`,
      ...(typeof o.lang === "string" ? { lang: o.lang } : {}),
      code: o.code,
    });
  });
  if (rows.length === 0) throw new InputError(`${file}: no rows (the file is empty)`);
  return sub.limit === undefined ? rows : subsample(rows, { limit: sub.limit, seed: sub.seed });
}

export interface CodeLossResult {
  /** mean NLL per scored token over every file */
  value: number;
  /** standard error of that token-weighted mean over the files (the ratio estimator's, delta method) */
  stderr: number;
  /** files with at least one scored token */
  n: number;
  tokens: number;
  /**
   * the same figure over each language's files (`lang`, else "unknown"), its standard error computed as the
   * overall's (ratioOverDocuments over that language's files alone)
   */
  perLanguage: Record<string, CodeLossLanguage>;
  /**
   * one float64 per file of n, its linearised contribution to the figure (mean = value; see the file's comment),
   * under a hash of the files as scored (id, lang, code, scored tokens, in order, and the window length)
   */
  perItem: ItemScores;
}

/** One language's share of the figure: its own token-weighted mean and that ratio's standard error over its files. */
export interface CodeLossLanguage {
  value: number;
  stderr: number;
  n: number;
  tokens: number;
}

/**
 * The token-weighted mean ΣS/Σt of documents' summed losses `sums` over their scored tokens `counts` (each > 0),
 * each document's linearised score x_i = R + (S_i − R·t_i)/t̄ (mean R exactly) and the ratio's delta-method
 * standard error sd(x)/√n: the file's comment derives it. The overall figure and each language's use it alike.
 */
export function ratioOverDocuments(
  sums: readonly number[],
  counts: readonly number[],
): { value: number; scores: number[]; stderr: number } {
  const total = sums.reduce((a, x) => a + x, 0);
  const tokens = counts.reduce((a, x) => a + x, 0);
  const value = total / tokens;
  const meanTokens = tokens / counts.length;
  const scores = sums.map((s, i) => value + (s - value * counts[i]!) / meanTokens);
  const sd = Math.sqrt(scores.reduce((a, x) => a + (x - value) ** 2, 0) / Math.max(1, scores.length - 1));
  return { value, scores, stderr: sd / Math.sqrt(scores.length) };
}

/**
 * Each window's mean NLL over its tokens but the first: what scores the figure in place of the built-in engine (a
 * server's echoed log-probabilities, eval/utility/engine.ts).
 */
export type WindowLosses = (windows: readonly number[][]) => Promise<number[]>;

export async function codeLoss(
  model: DecoderModel | WindowLosses,
  tok: { encode(text: string, opts?: { addSpecialTokens?: boolean }): number[] },
  rows: readonly CodeRow[],
  opts: {
    maxLength?: number;
    batchSize?: number;
    signal?: AbortSignal;
    /** progress in windows, on the built-in engine (answerLosses) */
    onProgress?: (done: number, total: number) => void;
  } = {},
): Promise<CodeLossResult> {
  const maxLength = opts.maxLength ?? CODE_LOSS_MAX_LENGTH;
  const windows: SftExample[] = [];
  const owner: number[] = [];
  rows.forEach((r, i) => {
    const ids = tok.encode(r.code, { addSpecialTokens: false });
    for (let s = 0; s + 1 < ids.length; s += maxLength) {
      const w = ids.slice(s, s + maxLength);
      if (w.length < 2) continue;
      windows.push({ inputIds: w, labels: w });
      owner.push(i);
    }
  });
  if (windows.length === 0) throw new InputError("held-out code loss: no file has two tokens to score");
  const means =
    typeof model === "function"
      ? await model(windows.map((w) => w.inputIds))
      : await answerLosses(model, windows, opts.batchSize ?? 4, opts.signal, opts.onProgress);
  if (means.length !== windows.length)
    throw new Error(`held-out code loss: ${means.length} losses for ${windows.length} windows`);
  const sum = new Float64Array(rows.length);
  const count = new Float64Array(rows.length);
  means.forEach((m, w) => {
    const scored = windows[w]!.inputIds.length - 1;
    sum[owner[w]!] += m * scored;
    count[owner[w]!] += scored;
  });
  return codeLossFromSums(rows, sum, count, maxLength);
}

/**
 * The figure from each file's summed NLL and scored tokens (`sum[i]`, `count[i]`; files without a scored token are
 * left out), as the file's comment describes (ratioOverDocuments): value ΣS/Σt, per-file scores
 * x_i = value + (S_i − value·t_i)/t̄, stderr sd(x)/√n; each language's the same over its own files.
 */
export function codeLossFromSums(
  rows: readonly CodeRow[],
  sum: ArrayLike<number>,
  count: ArrayLike<number>,
  maxLength: number,
): CodeLossResult {
  const kept: number[] = [];
  const byLanguage = new Map<string, number[]>();
  rows.forEach((r, i) => {
    if (!(count[i]! > 0)) return;
    kept.push(i);
    const lang = r.lang ?? "unknown";
    const at = byLanguage.get(lang);
    if (at) at.push(i);
    else byLanguage.set(lang, [i]);
  });
  if (kept.length === 0) throw new InputError("held-out code loss: no file has two tokens to score");
  const sumsOf = (at: number[]) => at.map((i) => sum[i]!);
  const countsOf = (at: number[]) => at.map((i) => count[i]!);
  const tokensOf = (at: number[]) => countsOf(at).reduce((a, x) => a + x, 0);
  const all = ratioOverDocuments(sumsOf(kept), countsOf(kept));
  const perLanguage: CodeLossResult["perLanguage"] = {};
  for (const [lang, at] of byLanguage) {
    const l = ratioOverDocuments(sumsOf(at), countsOf(at));
    perLanguage[lang] = { value: l.value, stderr: l.stderr, n: at.length, tokens: tokensOf(at) };
  }
  const items = itemsHash([
    { maxLength },
    ...kept.map((i) => ({
      id: rows[i]!.id,
      lang: rows[i]!.lang ?? null,
      code: rows[i]!.code,
      tokens: count[i]!,
    })),
  ]);
  return {
    value: all.value,
    stderr: all.stderr,
    n: kept.length,
    tokens: tokensOf(kept),
    perLanguage,
    perItem: encodeScores(items, all.scores),
  };
}
