/**
 * What a model folder's tokenizer.json says about its steps, read as plain JSON, without building the tokenizer
 * (io/tokenizer.ts does that, with the Hugging Face tokenizers library): for the GGUF exporter and for the keys of
 * finished work, which need neither the library nor its start-up.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { isPlainObject } from "../util/keys.js";

/**
 * What keys finished work by how a model folder's tokenizer reads an answer: `{ answerTokens: "in-context" }` for a
 * tokenizer that puts a space before any text it is given (a Prepend normalizer, as Llama 2's / CodeLlama's; a
 * Metaspace or ByteLevel pre-tokenizer adding a prefix space), else nothing. Why: since 6038b4c an answer's
 * fine-tuning targets (and held-out losses) are its tokens as they follow the prompt, and the judge prompt ends
 * with the tokens the two labels share. For such a tokenizer that changed every target (" 1 </s>" alone starts with
 * "▁▁" where after "[/INST]" it is "▁"), so work finished before (harden stages, experiment cells, trained judges)
 * was computed with other targets and must not be found again; for the others the tokens are the same and their
 * keys stay as they were. A tokenizer.json that cannot be read gives nothing (loading the tokenizer says why).
 */
export function answerTokensKey(dir: string): { answerTokens?: "in-context" } {
  const file = path.join(dir, "tokenizer.json");
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    return {};
  }
  // planning asks once per stage and cell: a large tokenizer.json (Gemma 3's, 33 MB) is read once per version
  const id = `${file}\0${stat.size}\0${stat.mtimeMs}\0${stat.ino}`;
  let prepends = prefixSpaceMemo.get(id);
  if (prepends === undefined) {
    try {
      prepends = addsPrefixSpace(JSON.parse(fs.readFileSync(file, "utf8")));
    } catch {
      prepends = false;
    }
    prefixSpaceMemo.set(id, prepends);
  }
  return prepends ? { answerTokens: "in-context" } : {};
}
const prefixSpaceMemo = new Map<string, boolean>();

/**
 * The steps of a tokenizer.json component (its normalizer, pre_tokenizer or decoder) in order, a Sequence (whose
 * steps sit under `normalizers`, `pretokenizers` or `decoders`) expanded; none for null or a non-object.
 */
export function tokenizerSteps(
  component: unknown,
  list: "normalizers" | "pretokenizers" | "decoders",
): Record<string, unknown>[] {
  if (!isPlainObject(component)) return [];
  if (component.type === "Sequence" && Array.isArray(component[list]))
    return (component[list] as unknown[]).flatMap((x) => tokenizerSteps(x, list));
  return [component];
}

function addsPrefixSpace(tok: unknown): boolean {
  if (!isPlainObject(tok)) return false;
  if (tokenizerSteps(tok.normalizer, "normalizers").some((n) => n.type === "Prepend")) return true;
  return tokenizerSteps(tok.pre_tokenizer, "pretokenizers").some(
    (p) =>
      (p.type === "Metaspace" &&
        (p.prepend_scheme === undefined
          ? p.add_prefix_space !== false
          : p.prepend_scheme === "first" || p.prepend_scheme === "always")) ||
      (p.type === "ByteLevel" && p.add_prefix_space === true),
  );
}
