/**
 * Held-out real-code loss: the mean per-token negative log-likelihood of code files the model was not trained on
 * (for the CyberNative organism, the Debian source files its build held out). A utility measure: hardening that
 * damages general code modelling shows up here even when the security pairs' own loss does not move.
 *
 * The file is JSONL, one `{code, lang?, id?}` per row. Each file is tokenized whole (no special tokens) and cut
 * into windows of at most `maxLength` tokens; every token but a window's first is scored.
 */
import { InputError } from "../../errors.js";
import { readJsonlSync } from "../../data/jsonl.js";
import type { DecoderModel } from "../../models/decoder.js";
import { answerLosses } from "../preference.js";
import type { SftExample } from "../../data/prompts.js";

export interface CodeRow {
  id: string;
  lang?: string;
  code: string;
}

/** Read `{code, lang?, id?}` rows (bounded like every dataset); a bad row names the file, the line and the field. */
export function readCodeRows(file: string): CodeRow[] {
  const rows: CodeRow[] = [];
  readJsonlSync(file, ({ row, value: o }) => {
    if (typeof o.code !== "string" || o.code.trim() === "")
      throw new InputError(`${file} row ${row} field "code": missing or not a non-empty string`);
    if (o.lang !== undefined && typeof o.lang !== "string")
      throw new InputError(`${file} row ${row} field "lang": expected a string`);
    rows.push({
      id: typeof o.id === "string" ? o.id : `row-${row}`,
      ...(typeof o.lang === "string" ? { lang: o.lang } : {}),
      code: o.code,
    });
  });
  if (rows.length === 0) throw new InputError(`${file}: no rows (the file is empty)`);
  return rows;
}

export interface CodeLossResult {
  /** mean NLL per scored token over every file */
  value: number;
  /** standard error of the per-file means */
  stderr: number;
  /** files */
  n: number;
  tokens: number;
  perLanguage: Record<string, { value: number; tokens: number; n: number }>;
}

export async function codeLoss(
  model: DecoderModel,
  tok: { encode(text: string, opts?: { addSpecialTokens?: boolean }): number[] },
  rows: readonly CodeRow[],
  opts: { maxLength?: number; batchSize?: number; signal?: AbortSignal } = {},
): Promise<CodeLossResult> {
  const maxLength = opts.maxLength ?? 1024;
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
  const means = await answerLosses(model, windows, opts.batchSize ?? 4, opts.signal);
  const sum = new Float64Array(rows.length);
  const count = new Float64Array(rows.length);
  means.forEach((m, w) => {
    const scored = windows[w]!.inputIds.length - 1;
    sum[owner[w]!] += m * scored;
    count[owner[w]!] += scored;
  });
  const perFile: number[] = [];
  const perLanguage: CodeLossResult["perLanguage"] = {};
  let total = 0;
  let tokens = 0;
  rows.forEach((r, i) => {
    if (count[i] === 0) return;
    perFile.push(sum[i]! / count[i]!);
    total += sum[i]!;
    tokens += count[i]!;
    const l = (perLanguage[r.lang ?? "unknown"] ??= { value: 0, tokens: 0, n: 0 });
    l.value += sum[i]!;
    l.tokens += count[i]!;
    l.n += 1;
  });
  for (const l of Object.values(perLanguage)) l.value /= l.tokens;
  const mean = perFile.reduce((a, b) => a + b, 0) / perFile.length;
  const sd = Math.sqrt(perFile.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, perFile.length - 1));
  return {
    value: total / tokens,
    stderr: sd / Math.sqrt(perFile.length),
    n: perFile.length,
    tokens,
    perLanguage,
  };
}
