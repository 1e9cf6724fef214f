/**
 * The PyTorch fixtures have no tokenizer (their token ids are arbitrary), but GGUF export needs the model's
 * vocabulary. This copies a fixture's config and weights into a scratch folder with a minimal byte-level BPE
 * tokenizer.json: the config's bos/eos/pad at their ids as special tokens, the 256 byte symbols on the other
 * low ids, no merges; the exporter pads the rest of the 512 ids.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { bytesToUnicode } from "../../src/data/bpe-train.js";

export function fixtureWithTokenizer(fixtureDir: string, outDir: string): string {
  fs.mkdirSync(outDir, { recursive: true });
  for (const f of fs.readdirSync(fixtureDir))
    if (f === "config.json" || f.endsWith(".safetensors") || f.endsWith(".index.json"))
      fs.copyFileSync(path.join(fixtureDir, f), path.join(outDir, f));
  const cfg = JSON.parse(fs.readFileSync(path.join(fixtureDir, "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  const ids = (v: unknown): number[] =>
    (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]) as number[];
  const special = new Map<number, string>();
  for (const id of ids(cfg.bos_token_id)) special.set(id, "<bos>");
  for (const id of ids(cfg.eos_token_id)) special.set(id, special.get(id) ?? "<eos>");
  for (const id of ids(cfg.pad_token_id)) if (!special.has(id)) special.set(id, "<pad>");
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const ch of bytesToUnicode()) {
    while (special.has(next)) next++;
    vocab[ch] = next++;
  }
  const added = [...special].map(([id, content]) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  for (const a of added) vocab[a.content] = a.id;
  const tokenizer = {
    version: "1.0",
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [],
    },
  };
  fs.writeFileSync(path.join(outDir, "tokenizer.json"), JSON.stringify(tokenizer));
  const named = (id: unknown) => (typeof id === "number" ? special.get(id) : undefined);
  fs.writeFileSync(
    path.join(outDir, "tokenizer_config.json"),
    JSON.stringify({
      bos_token: named(ids(cfg.bos_token_id)[0]) ?? null,
      eos_token: named(ids(cfg.eos_token_id)[0]) ?? null,
      pad_token: named(ids(cfg.pad_token_id)[0]) ?? null,
      add_bos_token: false,
    }),
  );
  return outDir;
}
