/**
 * What a model folder's tokenizer.json says about its steps, read as plain JSON, without building the tokenizer
 * (io/tokenizer.ts does that, with the Hugging Face tokenizers library): for the GGUF exporter and for the keys of
 * finished work, which need neither the library nor its start-up (the keys render the chat template, with
 * @huggingface/jinja: 6 ms to import).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "@huggingface/jinja";
import { isPlainObject } from "../util/keys.js";
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
 *   its template's <|eot_id|> 128009). Since c7c72aa that token ends generation and fine-tuning answers (io/
 *   tokenizer.ts loadTokenizer appends it to eosTokenIds), where before the targets ended with an appended eos
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
  const id = files
    .map((f) => {
      try {
        const st = fs.statSync(f);
        return `${f}\0${st.size}\0${st.mtimeMs}\0${st.ino}`;
      } catch {
        return `${f}\0-`;
      }
    })
    .join("\n");
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
  return {
    prependsSpace,
    endOfTurnAdded: endOfTurnAdded(dir, tok, config, template),
    templateUsesDate,
    templateReadsDateString,
  };
}

/**
 * The special token the chat template closes an assistant turn with when no eos names it (what loadTokenizer
 * appends to eosTokenIds), else null; read from the files without the tokenizers library: after the probe answer,
 * whitespace, then the text of a special token of tokenizer.json's added_tokens.
 */
function endOfTurnAdded(
  dir: string,
  tok: Record<string, unknown>,
  config: Record<string, unknown>,
  template: string | null,
): number | null {
  if (template === null) return null;
  let text: string;
  try {
    const day = templateDay(DEFAULT_TEMPLATE_DATE);
    text = renderTemplate(
      new Template(template),
      { ...templateSpecialTokens(config), ...END_OF_TURN_PROBE_CONTEXT },
      strftimeNowOn(day),
    );
  } catch {
    return null;
  }
  const at = text.lastIndexOf(END_OF_TURN_PROBE);
  if (at < 0) return null;
  const rest = text.slice(at + END_OF_TURN_PROBE.length).trimStart();
  const added = (Array.isArray(tok.added_tokens) ? tok.added_tokens : []).filter(
    (a): a is { id: number; content: string; special: boolean } =>
      isPlainObject(a) && typeof a.id === "number" && typeof a.content === "string" && a.content !== "",
  );
  let eot: { id: number; content: string; special: boolean } | null = null;
  for (const a of added)
    if (rest.startsWith(a.content) && (eot === null || a.content.length > eot.content.length)) eot = a;
  if (eot === null || !eot.special) return null;
  // the ids the config files name as eos, as loadTokenizer reads them (ids the vocabulary lacks left out)
  const vocab = isPlainObject(tok.model) && isPlainObject(tok.model.vocab) ? tok.model.vocab : {};
  const idOf = (content: string): number | null => {
    const a = added.find((x) => x.content === content);
    if (a) return a.id;
    const v = Object.prototype.hasOwnProperty.call(vocab, content) ? vocab[content] : undefined;
    return typeof v === "number" ? v : null;
  };
  const known = new Set<number>(added.map((a) => a.id));
  for (const v of Object.values(vocab)) if (typeof v === "number") known.add(v);
  const eos = new Set<number>();
  const name = tokenContent(config.eos_token);
  const named = name === null ? null : idOf(name);
  if (named !== null) eos.add(named);
  for (const f of ["generation_config.json", "config.json"]) {
    const v = readJsonObject(path.join(dir, f))?.eos_token_id;
    for (const x of Array.isArray(v) ? v : [v]) if (typeof x === "number" && known.has(x)) eos.add(x);
  }
  return eos.has(eot.id) ? null : eot.id;
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
