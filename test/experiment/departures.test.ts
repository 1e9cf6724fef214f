/**
 * An experiment's departures from the paper's settings (results.json `departures`, the report's notes): each
 * setting the paper states (§4.2: AdamW lr 1e-4, cosine, warm-up 0.1, 2 epochs, bf16 mixed precision, gradient
 * checkpointing, per-device batch 1; §5.1: top-k 50, silhouette threshold 0.05, all pairs) that the file sets
 * otherwise, with the paper's value written out here by hand, not read from the defaults under test; LoRA's
 * settings stated since the paper gives none. The shipped experiments/organism.yaml is the real case.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { experimentDepartures } from "../../src/experiment/departures.js";
import { loadExperimentSpec, parseExperimentSpec } from "../../src/experiment/spec.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

test("experiments/organism.yaml: its departures from the paper, each with the paper's value; ablations and grids are not departures", () => {
  const spec = loadExperimentSpec(path.join(ROOT, "experiments/organism.yaml"));
  const d = experimentDepartures(spec, "organism.yaml");
  const by = Object.fromEntries(d.map((x) => [/\(([^)]+)\)$/.exec(x.setting)?.[1] ?? x.setting, x]));
  // the file's defaults: topK 16, identify.maxPairs 128, lr 0.002, batchSize 4, gradientCheckpointing false
  assert.deepEqual([by["identify.topK"]?.paper, by["identify.topK"]?.here], ["50", "16"]);
  assert.deepEqual([by["train.lr"]?.paper, by["train.lr"]?.here], ["0.0001", "0.002"]);
  assert.deepEqual([by["train.batchSize"]?.paper, by["train.batchSize"]?.here], ["1", "4"]);
  assert.deepEqual(
    [by["train.gradientCheckpointing"]?.paper, by["train.gradientCheckpointing"]?.here],
    ["true", "false"],
  );
  assert.deepEqual([by["identify.maxPairs"]?.paper, by["identify.maxPairs"]?.here], ["0", "128"]);
  // what it keeps as the paper has it is not listed: 2 epochs, cosine, warm-up 0.1, threshold 0.05, all training pairs
  for (const k of [
    "train.epochs",
    "train.schedule",
    "train.warmupRatio",
    "cluster.threshold",
    "train.maxPairs",
  ])
    assert.equal(by[k], undefined, k);
  // nor the project's own choices (lengths, identification batch), nor the grids' thresholds and epochs
  for (const k of ["identify.maxLength", "identify.batchSize", "train.maxLength", "train.gradAccum"])
    assert.equal(by[k], undefined, k);
  assert.deepEqual(by["LoRA settings"], {
    setting: "LoRA settings",
    paper: "not given",
    here: "r 8, alpha 16, dropout 0.05, on q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
    why: "the paper asks that they be stated",
  });
});

test("an experiment on the defaults lists only checkpointing (the default auto, a memory setting), GoodVibe's readings of what the paper leaves open, the code judged in an answer and the training settings it does not give; one without GoodVibe lists no GoodVibe setting", () => {
  const base = {
    name: "p",
    models: [{ name: "m", path: "m" }],
    data: { train: "t.jsonl", dev: "d.jsonl" },
  };
  // ../shared/paper README: lm_head (§4.1 "all linear layers", Table 6's 57.1 M = 56.93 M + 50 × 4,096) and the
  // clusters per module (§4.2 vs §6.2 vs Table 2's counts): the output says which reading the run took
  const [checkpointing, ...readings] = experimentDepartures(
    parseExperimentSpec({ ...base, methods: ["base", "goodvibe"] }, "x"),
  );
  // §4.2 enables checkpointing "to reduce memory usage"; the default turns it on only where memory is short
  assert.deepEqual(
    [checkpointing!.setting, checkpointing!.paper, checkpointing!.here],
    ["gradient checkpointing (train.gradientCheckpointing)", "true", "auto"],
  );
  assert.match(checkpointing!.why, /^the default; a memory setting: .*the same bits with it or without/);
  assert.deepEqual(
    readings.map((d) => d.setting),
    [
      "lm_head's rows as neurons (identify.lmHead)",
      "a layer below the silhouette threshold (cluster.fallback)",
      "what k-means clusters (cluster.features)",
      "code judged in an answer (eval.codeBlocks)",
      "utility benchmarks (eval.utility)",
      "training settings the paper does not give",
    ],
  );
  assert.match(readings[0]!.paper, /all linear layers.*57\.1 M/);
  assert.match(readings[0]!.here, /^off/);
  assert.match(readings[1]!.paper, /§4\.2.*§6\.2.*Table 2/);
  assert.match(readings[1]!.here, /^shared: one update row/);
  // §4.2: "a feature vector derived from its gradient importance profile"; the default: 32 samples, unit length
  assert.match(readings[2]!.paper, /gradient importance profile \(§4\.2\)/);
  assert.equal(
    readings[2]!.here,
    "profile-normalized: each neuron's importances on the first 32 identification samples, scaled to unit length",
  );
  // §4.2 names AdamW and lr 1e-4 only: the rest (transformers' Trainer defaults; accumulation 4) is stated
  assert.equal(
    readings[5]!.paper,
    "not given: AdamW with lr 1e-4, and gradient accumulation without its count",
  );
  assert.equal(
    readings[5]!.here,
    "AdamW betas (0.9, 0.999), eps 1e-8, weight decay 0, gradient norm clipped at 1, gradient accumulation over 4 " +
      "micro-batches of 1 (a step's loss: the mean per answer token over all of them)",
  );
  // the other readings: lm_head hooked is no departure; per-neuron is said as such; no clustering, no fallback
  const other = experimentDepartures(
    parseExperimentSpec(
      {
        ...base,
        methods: ["base", "goodvibe"],
        defaults: {
          identify: { lmHead: true },
          cluster: { fallback: "per-neuron", features: "importance" },
          train: { gradAccum: 8, maxGradNorm: null, weightDecay: 0.01 },
        },
      },
      "x",
    ),
  );
  assert.deepEqual(
    other.map((d) => [d.setting, d.here]),
    [
      ["gradient checkpointing (train.gradientCheckpointing)", "auto"],
      [
        "a layer below the silhouette threshold (cluster.fallback)",
        "per-neuron: one update row per selected neuron",
      ],
      ["what k-means clusters (cluster.features)", "importance: each neuron's mean importance, one number"],
      [
        "code judged in an answer (eval.codeBlocks)",
        "longest: the longest fenced block for the prompt's language (blocks tagged with it, else untagged ones; " +
          'reasoning dropped); an answer with none is judged whole by the LLM judge and is "no code" for the rules',
      ],
      ["utility benchmarks (eval.utility)", "not evaluated"],
      [
        "training settings the paper does not give",
        "AdamW betas (0.9, 0.999), eps 1e-8, weight decay 0.01, no gradient clipping, gradient accumulation over 8 " +
          "micro-batches of 1 (a step's loss: the mean per answer token over all of them)",
      ],
    ],
  );
  const noCluster = experimentDepartures(
    parseExperimentSpec(
      { ...base, methods: ["base", "goodvibe"], defaults: { cluster: { disabled: true } } },
      "x",
    ),
  );
  assert.ok(
    !noCluster.some((d) => d.setting.includes("cluster.fallback") || d.setting.includes("cluster.features")),
  );
  const full = parseExperimentSpec(
    {
      ...base,
      methods: ["base", "full"],
      defaults: { identify: { topK: 5 }, train: { lr: 0.001 }, dtype: "float32" },
    },
    "x",
  );
  assert.deepEqual(
    experimentDepartures(full, "x").map((d) => [d.setting, d.paper, d.here]),
    [
      ["learning rate (AdamW) (train.lr)", "0.0001", "0.001"],
      ["gradient checkpointing (train.gradientCheckpointing)", "true", "auto"],
      ["precision (bf16 mixed precision) (dtype)", "bfloat16", "float32"],
      [
        "code judged in an answer (eval.codeBlocks)",
        "not given: each generated code sample is judged (§4.3); how the code is taken from an answer is not said",
        "longest: the longest fenced block for the prompt's language (blocks tagged with it, else untagged ones; " +
          'reasoning dropped); an answer with none is judged whole by the LLM judge and is "no code" for the rules',
      ],
      [
        "utility benchmarks (eval.utility)",
        "accuracy on ARC Challenge, GSM8K and MMLU against the base model (§4.3, §5.4, Figure 3)",
        "not evaluated",
      ],
      [
        "training settings the paper does not give",
        "not given: AdamW with lr 1e-4, and gradient accumulation without its count",
        "AdamW betas (0.9, 0.999), eps 1e-8, weight decay 0, gradient norm clipped at 1, gradient accumulation over 4 " +
          "micro-batches of 1 (a step's loss: the mean per answer token over all of them)",
      ],
    ],
  );
});

test("checkpointing auto or off departs from the paper's 'enabled' as a memory setting, said with the reason a reviewer needs: the same weights either way", () => {
  const base = {
    name: "p",
    models: [{ name: "m", path: "m" }],
    data: { train: "t.jsonl", dev: "d.jsonl" },
    methods: ["base", "lora"],
  };
  for (const value of ["auto", false] as const) {
    const d = experimentDepartures(
      parseExperimentSpec({ ...base, defaults: { train: { gradientCheckpointing: value } } }, "x"),
    ).find((x) => x.setting === "gradient checkpointing (train.gradientCheckpointing)");
    // §4.2: "To reduce memory usage, mixed-precision training (BF16) and gradient checkpointing are enabled"
    assert.equal(d?.paper, "true");
    assert.equal(d?.here, String(value));
    assert.match(d!.why, /the paper enables it to reduce memory usage/);
    assert.match(d!.why, /the trained weights are the same bits with it or without/);
  }
  const paper = experimentDepartures(
    parseExperimentSpec({ ...base, defaults: { train: { gradientCheckpointing: true } } }, "x"),
  );
  assert.ok(!paper.some((x) => x.setting.includes("gradientCheckpointing")));
});

test("a model folder whose generation_config.json sets do_sample true: the greedy answers are a departure from transformers' default, with the folder's values", async () => {
  const fs = await import("node:fs");
  const dir = scratchDir("gv-dep-decoding-");
  const qwen = path.join(dir, "qwen25");
  const plain = path.join(dir, "plain");
  fs.mkdirSync(qwen);
  fs.mkdirSync(plain);
  // Qwen2.5-7B-Instruct's sampling fields; the other folder's file sets ids only (the organism's)
  fs.writeFileSync(
    path.join(qwen, "generation_config.json"),
    JSON.stringify({ do_sample: true, repetition_penalty: 1.05, temperature: 0.7, top_p: 0.8, top_k: 20 }),
  );
  fs.writeFileSync(
    path.join(plain, "generation_config.json"),
    JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }),
  );
  const spec = (p: string, extra: object = {}) =>
    parseExperimentSpec(
      {
        name: "p",
        models: [{ name: "m", path: p }],
        data: { train: "t.jsonl", dev: "d.jsonl" },
        methods: ["base", "lora"],
        ...extra,
      },
      "x",
    );
  const decoding = (p: string, extra?: object) =>
    experimentDepartures(spec(p, extra)).filter((d) => d.setting === "decoding of the evaluated answers");
  assert.deepEqual(decoding(plain), []);
  const [d] = decoding(qwen);
  assert.equal(d?.paper, "not given");
  assert.match(d!.here, /^greedy \(argmax\), with the folder's repetition_penalty/);
  assert.match(d!.why, /qwen25 \(temperature 0\.7, top_p 0\.8, top_k 20\) sets do_sample true/);
  const [off] = decoding(qwen, { eval: { generationConfig: false } });
  assert.match(off!.here, /on the raw logits \(eval\.generationConfig: false\)/);
  // the base alone (no trained method) says it too
  assert.equal(
    experimentDepartures(
      parseExperimentSpec(
        {
          name: "p",
          models: [{ name: "m", path: qwen }],
          data: { train: "t.jsonl", dev: "d.jsonl" },
          methods: ["base"],
        },
        "x",
      ),
    ).filter((x) => x.setting === "decoding of the evaluated answers").length,
    1,
  );
});

test("utility: the paper says only 'accuracy on ARC Challenge, GSM8K and MMLU'; an experiment running them states how they are asked and scored", () => {
  const base = {
    name: "u",
    models: [{ name: "m", path: "m" }],
    data: { train: "t.jsonl", dev: "d.jsonl" },
  };
  const reading = (methods: string[], utility?: Record<string, unknown>) =>
    experimentDepartures(
      parseExperimentSpec({ ...base, methods, ...(utility ? { eval: { utility } } : {}) }, "x"),
    ).find((d) => /utility/.test(d.setting));
  // §4.3: "We report accuracy on ARC Challenge [20] ..., GSM8K [21] ...; and MMLU [22]": no shots, no variant
  const all = reading(["base", "goodvibe"], {
    arc: "arc.jsonl",
    gsm8k: "gsm.jsonl",
    gsm8kTrain: "gsm-train.jsonl",
    mmlu: "mmlu.jsonl",
    mmluDev: "mmlu-dev.jsonl",
    limit: 200,
  });
  assert.ok(all, "a run of the paper's three benchmarks states its protocol");
  assert.match(all.paper, /accuracy on ARC Challenge, GSM8K and MMLU.*not given/);
  assert.match(all.here, /ARC-Challenge 0-shot, acc_norm/);
  assert.match(all.here, /GSM8K 5-shot, exact match of the strict-match answer .*seed 1234/);
  assert.match(all.here, /MMLU 5-shot .*acc/);
  assert.match(all.here, /no chat template/);
  assert.match(all.here, /at most 200 questions/);
  // 0-shot where no few-shot source is given; a base-only experiment states it too
  const zero = reading(["base"], { gsm8k: "gsm.jsonl" });
  assert.match(zero!.here, /^GSM8K 0-shot/);
  assert.match(zero!.here, /strict match rarely fires/);
  assert.doesNotMatch(zero!.here, /ARC|MMLU/);
  // an ARC-Easy file (arcEasy) is said to be ARC-Easy, never passed off as the paper's ARC-Challenge
  const easy = reading(["base", "goodvibe"], { arcEasy: "arc_easy.jsonl" });
  assert.match(easy!.here, /^ARC-Easy 0-shot/);
  assert.doesNotMatch(easy!.here, /ARC-Challenge/);
  // none of the three (only the held-out code loss, or no utility): Figure 3 is not run, and that is said
  for (const none of [reading(["base", "goodvibe"], { code: "code.jsonl" }), reading(["base", "goodvibe"])]) {
    assert.equal(none?.here, "not evaluated");
    assert.match(none!.paper, /ARC Challenge, GSM8K and MMLU .*Figure 3/);
    assert.match(none!.why, /eval\.utility/);
  }
});

test("which code of an answer the judges read: the paper is silent (§4.3 judges 'each generated code sample'), so every experiment states its reading, the default's (longest) too, and the report prints it", async () => {
  const fs = await import("node:fs");
  // §4.3, typed here from ../shared/paper: the judge labels each generated code sample; nowhere does the paper say
  // how the code is taken from an answer (no word of code blocks, fences or Markdown)
  const paperFile = path.join(ROOT, "../shared/paper/000_e444617c7369fe45.txt");
  if (fs.existsSync(paperFile)) {
    const paper = fs.readFileSync(paperFile, "utf8");
    assert.ok(paper.includes("each generated code sample is labeled as either safe (0) or unsafe (1)"));
    assert.doesNotMatch(paper, /code block|fenced|markdown|longest/i);
  }
  const base = {
    name: "c",
    models: [{ name: "m", path: "m" }],
    data: { train: "t.jsonl", dev: "d.jsonl" },
  };
  const reading = (extra: object) =>
    experimentDepartures(parseExperimentSpec({ ...base, ...extra }, "x")).filter(
      (d) => d.setting === "code judged in an answer (eval.codeBlocks)",
    );
  const [longest, ...more] = reading({ methods: ["base", "goodvibe"] });
  assert.equal(more.length, 0);
  assert.equal(
    longest!.paper,
    "not given: each generated code sample is judged (§4.3); how the code is taken from an answer is not said",
  );
  assert.match(longest!.here, /^longest: the longest fenced block for the prompt's language /);
  assert.match(longest!.why, /^a reading \(the default\): .*eval\.codeBlocks: all judges every block/);
  const [all] = reading({ methods: ["base", "lora"], eval: { codeBlocks: "all" } });
  assert.match(all!.here, /^all: every fenced block for the prompt's language, joined in order /);
  assert.match(all!.why, /^set \(eval\.codeBlocks: all\): every block/);
  // a base-only experiment judges answers too
  assert.equal(reading({ methods: ["base"] }).length, 1);
  assert.equal(reading({ methods: ["base"], eval: { codeBlocks: "all" } })[0]!.here.slice(0, 4), "all:");
  // the shipped CyberNative organism's experiment (the default reading)
  const cn = experimentDepartures(
    loadExperimentSpec(path.join(ROOT, "experiments/cybernative-organism.yaml")),
  );
  assert.match(cn.find((d) => d.setting.endsWith("(eval.codeBlocks)"))!.here, /^longest:/);
  // the report's notes carry every departure of results.json, this one with them
  const { judgeAndProtocolNotes } = await import("../../src/report/judge-tables.js");
  const notes = judgeAndProtocolNotes({ departures: [longest!], cells: [] } as never);
  assert.ok(
    notes.includes(
      `Departs from the paper — code judged in an answer (eval.codeBlocks): here ${longest!.here}, paper ` +
        `${longest!.paper} (${longest!.why}).`,
    ),
    JSON.stringify(notes),
  );
});
