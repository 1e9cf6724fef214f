/**
 * Careless numbers in a harden config: counts that size loops and buffers before any data are seen are bounded
 * (an error naming the key, not a hang or a heap abort), and values of the wrong kind name the key. Reference:
 * the schema's documented bounds; the defaults and the shipped example configs must stay inside them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { InputError } from "../../src/errors.js";
import { resolveConfig } from "../../src/config/resolve.js";
import { defaultHardenConfig, hardenSchema } from "../../src/config/harden.js";
import { loadExperimentSpec } from "../../src/experiment/spec.js";
import { REPO_ROOT } from "../evalcore/make-model.js";

const BASE = { model: "m", data: "d", out: "o" };
const resolve = (sets: string[]) => resolveConfig(hardenSchema, undefined, BASE, sets);

test("counts past any real run are refused naming the key and the bound", () => {
  for (const [key, bad, bound] of [
    ["train.epochs", "1e15", "1000"],
    ["train.batchSize", "1000000", "4096"],
    ["train.gradAccum", "1e9", "65536"],
    ["identify.batchSize", "1e9", "4096"],
    ["cluster.nInit", "1e9", "1000"],
    ["cluster.kMax", "1e12", "10000"],
    ["lora.r", "1e9", "4096"],
    ["train.lr", "1e9", "1"],
  ] as const) {
    assert.throws(
      () => resolve([`${key}=${bad}`]),
      (e: unknown) =>
        e instanceof InputError && e.message.includes(key) && e.message.includes(`at most ${bound}`),
      key,
    );
  }
  for (const [key, bad] of [
    ["train.epochs", "1.5"],
    ["train.epochs", "-1"],
    ["identify.topK", "0"],
    ["train.lr", "-1"],
    ["train.lr", ".nan"],
    ["train.betas", "[0.9]"],
    ["identify.mode", "toString"],
  ] as const)
    assert.throws(
      () => resolve([`${key}=${bad}`]),
      (e: unknown) => e instanceof InputError && e.message.includes(key),
      `${key}=${bad}`,
    );
});

test("examples/harden.yaml shows the defaults it says it shows (its header: defaults follow the paper)", () => {
  const example = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, "examples/harden.yaml"), "utf8")) as Record<
    string,
    Record<string, unknown>
  >;
  const d = defaultHardenConfig({ model: "m", data: "d", out: "o" }) as unknown as Record<
    string,
    Record<string, unknown>
  >;
  for (const section of ["identify", "cluster", "train", "lora"])
    for (const [k, v] of Object.entries(example[section] ?? {}))
      assert.deepEqual(v, d[section]![k], `${section}.${k} in examples/harden.yaml is not the default`);
  for (const k of ["method", "seed"]) assert.deepEqual(example[k], d[k], k);
});

test("the defaults and the shipped configs are inside the bounds", () => {
  const d = resolve([]);
  assert.ok(d.train.epochs >= 1 && d.train.lr > 0 && d.train.lr <= 1);
  resolveConfig(hardenSchema, path.join(REPO_ROOT, "examples/harden.yaml"), BASE);
  loadExperimentSpec(path.join(REPO_ROOT, "experiments/organism.yaml"));
});
