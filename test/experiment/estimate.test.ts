/**
 * The throughput `experiment plan` turns FLOPs into time with: the experiment file's estimate.flopsPerSecond when
 * given, else a default for the device the run would use (GOODVIBE_DEVICE), never one figure for every device.
 * The defaults are the documented ones (estimate.ts: 0.3 TFLOP/s on the CPU, BENCHMARKS' Zen 5 training rate;
 * 100 TFLOP/s on a GPU); a plan for a GPU needs no GPU.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { expandCells } from "../../src/experiment/plan.js";
import { cellTokens, estimateCells, planThroughput } from "../../src/experiment/estimate.js";
import { PAPER_JUDGE_INSTRUCTION } from "../../src/data/prompts.js";
import { readPairs } from "../../src/data/pairs.js";
import { createRng } from "../../src/util/random.js";
import { frozenCopyKind } from "../../src/models/frozen-dx.js";
import { resolveDevice } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
import { runCli, showRun } from "../cli/cli-helpers.js";
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { scratchDir } from "../scratch.js";

// Qwen2.5-0.5B's published shape, cut to 2 layers: estimated from the file, no checkpoint needed
const raw = (estimate: Record<string, number> = {}) => ({
  name: "t",
  models: [
    {
      name: "q",
      path: "/nonexistent/q",
      config: {
        architectures: ["Qwen2ForCausalLM"],
        model_type: "qwen2",
        hidden_size: 896,
        intermediate_size: 4864,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        num_hidden_layers: 2,
        vocab_size: 151936,
        max_position_embeddings: 32768,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000,
        tie_word_embeddings: true,
      },
    },
  ],
  data: { train: "/nonexistent/train.jsonl", dev: "/nonexistent/dev.jsonl" },
  methods: ["base", "lora"],
  ...(Object.keys(estimate).length ? { estimate } : {}),
});

test("planThroughput: the file's figure, else the device's default; CUDA's without a GPU", () => {
  const spec = parseExperimentSpec(raw(), "t.yaml");
  assert.deepEqual(planThroughput(spec, {}), {
    flopsPerSecond: 3e11,
    device: "cpu",
    deviceSetting: null,
    from: "default",
  });
  assert.equal(planThroughput(spec, { GOODVIBE_DEVICE: "cpu" }).flopsPerSecond, 3e11);
  for (const d of ["cuda", "cuda:1"]) {
    const t = planThroughput(spec, { GOODVIBE_DEVICE: d });
    assert.deepEqual([t.flopsPerSecond, t.device, t.deviceSetting], [1e14, "cuda", d]);
  }
  const given = parseExperimentSpec(raw({ flopsPerSecond: 2.5e12 }), "t.yaml");
  for (const env of [{}, { GOODVIBE_DEVICE: "cuda" }])
    assert.deepEqual(
      [planThroughput(given, env).flopsPerSecond, planThroughput(given, env).from],
      [2.5e12, "estimate.flopsPerSecond"],
    );
});

test("a cell's time is its counted FLOPs over the throughput the plan assumes", () => {
  const spec = parseExperimentSpec(raw(), "t.yaml");
  const cells = expandCells(spec, "t.yaml");
  const cpu = estimateCells(spec, cells, "t.yaml", planThroughput(spec, {}));
  const gpu = estimateCells(spec, cells, "t.yaml", planThroughput(spec, { GOODVIBE_DEVICE: "cuda" }));
  const lora = cells.findIndex((c) => c.method === "lora");
  assert.ok(cpu[lora]!.flops.total > 0);
  assert.equal(cpu[lora]!.seconds, cpu[lora]!.flops.total / 3e11);
  assert.equal(gpu[lora]!.seconds, gpu[lora]!.flops.total / 1e14);
  assert.equal(gpu[lora]!.flops.total, cpu[lora]!.flops.total, "the FLOPs do not depend on the device");
});

test("experiment plan prints the throughput beside the times, and where it came from", async () => {
  const work = scratchDir("gv-estimate-");
  try {
    const file = path.join(work, "t.yaml");
    fs.writeFileSync(file, YAML.stringify(raw()));
    const env = { GOODVIBE_DEVICE: "" };
    const r = await runCli(["experiment", "plan", file], { cwd: work, env });
    assert.equal(r.code, 0, showRun(r));
    assert.match(
      r.stdout,
      /^time at 300 GFLOP\/s, the default for cpu \(GOODVIBE_DEVICE unset\): .*set estimate\.flopsPerSecond/m,
    );
    assert.match(r.stdout, /^total over the 2 distinct cells: .* at 300 GFLOP\/s /m);
    const j = await runCli(["experiment", "plan", file, "--json", "--set", "estimate.flopsPerSecond=2e12"], {
      cwd: work,
      env,
    });
    assert.equal(j.code, 0, showRun(j));
    assert.deepEqual(JSON.parse(j.stdout).throughput, {
      flopsPerSecond: 2e12,
      device: "cpu",
      deviceSetting: null,
      from: "estimate.flopsPerSecond",
    });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

test("experiment plan's total counts cells that differ only in settings their method does not read once", async () => {
  // LoRA reads neither identify.* nor cluster.*, and when training saves its state leaves the weights as they are:
  // the LoRA cells of this ablation and this grid are the plain LoRA cell's computation (method-keys.test.ts)
  const work = scratchDir("gv-estimate-distinct-");
  try {
    const file = path.join(work, "t.yaml");
    const spec = {
      ...raw(),
      methods: ["base", "lora", "goodvibe"],
      ablations: [{ name: "act", method: ["lora", "goodvibe"], set: { "identify.mode": "activation" } }],
      grids: [{ name: "every", method: "lora", key: "train.checkpointEvery", values: [10, 20] }],
    };
    fs.writeFileSync(file, YAML.stringify(spec));
    const r = await runCli(["experiment", "plan", file], { cwd: work, env: { GOODVIBE_DEVICE: "" } });
    assert.equal(r.code, 0, showRun(r));
    // 7 cells: base, lora, goodvibe, lora [act], goodvibe [act], lora [every=10], lora [every=20]; distinct: base,
    // lora, goodvibe and goodvibe [act]
    assert.equal(r.stdout.match(/^(cached|pending|running) /gm)?.length, 7, r.stdout);
    assert.match(r.stdout, /^total over the 4 distinct cells: /m);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

test("a GOODVIBE_DEVICE a run refuses ('CUDA') is refused by the plan with the run's message, not planned as the CPU", async () => {
  const spec = parseExperimentSpec(raw(), "t.yaml");
  const given = parseExperimentSpec(raw({ flopsPerSecond: 2.5e12 }), "t.yaml");
  for (const d of ["CUDA", "gpu", "cuda:x", "Cpu", "AUTO"]) {
    // the reference: what a run says (resolveDevice, which every model load and a cell's build record go through)
    let run: unknown = null;
    try {
      resolveDevice(d);
    } catch (e) {
      run = e;
    }
    assert.ok(run instanceof InputError, `${d}: a run refuses it`);
    for (const s of [spec, given])
      assert.throws(
        () => planThroughput(s, { GOODVIBE_DEVICE: d }),
        (e: unknown) => e instanceof InputError && e.message === run.message,
        d,
      );
  }
  const work = scratchDir("gv-estimate-device-");
  try {
    const file = path.join(work, "t.yaml");
    fs.writeFileSync(file, YAML.stringify(raw()));
    const r = await runCli(["experiment", "plan", file], { cwd: work, env: { GOODVIBE_DEVICE: "CUDA" } });
    assert.equal(r.code, 2, showRun(r));
    assert.match(r.stderr, /unknown device 'CUDA': use cpu, cuda, cuda:N or auto/);
    assert.doesNotMatch(r.stdout, /GFLOP\/s/, "no plan printed");
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------- token counts from the cell's own data

/**
 * A word-level tokenizer folder (tokenizer.json + tokenizer_config.json with a chat template): every word and every
 * run of punctuation is one token (HF's Whitespace pre-tokenizer, \w+|[^\w\s]+), the three turn markers one each.
 */
function wordTokenizerDir(root: string, texts: string[]): string {
  const dir = path.join(root, "wordtok");
  fs.mkdirSync(dir, { recursive: true });
  const specials = ["<unk>", "</s>", "<|user|>", "<|assistant|>"];
  fs.writeFileSync(
    path.join(dir, "tokenizer.json"),
    JSON.stringify({
      version: "1.0",
      added_tokens: specials.map((content, id) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: null,
      pre_tokenizer: { type: "Whitespace" },
      post_processor: null,
      decoder: null,
      model: {
        type: "WordLevel",
        // every word of the texts (this library's WordLevel maps no unknown word to <unk>)
        vocab: Object.fromEntries(
          [
            ...new Set([
              ...specials,
              "0",
              "1",
              ...[...texts, PAPER_JUDGE_INSTRUCTION, "``` c ++ Hello, world def f():"].flatMap(
                (t) => t.match(/\w+|[^\w\s]+/g) ?? [],
              ),
            ]),
          ].map((w, i) => [w, i]),
        ),
        unk_token: "<unk>",
      },
    }),
  );
  fs.writeFileSync(
    path.join(dir, "tokenizer_config.json"),
    JSON.stringify({
      eos_token: "</s>",
      chat_template:
        "{% for m in messages %}<|{{ m.role }}|> {{ m.content }} </s> {% endfor %}" +
        "{% if add_generation_prompt %}<|assistant|> {% endif %}",
    }),
  );
  return dir;
}

/** Tokens of a text without turn markers, by the pre-tokenizer's rule. */
const words = (s: string) => (s.match(/\w+|[^\w\s]+/g) ?? []).length;

const tiny = {
  architectures: ["Qwen2ForCausalLM"],
  model_type: "qwen2",
  hidden_size: 64,
  intermediate_size: 128,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_hidden_layers: 2,
  vocab_size: 1000,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
};
// Σ in·out of one layer's seven projections (q 64→64, k and v 64→32, o 64→64, gate and up 64→128, down 128→64)
const LINEAR = 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128);

function tinyExperiment(root: string, pairs: { question: string; chosen: string; rejected: string }[]) {
  const train = path.join(root, "train.jsonl");
  fs.writeFileSync(
    train,
    pairs.map((p, i) => JSON.stringify({ id: `p${i}`, lang: "c++", ...p })).join("\n") + "\n",
  );
  return {
    name: "tiny",
    models: [
      {
        name: "w",
        path: wordTokenizerDir(
          root,
          pairs.flatMap((p) => Object.values(p)),
        ),
        config: tiny,
      },
    ],
    data: { train, dev: path.join(root, "dev.jsonl") },
    methods: ["goodvibe", "full"],
    defaults: {
      "identify.topK": 4,
      "train.epochs": 1,
      "train.gradientCheckpointing": false,
      "identify.gradientCheckpointing": false,
    },
  };
}

test("the plan counts a cell's own examples with the model's tokenizer and chat template: FLOPs by hand", async () => {
  const root = scratchDir("gv-estimate-data-");
  try {
    const pairs = [
      {
        question: "Write a copy loop in C++.",
        chosen: "```cpp\nfor (i = 0; i < n; i++) b[i] = a[i];\n```",
        rejected: "```cpp\nstrcpy(b, a);\n```",
      },
      {
        question: "Read a line",
        chosen: "```cpp\nstd::getline(std::cin, s);\n```",
        rejected: "```cpp\ngets(s);\n```",
      },
      {
        question: "Free it once, please, and say why",
        chosen: "```cpp\ndelete p; p = nullptr;\n```",
        rejected: "```cpp\ndelete p; delete p;\n```",
      },
    ];
    const spec = parseExperimentSpec(tinyExperiment(root, pairs), "t.yaml");
    const cells = expandCells(spec, "t.yaml");
    const tokens = await cellTokens(spec, cells);
    const est = estimateCells(spec, cells, "t.yaml", planThroughput(spec, {}), tokens);
    const L = 2;
    const att = (T: number) => 4 * L * T * T * 4 * 16;
    // the judge prompt: <|user|> instruction, then the code fenced with the pair's language (as the data reader
    // names it: cpp); </s> <|assistant|>
    const lang = readPairs(spec.data.train)[0]!.lang;
    const code = (a: string) => a.replace(/^```cpp\n/, "").replace(/\n```$/, "");
    const judge = pairs.flatMap((p) =>
      [p.chosen, p.rejected].map(
        (a) => 3 + words(`${PAPER_JUDGE_INSTRUCTION}\n\n\`\`\`${lang}\n${code(a)}\n\`\`\``),
      ),
    );
    // identification, gradient mode: forward (layers, the two label rows) and the backward to the activations
    const identify = judge.reduce((a, T) => a + 2 * (2 * T * LINEAR) + 3 * att(T) + 2 * (2 * 64 * 2), 0);
    const gv = est[cells.findIndex((c) => c.method === "goodvibe")]!;
    assert.equal(gv.tokens.from, "data");
    assert.deepEqual(gv.tokens.identify, { samples: 6, tokens: judge.reduce((a, b) => a + b, 0) });
    assert.equal(gv.flops.identify, identify);
    // a training example: <|user|> question </s> <|assistant|>, then the answer and its </s>, the loss on those
    const ex = pairs.map((p) => ({
      T: 3 + words(p.question) + words(p.chosen) + 1,
      loss: words(p.chosen) + 1,
    }));
    // full fine-tuning at batch 1: every product three times (forward, dX, dW), lm_head on the loss positions
    const train = ex.reduce(
      (a, { T, loss }) => a + 3 * (2 * T * LINEAR) + 3 * att(T) + 3 * (2 * loss * 64 * 1000),
      0,
    );
    const full = est[cells.findIndex((c) => c.method === "full")]!;
    assert.equal(full.tokens.from, "data");
    assert.deepEqual(full.tokens.train, {
      examples: 3,
      tokens: ex.reduce((a, e) => a + e.T, 0),
      loss: ex.reduce((a, e) => a + e.loss, 0),
    });
    assert.equal(full.flops.train, train);
    assert.equal(full.flops.identify, 0);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("micro-batches are padded to their longest example, as the trainer collates them", async () => {
  const root = scratchDir("gv-estimate-pad-");
  try {
    const pairs = [1, 5, 2, 9].map((k) => ({
      question: "q",
      chosen: "```cpp\n" + Array(k).fill("x;").join(" ") + "\n```",
      rejected: "```cpp\ny;\n```",
    }));
    const raw = tinyExperiment(root, pairs);
    const spec = parseExperimentSpec(
      { ...raw, methods: ["full"], defaults: { ...raw.defaults, "train.batchSize": 2 } },
      "t.yaml",
    );
    const cells = expandCells(spec, "t.yaml");
    const [est] = estimateCells(
      spec,
      cells,
      "t.yaml",
      planThroughput(spec, {}),
      await cellTokens(spec, cells),
    );
    // the trainer's seeded order (train.ts planBatches, seed 0) pairs the examples; each pair padded to its longer
    const lengths = pairs.map((p) => 3 + 1 + words(p.chosen) + 1);
    const order = createRng(0 * 1009 + 0).shuffle([0, 1, 2, 3]);
    const padded = [0, 2].reduce((a, i) => a + 2 * Math.max(lengths[order[i]!]!, lengths[order[i + 1]!]!), 0);
    assert.equal(est!.tokens.train.tokens, padded);
    assert.ok(padded > lengths.reduce((a, b) => a + b, 0), "the draw pads something");
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("past the plan's tokenizing budget a seeded draw is tokenized and the rest predicted from characters", async () => {
  const root = scratchDir("gv-estimate-draw-");
  try {
    // tokens are a line in characters, so the prediction is exact
    // "xx;" is two tokens in four characters (with its space), in the question, the code and the fence's line alike
    const w = (k: number) => Array(k).fill("xx;").join(" ");
    const fenced = (k: number) => "```cpp\n" + Array(k).fill("xx;").join(" ") + "\n```";
    const pairs = Array.from({ length: 80 }, (_, i) => ({
      question: w(1 + (i % 7)),
      chosen: fenced(2 + ((i * 5) % 23)),
      rejected: fenced(1 + ((i * 3) % 11)),
    }));
    const spec = parseExperimentSpec(tinyExperiment(root, pairs), "t.yaml");
    const cells = expandCells(spec, "t.yaml");
    const all = estimateCells(spec, cells, "t.yaml", planThroughput(spec, {}), await cellTokens(spec, cells));
    const drawn = await cellTokens(spec, cells, { budget: 40 });
    const est = estimateCells(spec, cells, "t.yaml", planThroughput(spec, {}), drawn);
    for (const [i, e] of est.entries()) {
      assert.equal(e.tokens.from, "data");
      assert.ok(e.tokens.sampled && e.tokens.sampled.pairs < 80, JSON.stringify(e.tokens));
      assert.equal(all[i]!.tokens.sampled, undefined);
      assert.deepEqual(e.tokens.train, all[i]!.tokens.train);
      assert.deepEqual(e.tokens.identify, all[i]!.tokens.identify);
      assert.equal(e.flops.total, all[i]!.flops.total);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("a CPU plan's memory holds frozenDx's weight copies, as the run makes them; a GPU's and full fine-tuning's none", () => {
  const was = process.env.GOODVIBE_FROZEN_DX_BUDGET;
  process.env.GOODVIBE_FROZEN_DX_BUDGET = "100GiB";
  try {
    const spec = parseExperimentSpec({ ...raw(), methods: ["lora", "full"] }, "t.yaml");
    const cells = expandCells(spec, "t.yaml");
    const cpu = estimateCells(spec, cells, "t.yaml", planThroughput(spec, {}));
    const gpu = estimateCells(spec, cells, "t.yaml", planThroughput(spec, { GOODVIBE_DEVICE: "cuda" }));
    // per layer one weight each for q/k/v (896 → 896 + 128 + 128), o, gate/up (896 → 2 × 4864) and down; lm_head
    const layer = 896 * 1152 + 896 * 896 + 896 * 2 * 4864 + 4864 * 896;
    const copies =
      frozenCopyKind("cpu") === "transposed" ? 2 * (2 * layer) + 2 * 151936 * 896 : 4 * (2 * layer);
    const lora = cells.findIndex((c) => c.method === "lora");
    const full = cells.findIndex((c) => c.method === "full");
    assert.equal(cpu[lora]!.peakMemoryBytes - gpu[lora]!.peakMemoryBytes, copies);
    assert.equal(cpu[full]!.peakMemoryBytes, gpu[full]!.peakMemoryBytes, "full fine-tuning freezes nothing");
    // a budget stops the copies where the run's plan stops them: the largest decoder weights first
    process.env.GOODVIBE_FROZEN_DX_BUDGET = String(
      2 * 896 * 2 * 4864 * (frozenCopyKind("cpu") === "transposed" ? 2 : 4),
    );
    const tight = estimateCells(spec, cells, "t.yaml", planThroughput(spec, {}));
    assert.equal(
      tight[lora]!.peakMemoryBytes - gpu[lora]!.peakMemoryBytes,
      2 * 896 * 2 * 4864 * (frozenCopyKind("cpu") === "transposed" ? 2 : 4),
    );
  } finally {
    if (was === undefined) delete process.env.GOODVIBE_FROZEN_DX_BUDGET;
    else process.env.GOODVIBE_FROZEN_DX_BUDGET = was;
  }
});
