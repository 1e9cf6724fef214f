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
import { estimateCells, planThroughput } from "../../src/experiment/estimate.js";
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
