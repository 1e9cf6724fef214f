/**
 * Sampling takes what the call leaves out from the model folder's generation_config.json, as transformers'
 * generate() does (every field a call does not pass is the generation config's; Qwen2.5-Instruct's file: do_sample
 * true, temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05) and vLLM takes a request's defaults: top_p
 * when sampling, the temperature when `generate --sample` asks to sample without one. Greedy stays greedy (the
 * folder's do_sample true does not make our answers sampled: a departure, said in an experiment's departures), and
 * the greedy answers' keys are unchanged. References: the files' values; a seeded float64 loop written here that
 * applies transformers' documented chain (penalty, temperature, top-k, top-p) to llama.cpp's logits.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { openLlamaCppBackend } from "../../src/eval/generate/llamacpp.js";
import { exportGguf } from "../../src/io/export-gguf.js";
import { createRng } from "../../src/util/random.js";
import {
  folderDefaultSampling,
  generationConfigProcessors,
  greedyProcessorKey,
  sampledTemperature,
  sampledTopK,
  sampledTopP,
} from "../../src/eval/generate/generation-config.js";
import { InputError } from "../../src/errors.js";
import { addonOpens, recordAddons, runCli, showRun } from "../cli/cli-helpers.js";

/** Qwen2.5-7B-Instruct's generation_config.json, as published. */
const QWEN25_INSTRUCT = {
  bos_token_id: 151643,
  pad_token_id: 151643,
  do_sample: true,
  eos_token_id: [151645, 151643],
  repetition_penalty: 1.05,
  temperature: 0.7,
  top_p: 0.8,
  top_k: 20,
  transformers_version: "4.37.0",
};

function folderWith(gen: unknown, dir = scratchDir("gv-sampling-")): string {
  fs.writeFileSync(path.join(dir, "generation_config.json"), JSON.stringify(gen));
  return dir;
}

test("the folder's sampling fields are read; greedy answers' keys are those of before", () => {
  const dir = folderWith(QWEN25_INSTRUCT);
  assert.deepEqual(generationConfigProcessors(dir, true), {
    repetitionPenalty: 1.05,
    topK: 20,
    topP: 0.8,
    temperature: 0.7,
    doSample: true,
  });
  // the key of greedy answers: the penalty alone, as before the sampling fields were read
  assert.deepEqual(greedyProcessorKey(generationConfigProcessors(dir, true)), { repetitionPenalty: 1.05 });
  assert.deepEqual(folderDefaultSampling(dir), { temperature: 0.7, topP: 0.8, topK: 20 });
  // transformers' neutral values: no warper, no default; do_sample false: generate() is greedy
  const neutral = folderWith({ do_sample: false, top_p: 1.0, temperature: 1.0 });
  assert.deepEqual(generationConfigProcessors(neutral, true), { topK: 50, temperature: 1 });
  assert.equal(folderDefaultSampling(neutral), null);
  // Llama 3.1 Instruct's: do_sample true without top_k: transformers' 50
  assert.deepEqual(folderDefaultSampling(folderWith({ do_sample: true, temperature: 0.6, top_p: 0.9 })), {
    temperature: 0.6,
    topP: 0.9,
    topK: 50,
  });
  // off: nothing read
  assert.deepEqual(generationConfigProcessors(dir, false), {});
  // values TopPLogitsWarper and TemperatureLogitsWarper refuse: refused when a sampled call would take them, naming
  // the file and field, and not before (a greedy run never uses them; transformers loads such a file)
  for (const [gen, field, take] of [
    [
      { top_p: 1.5 },
      /generation_config\.json: top_p must be a number in \(0, 1\] to sample with, got 1\.5/,
      "topP",
    ],
    [{ top_p: "0.8" }, /top_p must be a number in \(0, 1\] to sample with, got "0\.8"/, "topP"],
    [
      { temperature: -1 },
      /generation_config\.json: temperature must be a number > 0 to sample with, got -1/,
      "t",
    ],
    [{ temperature: 0 }, /temperature must be a number > 0 to sample with, got 0/, "t"],
    [
      { top_k: 2.5 },
      /generation_config\.json: top_k must be a non-negative integer to sample with, got 2\.5/,
      "k",
    ],
  ] as const) {
    const p = generationConfigProcessors(folderWith(gen), true);
    assert.deepEqual(greedyProcessorKey(p), {});
    const refused = (e: unknown) => e instanceof InputError && field.test(e.message);
    if (take === "topP") {
      assert.throws(() => sampledTopP(undefined, p), refused);
      assert.equal(sampledTopP(0.5, p), 0.5, "the call's own top_p needs none of the file's");
    } else if (take === "k") assert.throws(() => sampledTopK(p), refused);
    else assert.throws(() => sampledTemperature(p), refused);
  }
  assert.equal(sampledTemperature(generationConfigProcessors(folderWith({}), true)), 1);
  assert.equal(sampledTemperature(generationConfigProcessors(dir, true)), 0.7);
});

test("the built-in engine samples with the folder's top_p where the call gives none", async () => {
  const made = makeTinyChatModel({ seed: 7 });
  folderWith({ do_sample: true, top_p: 0.3, top_k: 0 }, made.dir);
  const b = await BuiltinBackend.load(made.dir);
  assert.equal(b.processors.topP, 0.3);
  const tok = b.tokenizer!;
  const ids = made.pairs.slice(0, 2).map((p) =>
    tok.encode(
      tok.applyChatTemplate([{ role: "user", content: p.question }], { addGenerationPrompt: true }),
      {
        addSpecialTokens: false,
      },
    ),
  );
  let differs = 0;
  for (let seed = 0; seed < 4; seed++) {
    const opts = { maxNewTokens: 8, temperature: 1, seed };
    const implicit = b.generateBatch(ids, opts);
    assert.deepEqual(implicit, b.generateBatch(ids, { ...opts, topP: 0.3 }), `seed ${seed}`);
    if (JSON.stringify(implicit) !== JSON.stringify(b.generateBatch(ids, { ...opts, topP: 1 }))) differs++;
  }
  assert.ok(differs > 0, "top_p 0.3 changed no answer: the check has no power");
  // greedy ignores the sampling fields
  assert.deepEqual(
    b.generateBatch(ids, { maxNewTokens: 8 }),
    (await BuiltinBackend.load(made.dir, { processors: {} })).generateBatch(ids, { maxNewTokens: 8 }),
  );
});

/**
 * The reference: transformers' chain on each step's logits (recomputed from the whole sequence, prompt in one
 * batch and then one token at a time as decoding feeds them), in float64: RepetitionPenaltyLogitsProcessor over the
 * distinct tokens so far, TemperatureLogitsWarper, TopKLogitsWarper (below the k-th largest removed),
 * TopPLogitsWarper (ascending, cumulative probability <= 1 - top_p removed, the most likely kept), then the
 * inverse CDF over the kept tokens in index order at a uniform draw of the project's seeded generator.
 */
async function referenceSampled(
  logitsOf: (seq: number[]) => Promise<Float32Array>,
  prompt: number[],
  s: { temperature: number; topP: number; topK: number; penalty: number; seed: number; maxNewTokens: number },
): Promise<number[]> {
  const rng = createRng(s.seed);
  const seq = [...prompt];
  const out: number[] = [];
  for (let step = 0; step < s.maxNewTokens; step++) {
    const row = Float64Array.from(await logitsOf(seq));
    for (const t of new Set(seq)) row[t] = row[t]! < 0 ? row[t]! * s.penalty : row[t]! / s.penalty;
    const v = Array.from(row, (x) => x / s.temperature);
    if (s.topK > 0) {
      const kth = [...v].sort((a, b) => b - a)[s.topK - 1]!;
      for (let i = 0; i < v.length; i++) if (v[i]! < kth) v[i] = -Infinity;
    }
    const max = Math.max(...v);
    const w = v.map((x) => Math.exp(x - max));
    const z = w.reduce((a, b) => a + b, 0);
    const asc = v.map((_, i) => i).sort((a, b) => v[a]! - v[b]! || a - b);
    let cum = 0;
    for (const i of asc.slice(0, -1)) {
      cum += w[i]! / z;
      if (cum <= 1 - s.topP) w[i] = 0;
      else break;
    }
    let r = rng.next() * w.reduce((a, b) => a + b, 0);
    let pick = -1;
    for (let i = 0; i < w.length && pick < 0; i++) if (w[i]! > 0 && (r -= w[i]!) < 0) pick = i;
    out.push(pick);
    seq.push(pick);
  }
  return out;
}

test("llama.cpp samples with the folder's top_p, top_k and penalty as a float64 reference loop does", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const dir = folderWith({ do_sample: true, top_p: 0.6, top_k: 12, repetition_penalty: 1.3 }, made.dir);
  const processors = generationConfigProcessors(dir, true);
  const gguf = path.join(scratchDir("gv-sampling-"), "model.gguf");
  exportGguf(made.dir, gguf, { outtype: "f32" });
  // no tokenizer: no end token stops it, so every step is compared
  const llama = await openLlamaCppBackend({ modelPath: gguf, threads: 1, processors });
  try {
    const prompt = llama.encodePrompt(made.pairs[0]!.question);
    const logitsOf = async (seq: number[]) => (await llama.logits(seq, { prefill: prompt.length })).at(-1)!;
    const T = 0.9;
    let differs = 0;
    for (let seed = 0; seed < 4; seed++) {
      const got = await llama.generateTokens(prompt, { maxNewTokens: 6, temperature: T, seed });
      const base = { temperature: T, topK: 12, penalty: 1.3, seed, maxNewTokens: 6 };
      assert.deepEqual(got, await referenceSampled(logitsOf, prompt, { ...base, topP: 0.6 }), `seed ${seed}`);
      const untouched = await referenceSampled(logitsOf, prompt, { ...base, topP: 1 });
      if (JSON.stringify(untouched) !== JSON.stringify(got)) differs++;
      // the call's own top_p wins over the folder's
      assert.deepEqual(
        await llama.generateTokens(prompt, { maxNewTokens: 6, temperature: T, topP: 1, seed }),
        untouched,
      );
    }
    assert.ok(differs > 0, "the folder's top_p changed no draw: the check has no power");
  } finally {
    await llama.close();
  }
});

test("generate --sample takes the folder's temperature, top_p and top_k and records them; greedy stays greedy", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  folderWith({ do_sample: true, temperature: 0.7, top_p: 0.5, top_k: 20 }, made.dir);
  const run = async (...extra: string[]) => {
    const r = await runCli([
      "generate",
      "-m",
      made.dir,
      "-p",
      "hello",
      "--max-new-tokens",
      "6",
      "--json",
      ...extra,
    ]);
    assert.equal(r.code, 0, showRun(r));
    return JSON.parse(r.stdout) as {
      text: string;
      sampling: { topP?: number } | string;
      generationConfig: unknown;
    };
  };
  const sampled = await run("--sample", "--seed", "3");
  assert.deepEqual(sampled.sampling, { temperature: 0.7, topP: 0.5, topK: 20, seed: 3 });
  assert.deepEqual(sampled.generationConfig, {
    applied: true,
    repetitionPenalty: null,
    topK: 20,
    topP: 0.5,
    temperature: 0.7,
  });
  // the same draw as the values given by hand, which the record then does not ascribe to the file
  const explicit = await run("--temperature", "0.7", "--top-p", "0.5", "--seed", "3");
  assert.equal(explicit.text, sampled.text);
  assert.deepEqual(explicit.generationConfig, {
    applied: true,
    repetitionPenalty: null,
    topK: 20,
    topP: null,
    temperature: null,
  });
  // a temperature alone: the folder's top_p (before: 1)
  assert.deepEqual((await run("--temperature", "0.7", "--seed", "3")).sampling, {
    temperature: 0.7,
    topP: 0.5,
    topK: 20,
    seed: 3,
  });
  // without the file: transformers' defaults of a call that sets nothing but do_sample, less the top_k 50 the
  // flag turns off with the rest
  assert.deepEqual((await run("--sample", "--no-generation-config")).sampling, {
    temperature: 1,
    topP: 1,
    topK: null,
    seed: 0,
  });
  // no flag: greedy, whatever the file's do_sample says
  const greedy = await run();
  assert.equal(greedy.sampling, "greedy");
  assert.deepEqual(greedy.generationConfig, { applied: true, repetitionPenalty: null });
  const zero = await runCli(["generate", "-m", made.dir, "-p", "hello", "--sample", "--temperature", "0"]);
  assert.notEqual(zero.code, 0);
  assert.match(zero.stderr, /--sample with --temperature 0/);
  // a top_p no warper takes: greedy answers as ever, sampling refused naming the file, unless the call gives its own
  folderWith({ do_sample: true, top_p: 1.5, top_k: -1 }, made.dir);
  assert.equal((await run()).sampling, "greedy");
  // refused before the model (and with it libtorch) loads
  const record = path.join(scratchDir("gv-sampling-"), "addons.txt");
  const bad = await runCli(["generate", "-m", made.dir, "-p", "hello", "--max-new-tokens", "2", "--sample"], {
    env: recordAddons(record),
  });
  assert.notEqual(bad.code, 0, showRun(bad));
  assert.match(
    bad.stderr,
    /generation_config\.json: top_p must be a number in \(0, 1\] to sample with, got 1\.5/,
  );
  const badK = await runCli(
    ["generate", "-m", made.dir, "-p", "hello", "--max-new-tokens", "2", "--sample", "--top-p", "0.9"],
    { env: recordAddons(record) },
  );
  assert.notEqual(badK.code, 0, showRun(badK));
  assert.match(badK.stderr, /top_k must be a non-negative integer to sample with, got -1/);
  assert.deepEqual(addonOpens(record), [], "a refused generation_config.json loaded libtorch");
  folderWith({ do_sample: true, top_p: 1.5 }, made.dir);
  assert.equal(((await run("--sample", "--top-p", "0.9")).sampling as { topP?: number }).topP, 0.9);
});

test("sampled answers name the folder's sampling warpers the engines lack (min_p, typical_p, ...); greedy ones do not", async () => {
  const { generationConfigCaveat } = await import("../../src/eval/generate/generation-config.js");
  // transformers adds MinPLogitsWarper for min_p set, TypicalLogitsWarper for typical_p < 1, the cutoffs in (0, 1)
  const dir = folderWith({
    do_sample: true,
    temperature: 0.6,
    top_p: 0.95,
    top_k: 20,
    min_p: 0.05,
    typical_p: 1.0,
  });
  assert.equal(generationConfigCaveat(dir), null, "greedy: min_p is a sampling warper");
  const c = generationConfigCaveat(dir, { sampled: true })!;
  assert.match(c, /sets min_p 0\.05, which transformers' generate\(\) applies when sampling/);
  assert.match(c, /sample with its temperature, top_k and top_p only/);
  assert.doesNotMatch(c, /typical_p/, "typical_p 1.0 adds no warper");
  assert.match(
    generationConfigCaveat(dir, { sampled: true, applied: false })!,
    /none of the file \(--no-generation-config\)/,
  );
  assert.equal(
    generationConfigCaveat(folderWith({ min_p: 0, epsilon_cutoff: 0.0 }), { sampled: true }),
    null,
  );
  // the CLI says it, sampled only
  const made = makeTinyChatModel({ seed: 5 });
  folderWith({ do_sample: true, min_p: 0.05 }, made.dir);
  const run = (...extra: string[]) =>
    runCli(["generate", "-m", made.dir, "-p", "hello", "--max-new-tokens", "2", "--json", ...extra]);
  const sampled = await run("--sample");
  assert.equal(sampled.code, 0, showRun(sampled));
  const caveats = (JSON.parse(sampled.stdout) as { caveats?: string[] }).caveats ?? [];
  assert.equal(caveats.length, 1, sampled.stdout);
  assert.match(caveats[0]!, /^generation config: .*min_p 0\.05/);
  assert.match(sampled.stderr, /min_p 0\.05/);
  const greedy = await run();
  assert.equal((JSON.parse(greedy.stdout) as { caveats?: string[] }).caveats, undefined, greedy.stdout);
});
