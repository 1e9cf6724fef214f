/**
 * A Hugging Face tokenizer folder: tokenizer.json through @huggingface/tokenizers, the chat template through
 * @huggingface/jinja, special token ids from tokenizer_config.json plus the generation hints in
 * generation_config.json / config.json.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "@huggingface/jinja";
import {
  DEFAULT_TEMPLATE_DATE,
  SPECIAL_TOKEN_KEYS,
  TEMPLATE_DATE_STRING_FORMAT,
  strftimeNowOn,
  strftimeOn,
  templateDateSetting,
  templateDay,
  templateSpecialTokens,
  tokenContent,
  jinjaSource,
} from "./chat-template.js";
import { renderTemplate } from "./render-template.js";
import { endTokens } from "./tokenizer-json.js";
import { Tokenizer } from "@huggingface/tokenizers";
import { InputError, preview } from "../errors.js";
import { checkModelDir } from "./config.js";
import { refuseForbiddenKeys, type KeyWalkOptions, isPlainObject } from "../util/keys.js";

export type ChatRole = "system" | "user" | "assistant";
/** One turn of a conversation, as chat templates take it. */
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface HfTokenizer {
  dir: string;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  /** `cleanUpTokenizationSpaces` defaults to tokenizer_config.json's value, as in transformers. */
  decode(
    ids: readonly number[],
    opts?: { skipSpecialTokens?: boolean; cleanUpTokenizationSpaces?: boolean },
  ): string;
  /**
   * Whether decode cleans up tokenization spaces by default (tokenizer_config.json's clean_up_tokenization_spaces,
   * as transformers: " ." -> ".", " 's" -> "'s", ...; Llama 3's sets it): the text is then not the concatenation of
   * its tokens' pieces, which a caller decoding token by token must know (eval/generate/text-stream.ts).
   */
  cleanUpTokenizationSpaces: boolean;
  tokenToId(token: string): number | null;
  idToToken(id: number): string | null;
  /** 1 + the largest token id, added tokens included: the embedding rows a model needs at least. */
  vocabSize: number;
  bosTokenId: number | null;
  /**
   * Every id that ends generation: the tokenizer's eos, then generation_config.json's, then config.json's, then the
   * special token the chat template closes an assistant turn with where none of those names it (io/tokenizer-json.ts
   * endTokens, which the keys of finished work read too).
   */
  eosTokenIds: number[];
  padTokenId: number | null;
  hasChatTemplate: boolean;
  applyChatTemplate(
    messages: readonly ChatMessage[],
    opts?: {
      addGenerationPrompt?: boolean;
      enableThinking?: boolean;
      /**
       * The template variable `date_string` (Llama 3.1/3.2 write it as "Today Date: ..." when given), as a
       * server's chat_template_kwargs pass it (goodvibe serve); absent, this tokenizer's day as the templates write
       * it ("09 Mar 2025") when that day is not the default, else none (the template's own choice: strftime_now
       * on the default day, or its own default).
       */
      dateString?: string;
    },
  ): string;
  /** The id of `text` when it is exactly one token (e.g. the labels "0" and "1"); InputError otherwise. */
  singleTokenId(text: string): number;
  /**
   * What a run should know but need not stop for, for the caller to log: an eos_token the vocabulary lacks, or
   * no end-of-sequence token at all (answers then run to the token limit, and training answers end without one).
   */
  warnings: string[];
}

/** Objects in tokenizer.json keyed by token text: any token is fine there ("constructor" is a real token). */
const TOKEN_KEYED = new Set(["vocab", "special_tokens"]);
const tokenKeyed = (p: readonly (string | number)[]): boolean =>
  p.length > 0 && TOKEN_KEYED.has(String(p[p.length - 1]));

async function readJson(
  file: string,
  required: boolean,
  what: string,
  keys: KeyWalkOptions = {},
): Promise<unknown> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, "utf8");
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new InputError(`${file}: cannot read ${what} (${(e as Error).message})`, { cause: e });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: ${what} is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  refuseForbiddenKeys(value, file, keys);
  return value;
}

/**
 * Refuse a special token of another type (`"eos_token": 2`, an object without a string "content"): transformers
 * refuses it too ("Special token ... has to be either str or AddedToken"), and skipping it would lose the token
 * that ends generation without a word. null (no such token) is fine.
 */
function checkTokenField(file: string, key: string, v: unknown): void {
  if (v === undefined || v === null || tokenContent(v) !== null) return;
  throw new InputError(
    `${file}: field "${key}" = ${preview(v)}: must be a token string or an AddedToken object {"content": "..."} ` +
      `(a token id belongs in config.json's "${key}_id")`,
  );
}

/**
 * additional_special_tokens: a list of token strings or AddedToken objects, or null. Another type (a single string,
 * a number among them) is refused, naming the entry: transformers refuses it too, and dropping an entry would lose a
 * special token (a chat turn marker) without a word.
 */
function checkAdditionalTokens(file: string, v: unknown): void {
  if (v === undefined || v === null) return;
  const key = "additional_special_tokens";
  if (!Array.isArray(v))
    throw new InputError(
      `${file}: field "${key}" = ${preview(v)}: must be a list of token strings or AddedToken objects`,
    );
  v.forEach((x, i) => {
    if (tokenContent(x) === null)
      throw new InputError(
        `${file}: field "${key}"[${i}] = ${preview(x)}: must be a token string or an AddedToken object {"content": "..."}`,
      );
  });
}

/**
 * Token ids in config.json / generation_config.json: an integer, a list of integers (eos: several end tokens), or
 * null. Anything else (`"eos_token_id": "2"`) is refused, naming the file and field; a negative id (older exports
 * write -1 for "none") means none, as before.
 */
function idList(file: string, key: string, v: unknown): number[] {
  if (v === undefined || v === null) return [];
  const xs = Array.isArray(v) ? v : [v];
  if (!xs.every((x) => Number.isSafeInteger(x)))
    throw new InputError(
      `${file}: field "${key}" = ${preview(v)}: must be a token id (an integer), a list of token ids, or null`,
    );
  return (xs as number[]).filter((x) => x >= 0);
}

/** The chat template: chat_template.jinja wins over tokenizer_config.json, as in recent transformers. */
async function findChatTemplate(
  dir: string,
  config: Record<string, unknown>,
): Promise<{ text: string; source: string } | null> {
  const jinjaFile = path.join(dir, "chat_template.jinja");
  try {
    return { text: await fs.promises.readFile(jinjaFile, "utf8"), source: jinjaFile };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new InputError(`${jinjaFile}: cannot read chat template (${(e as Error).message})`, { cause: e });
    }
  }
  const source = path.join(dir, "tokenizer_config.json");
  const t = config.chat_template;
  if (t === undefined || t === null) return null;
  if (typeof t === "string") return { text: t, source };
  // A list of named templates: the one called "default" is the chat template.
  if (Array.isArray(t)) {
    for (const entry of t) {
      if (!isPlainObject(entry) || typeof entry.name !== "string" || typeof entry.template !== "string") {
        throw new InputError(`${source}: "chat_template" list entries must be {name, template} strings`);
      }
    }
    const def = (t as { name: string; template: string }[]).find((e) => e.name === "default");
    if (!def) {
      throw new InputError(
        `${source}: "chat_template" has no template named "default" (found: ${t.map((e) => e.name).join(", ")})`,
      );
    }
    return { text: def.template, source };
  }
  throw new InputError(`${source}: "chat_template" must be a string or a list of {name, template}`);
}

/** Load the tokenizer of a model folder (tokenizer.json required, the rest optional). */
export interface LoadTokenizerOptions {
  /**
   * The day chat templates render (their strftime_now): "YYYY-MM-DD" or "today"; default the process's setting
   * (GOODVIBE_TEMPLATE_DATE, else DEFAULT_TEMPLATE_DATE).
   */
  templateDate?: string;
  /** The clock "today" reads (tests give another day). */
  now?: () => Date;
}

/**
 * The tokenizer classes whose transformers implementation rebuilds the post-processor from tokenizer_config.json's
 * add_bos_token (default true) and add_eos_token (default false) when it loads (LlamaTokenizerFast,
 * GemmaTokenizerFast, CodeLlamaTokenizerFast: `update_post_processor()` in `__init__`; AutoTokenizer loads the
 * slow names as these), so what tokenizer.json's post-processor says does not count there.
 */
const POST_PROCESSOR_FROM_FLAGS = new Set([
  "LlamaTokenizer",
  "LlamaTokenizerFast",
  "GemmaTokenizer",
  "GemmaTokenizerFast",
  "CodeLlamaTokenizer",
  "CodeLlamaTokenizerFast",
]);

/**
 * The ids an encode with special tokens puts before and after the text where the tokenizer class takes them from
 * add_bos_token / add_eos_token (above); null where tokenizer.json's post-processor decides. A fine-tune saved with
 * `add_eos_token: true` is encoded with the end token after every text there, as transformers and llama.cpp (the
 * GGUF's tokenizer.ggml.add_eos_token, io/export-gguf.ts) encode it.
 */
function specialTokenFlags(
  configFile: string,
  config: Record<string, unknown>,
  specialId: (key: string) => number | null,
): { bos: number | null; eos: number | null } | null {
  if (typeof config.tokenizer_class !== "string" || !POST_PROCESSOR_FROM_FLAGS.has(config.tokenizer_class))
    return null;
  const flag = (key: string, dflt: boolean): boolean => {
    const v = config[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "boolean") throw new InputError(`${configFile}: field "${key}" must be true or false`);
    return v;
  };
  const id = (key: "bos_token" | "eos_token", on: boolean): number | null => {
    if (!on) return null;
    const found = specialId(key);
    if (found === null)
      // transformers: "add_bos_token = True but bos_token = None"
      throw new InputError(
        `${configFile}: add_${key} is true (${config.tokenizer_class} adds it to every text) but ${key} names no token of the vocabulary`,
      );
    return found;
  };
  return {
    bos: id("bos_token", flag("add_bos_token", true)),
    eos: id("eos_token", flag("add_eos_token", false)),
  };
}

/** `dir`'s tokenizer.json, which must exist (the folder first: a missing folder is said as such). */
export function requireTokenizerFile(dir: string): string {
  checkModelDir(dir);
  const tokenizerFile = path.join(dir, "tokenizer.json");
  if (!fs.existsSync(tokenizerFile)) {
    throw new InputError(
      `${dir}: no tokenizer.json in this folder (a fast Hugging Face tokenizer is required)`,
    );
  }
  return tokenizerFile;
}

export async function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): Promise<HfTokenizer> {
  const day = templateDay(options.templateDate ?? templateDateSetting(), options.now);
  const strftime_now = strftimeNowOn(day);
  // A day other than the default is also the template variable date_string, as servers are sent it
  // (chat_template_kwargs.date_string, eval/generate/http.ts): Llama 3.1's template reads it but never calls
  // strftime_now, so it would write its own 26 Jul 2024 where a server writes the setting's day. The default day
  // is not passed: templates render as before it (3.1's and 3.2's own fallback is that day), so keys made then hold.
  const settingDateString =
    day.toISOString().slice(0, 10) !== DEFAULT_TEMPLATE_DATE
      ? strftimeOn(day, TEMPLATE_DATE_STRING_FORMAT)
      : undefined;
  const tokenizerFile = requireTokenizerFile(dir);
  const tokenizerJson = await readJson(tokenizerFile, true, "tokenizer", { skipKeysAt: tokenKeyed });
  if (!isPlainObject(tokenizerJson) || !isPlainObject(tokenizerJson.model)) {
    throw new InputError(`${tokenizerFile}: not a tokenizer.json (no "model" object)`);
  }
  const configFile = path.join(dir, "tokenizer_config.json");
  const configJson = (await readJson(configFile, false, "tokenizer config")) ?? {};
  if (!isPlainObject(configJson)) throw new InputError(`${configFile}: must be a JSON object`);
  // special_tokens_map.json fills the special tokens tokenizer_config.json leaves out (as in transformers).
  const mapFile = path.join(dir, "special_tokens_map.json");
  const specialMap = await readJson(mapFile, false, "special tokens map");
  if (specialMap !== undefined && !isPlainObject(specialMap))
    throw new InputError(`${mapFile}: must be a JSON object`);
  // which file each special token came from, for the messages
  const tokenSource = new Map<string, string>();
  for (const [k, v] of Object.entries(specialMap ?? {})) {
    if (configJson[k] === undefined || configJson[k] === null) {
      configJson[k] = v;
      tokenSource.set(k, mapFile);
    }
  }
  for (const key of SPECIAL_TOKEN_KEYS)
    checkTokenField(tokenSource.get(key) ?? configFile, key, configJson[key]);
  checkAdditionalTokens(
    tokenSource.get("additional_special_tokens") ?? configFile,
    configJson.additional_special_tokens,
  );
  const genFile = path.join(dir, "generation_config.json");
  const modelFile = path.join(dir, "config.json");
  const generation = await readJson(genFile, false, "generation config");
  const modelConfig = await readJson(modelFile, false, "model config");
  if (generation !== undefined && !isPlainObject(generation))
    throw new InputError(`${genFile}: must be a JSON object`);
  if (modelConfig !== undefined && !isPlainObject(modelConfig))
    throw new InputError(`${modelFile}: must be a JSON object`);
  const genHints = generation ?? {};
  const modelHints = modelConfig ?? {};
  // every id field is checked, even one a field before it makes unused: a malformed file is refused whole
  const ids = (key: string): { gen: number[]; model: number[] } => ({
    gen: idList(genFile, key, genHints[key]),
    model: idList(modelFile, key, modelHints[key]),
  });
  const bosIds = ids("bos_token_id");
  const eosIds = ids("eos_token_id");
  const padIds = ids("pad_token_id");

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tokenizerJson, configJson);
    // The library builds some parts lazily; one round trip surfaces a broken file here, not mid-run.
    tok.decode(tok.encode("Hello, world 0 1\n\tdef f():").ids);
  } catch (e) {
    throw new InputError(
      `${tokenizerFile}: cannot be loaded as a tokenizer (${(e as Error)?.message ?? String(e)})`,
      {
        cause: e,
      },
    );
  }

  const tokenToId = (token: string): number | null => tok.token_to_id(token) ?? null;
  const specialId = (key: string): number | null => {
    const content = tokenContent(configJson[key]);
    return content === null ? null : tokenToId(content);
  };

  let maxId = -1;
  for (const id of tok.get_vocab(true).values()) if (id > maxId) maxId = id;

  // Hints from the model config can name ids the tokenizer does not have (santacoder's config says 50256).
  const known = (ids: number[]): number[] => ids.filter((id) => tok.id_to_token(id) !== undefined);
  const bosTokenId = specialId("bos_token") ?? known(bosIds.gen)[0] ?? known(bosIds.model)[0] ?? null;
  const padTokenId = specialId("pad_token") ?? known(padIds.gen)[0] ?? known(padIds.model)[0] ?? null;
  const warnings: string[] = [];
  const templateFound = await findChatTemplate(dir, configJson);
  let template: Template | null = null;
  let templateError: InputError | null = null;
  if (templateFound) {
    try {
      template = new Template(jinjaSource(templateFound.text));
    } catch (e) {
      // Kept for applyChatTemplate: the tokenizer itself is still usable without a chat template.
      templateError = new InputError(
        `${templateFound.source}: the chat template does not parse (${(e as Error).message})`,
      );
    }
  }
  const specialTokens = templateSpecialTokens(configJson);
  // eos_token, the eos_token_id fields (checked above), and the template's end of turn where none names it: read
  // from the files as the keys of finished work read them (io/tokenizer-json.ts), so both agree
  const { eosTokenIds, endOfTurnAdded: eot } = endTokens({
    tokenizer: tokenizerJson,
    config: configJson,
    eosTokenIdFields: [eosIds.gen, eosIds.model],
    template,
    strftimeNow: strftime_now,
  });
  if (eot !== null)
    warnings.push(
      `${templateFound!.source}: the chat template ends an assistant turn with ${JSON.stringify(tok.id_to_token(eot))} ` +
        `(id ${eot}), which neither eos_token nor eos_token_id names` +
        (eosTokenIds.length > 1 ? ` (they name id ${eosTokenIds.slice(0, -1).join(", ")})` : "") +
        `: generation ends at it too, and fine-tuning answers end with it as the template writes them`,
    );
  // transformers would add a missing eos_token as a new id past the model's vocabulary: it is never generated
  const eosName = tokenContent(configJson.eos_token);
  if (eosName !== null && tokenToId(eosName) === null)
    warnings.push(
      `${tokenSource.get("eos_token") ?? configFile}: eos_token ${JSON.stringify(eosName)} is not in ` +
        `${tokenizerFile}'s vocabulary` +
        (eosTokenIds.length > 0
          ? `; generation ends at id ${eosTokenIds.join(", ")} (eos_token_id of ${genFile} / ${modelFile})`
          : ""),
    );
  if (eosTokenIds.length === 0)
    warnings.push(
      `${dir}: no end-of-sequence token the vocabulary has (eos_token in ${configFile}, eos_token_id in ` +
        `${genFile} or ${modelFile}): generated answers run to the token limit, and fine-tuning answers end ` +
        `without one, so the tuned model does not learn to stop`,
    );

  const cleanUpDefault = configJson.clean_up_tokenization_spaces === true;
  const flagged = specialTokenFlags(configFile, configJson, specialId);

  return {
    dir,
    vocabSize: maxId + 1,
    bosTokenId,
    eosTokenIds,
    padTokenId,
    hasChatTemplate: templateFound !== null,
    cleanUpTokenizationSpaces: cleanUpDefault,
    warnings,
    encode(text, opts = {}) {
      const add = opts.addSpecialTokens ?? true;
      if (!add || flagged === null) return tok.encode(text, { add_special_tokens: add }).ids;
      const ids = tok.encode(text, { add_special_tokens: false }).ids;
      return [
        ...(flagged.bos !== null ? [flagged.bos] : []),
        ...ids,
        ...(flagged.eos !== null ? [flagged.eos] : []),
      ];
    },
    decode(ids, opts = {}) {
      // the library throws on no ids; Python's tokenizers (and transformers) decode them to "": an answer whose first
      // token is the end-of-sequence token is empty, not an error
      if (ids.length === 0) return "";
      return tok.decode(Array.from(ids), {
        skip_special_tokens: opts.skipSpecialTokens ?? false,
        clean_up_tokenization_spaces: opts.cleanUpTokenizationSpaces ?? cleanUpDefault,
      });
    },
    tokenToId,
    idToToken(id) {
      return tok.id_to_token(id) ?? null;
    },
    applyChatTemplate(messages, opts = {}) {
      if (templateError) throw templateError;
      if (!template) {
        throw new InputError(
          `${dir}: the tokenizer has no chat template (neither chat_template.jinja nor "chat_template" in tokenizer_config.json)`,
        );
      }
      const context: Record<string, unknown> = {
        ...specialTokens,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        // transformers' render_jinja_template always passes both, None when not given: `tools is not none` is false
        tools: null,
        documents: null,
        add_generation_prompt: opts.addGenerationPrompt ?? false,
      };
      // Only when asked: templates test `enable_thinking is defined`.
      if (opts.enableThinking !== undefined) context.enable_thinking = opts.enableThinking;
      // Only when given (a request's, else the day setting's when not the default): Llama's templates test
      // `date_string is defined`.
      const dateString = opts.dateString ?? settingDateString;
      if (dateString !== undefined) context.date_string = dateString;
      try {
        return renderTemplate(template, context, strftime_now);
      } catch (e) {
        throw new InputError(
          `${templateFound!.source}: the chat template failed to render (${(e as Error).message})`,
          {
            cause: e,
          },
        );
      }
    },
    singleTokenId(text) {
      const ids: number[] = tok.encode(text, { add_special_tokens: false }).ids;
      if (ids.length !== 1) {
        const pieces = ids.map((id) => JSON.stringify(tok.id_to_token(id) ?? `#${id}`)).join(", ");
        throw new InputError(
          `${dir}: ${JSON.stringify(text)} is not a single token for this tokenizer (it encodes to ${ids.length}: ${pieces})`,
        );
      }
      return ids[0]!;
    },
  };
}
