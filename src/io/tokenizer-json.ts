/**
 * What a model folder's tokenizer.json says about its steps and the ids that end generation, read as plain JSON,
 * without building the tokenizer (io/tokenizer.ts does that, with the Hugging Face tokenizers library): for the GGUF
 * exporter and for the keys of finished work, which need neither the library nor its start-up (the keys render the
 * chat template, with @huggingface/jinja: 6 ms to import); and for loadTokenizer, whose eos ids are the ones the
 * keys read (endTokens).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "@huggingface/jinja";
import { isPlainObject } from "../util/keys.js";
import { filesVersion } from "../util/file-identity.js";
import {
  DEFAULT_TEMPLATE_DATE,
  END_OF_TURN_PROBE,
  END_OF_TURN_PROBE_CONTEXT,
  chatTemplateText,
  strftimeNowOn,
  templateDateSetting,
  templateDay,
  templateDayIso,
  templateSpecialTokens,
  tokenContent,
} from "./chat-template.js";
import { renderTemplate } from "./render-template.js";

/** The fields keys of finished work hold about a model folder's tokenizer and chat template (answerTokensKey). */
export interface AnswerTokensKey {
  answerTokens?: "in-context";
  answerEnd?: number;
  templateDate?: string;
}

/**
 * What keys finished work by how a model folder's tokenizer and chat template make prompts and answers; each field
 * only where it holds, so that no other folder's keys move:
 *
 * - `answerTokens: "in-context"` for a tokenizer that puts a space before any text it is given (a Prepend
 *   normalizer, as Llama 2's / CodeLlama's; a Metaspace or ByteLevel pre-tokenizer adding a prefix space). Why:
 *   since 6038b4c an answer's fine-tuning targets (and held-out losses) are its tokens as they follow the prompt,
 *   and the judge prompt ends with the tokens the two labels share. For such a tokenizer that changed every target
 *   (" 1 </s>" alone starts with "▁▁" where after "[/INST]" it is "▁"); for the others the tokens are the same.
 * - `answerEnd: <id>` where the chat template closes an assistant turn with a special token that neither
 *   eos_token nor an eos_token_id names (Meta-Llama-3-8B-Instruct as first released: only <|end_of_text|> 128001,
 *   its template's <|eot_id|> 128009). Since c7c72aa that token ends generation and fine-tuning answers
 *   (endTokens, which loadTokenizer's eosTokenIds are), where before the targets ended with an appended eos
 *   the template never writes and generation ran past the turn.
 * - `templateDate: "YYYY-MM-DD"`, the day templates render on (io/chat-template.ts; GOODVIBE_TEMPLATE_DATE, "today"
 *   read from the clock when the key is made), for a template that calls strftime_now (Llama 3.2's "Today Date:
 *   ..."): before, its prompts carried the day each run happened on; and for one that reads date_string without
 *   it (Llama 3.1) when the day is not the default, the only day such a template is given (io/tokenizer.ts).
 *
 * Work finished before (harden stages, experiment cells, trained judges) was computed with other prompts or
 * targets and must not be found again. A file that cannot be read gives nothing (loading the tokenizer says why).
 */
export function answerTokensKey(dir: string, templateDate: string = templateDateSetting()): AnswerTokensKey {
  const files = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "config.json",
  ].map((f) => path.join(dir, f));
  // planning asks once per stage and cell: a large tokenizer.json (Gemma 3's, 33 MB) is read once per version
  const id = filesVersion(files);
  let facts = factsMemo.get(id);
  if (facts === undefined) {
    facts = tokenizerFacts(dir);
    factsMemo.set(id, facts);
  }
  // a malformed setting is refused here too, whatever the template (loadTokenizer refuses it for every folder)
  const day = templateDayIso(templateDate);
  return {
    ...(facts.prependsSpace ? { answerTokens: "in-context" as const } : {}),
    ...(facts.endOfTurnAdded !== null ? { answerEnd: facts.endOfTurnAdded } : {}),
    // a template that reads date_string without calling strftime_now (Llama 3.1) is given the day only when it is
    // not the default (io/tokenizer.ts), so only then is it keyed: its keys made before hold
    ...(facts.templateUsesDate || (facts.templateReadsDateString && day !== DEFAULT_TEMPLATE_DATE)
      ? { templateDate: day }
      : {}),
  };
}
/**
 * Whether the template day reaches the prompts a model's answers are made from: where a server renders them (its
 * template is not known here; it is sent the day) it is taken to; else where answerTokensKey names the day (the
 * folder's template writes it). The one decision behind keying answers by the day (recipes/evaluate.ts) and eval's
 * summary line on it (cli/commands/eval-run.ts).
 */
export function templateDayReaches(dir: string, opts: { server?: boolean } = {}): boolean {
  return opts.server === true || answerTokensKey(dir).templateDate !== undefined;
}
/**
 * answerTokensKey less `answerEnd`: for work that reads prompts and the judge's labels but no answer's end
 * (identification's gradients, a judge given as a folder), which an end of turn added to eos does not change.
 */
export function promptsKey(dir: string, templateDate?: string): Omit<AnswerTokensKey, "answerEnd"> {
  const { answerEnd: _end, ...rest } = answerTokensKey(dir, templateDate);
  return rest;
}

interface TokenizerFacts {
  prependsSpace: boolean;
  endOfTurnAdded: number | null;
  templateUsesDate: boolean;
  /** the template names the variable date_string (Llama 3.1 reads it, never calling strftime_now) */
  templateReadsDateString: boolean;
}
const factsMemo = new Map<string, TokenizerFacts>();

function readJsonObject(file: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(fs.readFileSync(file, "utf8"));
    return isPlainObject(v) ? v : null;
  } catch {
    return null;
  }
}

function tokenizerFacts(dir: string): TokenizerFacts {
  const none: TokenizerFacts = {
    prependsSpace: false,
    endOfTurnAdded: null,
    templateUsesDate: false,
    templateReadsDateString: false,
  };
  const tok = readJsonObject(path.join(dir, "tokenizer.json"));
  if (!tok) return none;
  const prependsSpace = addsPrefixSpace(tok);
  const config = readJsonObject(path.join(dir, "tokenizer_config.json")) ?? {};
  // special_tokens_map.json fills what tokenizer_config.json leaves out, as in loadTokenizer
  for (const [k, v] of Object.entries(readJsonObject(path.join(dir, "special_tokens_map.json")) ?? {}))
    if (config[k] === undefined || config[k] === null) config[k] = v;
  const template = chatTemplateText(path.join(dir, "chat_template.jinja"), config);
  const templateUsesDate = template !== null && template.includes("strftime_now");
  const templateReadsDateString = template !== null && /\bdate_string\b/.test(template);
  let parsed: Template | null = null;
  try {
    parsed = template === null ? null : new Template(template);
  } catch {
    // does not parse: loadTokenizer says so where the template is used
  }
  const { endOfTurnAdded } = endTokens({
    tokenizer: tok,
    config,
    eosTokenIdFields: ["generation_config.json", "config.json"].map(
      (f) => readJsonObject(path.join(dir, f))?.eos_token_id,
    ),
    template: parsed,
    // the default day, whatever the setting: the end of turn of every template known is the same on any day, and
    // the keys made so far found it on this one
    strftimeNow: strftimeNowOn(templateDay(DEFAULT_TEMPLATE_DATE)),
  });
  return { prependsSpace, endOfTurnAdded, templateUsesDate, templateReadsDateString };
}

/** What endTokens reads: a model folder's files, parsed (loadTokenizer's, after it checked them; or the keys'). */
export interface EndTokenFiles {
  /** tokenizer.json */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json, special_tokens_map.json filling what it leaves out */
  config: Record<string, unknown>;
  /** generation_config.json's then config.json's eos_token_id (an id, a list of ids, or absent) */
  eosTokenIdFields: readonly unknown[];
  /** the chat template, parsed; null where there is none (or it does not parse) */
  template: Template | null;
  /** the template's strftime_now (chat-template.ts strftimeNowOn of the day it renders on) */
  strftimeNow: (format: unknown) => string;
}

/** The ids that end generation for a tokenizer folder (endTokens). */
export interface EndTokens {
  /**
   * eos_token's id, then generation_config.json's and config.json's eos_token_id (the ids the vocabulary has, each
   * once, in that order), then endOfTurnAdded where it is not null.
   */
  eosTokenIds: number[];
  /** the special token the chat template closes an assistant turn with where none of the ids before names it */
  endOfTurnAdded: number | null;
}

/**
 * Every id that ends generation for a tokenizer folder, read from its parsed files without the tokenizers library:
 * the one home of loadTokenizer's eosTokenIds (io/tokenizer.ts) and of the keys' answerEnd (answerTokensKey), so
 * that the keys change whenever what ends an answer does.
 *
 * The end of turn (Llama 3's "<|eot_id|>", ChatML's "<|im_end|>", Gemma's "<end_of_turn>", Llama 2's "</s>") is
 * found by rendering a [user, assistant] conversation and reading what follows the answer: whitespace, then the
 * token of tokenizer.json's added_tokens the tokenizer reads there, which must be a special one. Why it ends generation: the model
 * answers inside that turn and was trained to close it with that token, whatever the config files name;
 * Meta-Llama-3-8B-Instruct's first release named only "<|end_of_text|>" (128001) in tokenizer_config.json,
 * config.json and generation_config.json, so generation ran on past "<|eot_id|>" (128009) and every fine-tuning
 * answer got an "<|end_of_text|>" the template never writes. Meta's own code and llama.cpp (which reads
 * "<|eot_id|>" as an end-of-generation token by its text) stop at both. A template that refuses this conversation
 * (a required system turn, say) finds none: rendering it is loadTokenizer's caller's to report.
 *
 * Tokens are looked up as @huggingface/tokenizers does (test/io/tokenizer-end-tokens checks every real tokenizer
 * folder against it): the model's vocabulary (an object of text to id; Unigram's list of [text, score], the id its
 * place), an added token's id winning for its text; an id is known where either has it.
 */
export function endTokens(files: EndTokenFiles): EndTokens {
  const { tokenizer: tok, config } = files;
  const added = (Array.isArray(tok.added_tokens) ? tok.added_tokens : []).filter(
    (a): a is AddedTokenJson =>
      isPlainObject(a) && typeof a.id === "number" && typeof a.content === "string" && a.content !== "",
  );
  const vocab = vocabularyOf(tok, added);
  const eosTokenIds: number[] = [];
  const name = tokenContent(config.eos_token);
  for (const id of [
    name === null ? null : vocab.idOf(name),
    ...files.eosTokenIdFields.flatMap((v) =>
      (Array.isArray(v) ? v : [v]).filter(
        (x): x is number => Number.isSafeInteger(x) && x >= 0 && vocab.has(x),
      ),
    ),
  ])
    if (id !== null && !eosTokenIds.includes(id)) eosTokenIds.push(id);
  const eot =
    files.template === null
      ? null
      : endOfTurn(files.template, config, added, tok.normalizer, files.strftimeNow);
  if (eot === null || eosTokenIds.includes(eot)) return { eosTokenIds, endOfTurnAdded: null };
  return { eosTokenIds: [...eosTokenIds, eot], endOfTurnAdded: eot };
}

/** An entry of tokenizer.json's added_tokens (special, normalized: booleans as written; absent, false and !special). */
interface AddedTokenJson {
  id: number;
  content: string;
  special?: unknown;
  normalized?: unknown;
}

/** The special added token after the probe answer (whitespace before it allowed), else null: see endTokens. */
function endOfTurn(
  template: Template,
  config: Record<string, unknown>,
  added: readonly AddedTokenJson[],
  normalizer: unknown,
  strftimeNow: (format: unknown) => string,
): number | null {
  let text: string;
  try {
    text = renderTemplate(
      template,
      { ...templateSpecialTokens(config), ...END_OF_TURN_PROBE_CONTEXT },
      strftimeNow,
    );
  } catch {
    return null;
  }
  const at = text.lastIndexOf(END_OF_TURN_PROBE);
  if (at < 0) return null;
  const rest = text.slice(at + END_OF_TURN_PROBE.length).trimStart();
  // the library splits the text at the tokens it matches as written (normalized: false, or no normalizer) before
  // it looks for the others, each time the longest: a longer token of the other kind does not hide one
  const normalizes = isPlainObject(normalizer);
  const asWritten = (a: AddedTokenJson): boolean =>
    !normalizes || (typeof a.normalized === "boolean" ? !a.normalized : a.special === true);
  const longest = (xs: readonly AddedTokenJson[]): AddedTokenJson | null => {
    let best: AddedTokenJson | null = null;
    for (const a of xs)
      if (rest.startsWith(a.content) && (best === null || a.content.length > best.content.length)) best = a;
    return best;
  };
  const eot = longest(added.filter(asWritten)) ?? longest(added.filter((a) => !asWritten(a)));
  return eot !== null && eot.special === true ? eot.id : null;
}

/** Text-to-id and known ids of tokenizer.json, as @huggingface/tokenizers builds them (see endTokens). */
function vocabularyOf(
  tok: Record<string, unknown>,
  added: readonly AddedTokenJson[],
): { idOf(text: string): number | null; has(id: number): boolean } {
  const v = isPlainObject(tok.model) ? tok.model.vocab : undefined;
  const addedIds = new Set(added.map((a) => a.id));
  // Unigram: [text, score] pairs, the id a pair's place
  if (Array.isArray(v))
    return {
      idOf: (text) => {
        for (let i = added.length - 1; i >= 0; i--) if (added[i]!.content === text) return added[i]!.id;
        for (let i = v.length - 1; i >= 0; i--) if (Array.isArray(v[i]) && v[i][0] === text) return i;
        return null;
      },
      has: (id) => addedIds.has(id) || (id < v.length && v[id] !== undefined),
    };
  const vocab = isPlainObject(v) ? v : {};
  let ids: Set<number> | null = null;
  return {
    idOf: (text) => {
      for (let i = added.length - 1; i >= 0; i--) if (added[i]!.content === text) return added[i]!.id;
      const id = Object.prototype.hasOwnProperty.call(vocab, text) ? vocab[text] : undefined;
      return typeof id === "number" ? id : null;
    },
    has: (id) => {
      if (addedIds.has(id)) return true;
      // built once, where an id is not an added token's (config.json's ids mostly are)
      ids ??= new Set(Object.values(vocab).filter((x): x is number => typeof x === "number"));
      return ids.has(id);
    },
  };
}

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
