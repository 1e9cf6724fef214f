/**
 * A cell's key changes exactly when a setting its method reads changes. The settings are every leaf of the harden
 * config schema (hardenSchema, walked here, so a setting added there is checked without editing this file) that an
 * experiment lets a user set (`defaults`); which method reads which follows the recipe's code path
 * (recipes/harden.ts): GoodVibe identifies (identify.*), clusters (cluster.*) and trains (train.*); LoRA attaches
 * adapters (lora.*) and trains; full fine-tuning trains; the base model is only evaluated. Training reads
 * train.checkpointEvery only to decide when to save its state, which leaves the weights as they are (harden's own
 * train slot leaves it out). A leaf of a section not named below fails the test until it is classified.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { runExperiment } from "../../src/experiment/run.js";
import { hardenSchema } from "../../src/config/harden.js";
import { InputError } from "../../src/errors.js";
import { silentLogger } from "../../src/util/log.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 4 });
const work = scratchDir("gv-method-keys-");
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 4));
writeCorpusJsonl(devFile, made.pairs.slice(-2));

type Method = "base" | "goodvibe" | "lora" | "full";
const METHODS: Method[] = ["base", "goodvibe", "lora", "full"];

/** Which trained methods read each section (top-level leaves are their own section). */
const READERS: Record<string, Method[]> = {
  dtype: ["goodvibe", "lora", "full"],
  identify: ["goodvibe"],
  cluster: ["goodvibe"],
  train: ["goodvibe", "lora", "full"],
  lora: ["lora"],
};
/** Read, but without effect on the result (when training saves its state). */
const NO_EFFECT = new Set(["train.checkpointEvery"]);

interface ZodLike {
  _zod: {
    def: {
      type: string;
      innerType?: ZodLike;
      shape?: Record<string, ZodLike>;
      options?: ZodLike[];
      entries?: Record<string, string>;
    };
  };
}
const unwrap = (s: ZodLike): ZodLike => (s._zod.def.innerType ? unwrap(s._zod.def.innerType) : s);

/** Every leaf of the schema: dotted path and its schema (objects walked, anything else a leaf). */
function leaves(s: ZodLike, prefix = ""): [string, ZodLike][] {
  const u = unwrap(s);
  if (u._zod.def.type !== "object") return [[prefix, u]];
  return Object.entries(u._zod.def.shape!).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
}

/** Values other than the default to try for a leaf, most likely valid first. */
function alternatives(schema: ZodLike, d: unknown): unknown[] {
  const def = schema._zod.def;
  const out: unknown[] = [];
  if (def.type === "enum") out.push(...Object.values(def.entries!));
  // false first: "auto" is keyed as true, the default it replaced (checkpointing-keys.test.ts)
  if (def.type === "union") out.push(false, true, "auto");
  if (typeof d === "boolean") out.push(!d);
  if (typeof d === "number") out.push(d * 2, d + 1, d / 2, d + 3, 0.5, 1, 0, null);
  if (typeof d === "string") out.push(`Judge this. ${d}`, "A", "B", "yes", "no", `${d}${d}`);
  if (Array.isArray(d) && d.every((x) => typeof x === "number")) out.push(d.map((x: number) => x * 0.99));
  if (Array.isArray(d) && d.every((x) => typeof x === "string")) out.push(d.slice(0, 1), [...d].reverse());
  return out.filter((v) => JSON.stringify(v) !== JSON.stringify(d));
}

const get = (obj: unknown, key: string): unknown =>
  key.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], obj);

function keys(defaults: Record<string, unknown>): Record<Method, string> | null {
  let spec;
  try {
    spec = parseExperimentSpec(
      {
        name: "k",
        models: [{ name: "a", path: made.dir }],
        data: { train: trainFile, dev: devFile },
        methods: METHODS,
        defaults,
      },
      "k.yaml",
    );
    const p = planExperiment(spec, { out: path.join(work, "plan") });
    return Object.fromEntries(p.cells.map((c) => [c.method, c.key])) as Record<Method, string>;
  } catch (e) {
    if (e instanceof InputError) return null;
    throw e;
  }
}

const schemaDefaults = hardenSchema.parse({ model: "m", data: "d", out: "o" });
const base = keys({})!;
/** an experiment sets these itself (model, data, seed, ...) and refuses them in `defaults` */
const setByExperiment = (k: string, v: unknown) => {
  try {
    const models = [{ name: "a", path: made.dir }];
    parseExperimentSpec(
      { name: "k", models, data: { train: "t", dev: "d" }, defaults: { [k]: v } },
      "k.yaml",
    );
  } catch (e) {
    return /set by the experiment itself|one setting of the whole experiment/.test((e as Error).message);
  }
  return false;
};
/** the settable leaves: every leaf of the schema but those the experiment sets */
const settable = leaves(hardenSchema as unknown as ZodLike).filter(([k]) => !setByExperiment(k, "x"));

test("the settings the experiment lets a user set are the harden schema's, each in a classified section", () => {
  assert.ok(settable.length > 30, `${settable.length} settable leaves`);
  for (const [k] of settable)
    assert.ok(READERS[k.split(".")[0]!], `${k}: which methods read it? (add its section to READERS)`);
});

for (const [k, schema] of settable) {
  test(`${k}: changes the keys of the methods that read it, and only theirs`, () => {
    const d = get(schemaDefaults, k);
    // every valid value but the default: a reader's key changes with the first, a non-reader's with none
    const tried = alternatives(schema, d)
      .map((v) => ({ v, keys: keys({ [k]: v }) }))
      .filter((t): t is { v: unknown; keys: Record<Method, string> } => t.keys !== null);
    assert.ok(
      tried.length > 0,
      `${k}: no valid value other than the default ${JSON.stringify(d)} found to try`,
    );
    const readers = NO_EFFECT.has(k) ? [] : READERS[k.split(".")[0]!]!;
    for (const [i, { v, keys: changed }] of tried.entries())
      for (const m of METHODS) {
        const reads = readers.includes(m);
        if (reads && i > 0) continue;
        assert.equal(
          changed[m] !== base[m],
          reads,
          `${k} = ${JSON.stringify(v)} (default ${JSON.stringify(d)}): the ${m} cell's key ` +
            (reads ? "must change (its method reads it)" : "must not change (its method does not read it)"),
        );
      }
  });
}

// the keys fa47727's planner (before this change: every section in every trained cell's key) gave these inputs
const BEFORE = {
  defaults: {
    goodvibe: "0a5eeda9898333318e0f5bbb97da152c84ec44a20dc1bae2db972eec1b9ece19",
    lora: "8d84d5347977d0a7f83c492ea80dfb7b3f23741cd27f919b4e55d45278cb13c6",
    full: "52c05e045f955b33b63e013346a81cd61fbf0125292d66c9ec77e32c600808a5",
  },
  set: {
    goodvibe: "5b54956e015a135e934bf36c7022d91b02e6e1df3fc5ecf793daec0d15bd21ce",
    lora: "d131aa1a5a318620c7da82e335bebb35c4b85fb74ac12855efe455a5237f1b2f",
    full: "9a17cad00b1342c899443d1faddd03396e49da60c4c101bc93f9528d1b0f3001",
  },
};
const BASE_BEFORE = "bc10b95c939df098bc365cf8af1b44c96f48b33ea01d0e8e109287b1bbb8fbe2";
const SET = {
  identify: { topK: 4, maxPairs: 2 },
  cluster: { threshold: 0.1 },
  lora: { r: 4 },
  train: { epochs: 1, checkpointEvery: 7 },
};

function planOf(defaults: Record<string, unknown>, out: string, methods: Method[] = METHODS) {
  const spec = parseExperimentSpec(
    {
      name: "k",
      models: [{ name: "a", path: made.dir }],
      data: { train: trainFile, dev: devFile },
      methods,
      defaults,
      eval: { maxPrompts: 2, maxNewTokens: 4, batchSize: 2 },
    },
    "k.yaml",
  );
  return planExperiment(spec, { out });
}

test("each trained cell answers to the key the earlier planner gave it (an alias); the base cell keeps its key", () => {
  for (const [name, defaults] of [
    ["defaults", {}],
    ["set", SET],
  ] as const) {
    // the keys pinned above were planned without eval settings: plan as they were
    const spec = parseExperimentSpec(
      {
        name: "k",
        models: [{ name: "a", path: made.dir }],
        data: { train: trainFile, dev: devFile },
        methods: METHODS,
        defaults,
      },
      "k.yaml",
    );
    const cells = planExperiment(spec, { out: path.join(work, "plan") }).cells;
    const byMethod = new Map(cells.map((c) => [c.method, c]));
    assert.equal(byMethod.get("base")!.key, BASE_BEFORE);
    assert.deepEqual(byMethod.get("base")!.aliases, []);
    for (const m of ["goodvibe", "lora", "full"] as const) {
      const c = byMethod.get(m)!;
      assert.notEqual(c.key, BEFORE[name][m], `${name} ${m}: a new key`);
      assert.deepEqual(
        c.aliases.map((a) => [a.key, a.cellFile]),
        [[BEFORE[name][m], path.join(work, "plan", "cells", `${BEFORE[name][m]}.json`)]],
        `${name} ${m}`,
      );
    }
  }
  // LoRA and full fine-tuning with other identification settings: the same key, and each setting's earlier key
  const a = planOf({ identify: { topK: 4 } }, path.join(work, "plan")).cells;
  const b = planOf({ identify: { topK: 8 } }, path.join(work, "plan")).cells;
  for (const m of ["lora", "full"]) {
    const [ca, cb] = [a.find((c) => c.method === m)!, b.find((c) => c.method === m)!];
    assert.equal(ca.key, cb.key, m);
    assert.notEqual(ca.aliases[0]!.key, cb.aliases[0]!.key, m);
  }
});

test("cells finished under their earlier keys are reused, not computed again; an unfinished one continues in its folder", async () => {
  const out = path.join(work, "cache");
  const methods: Method[] = ["goodvibe", "lora", "full"];
  const first = planOf(SET, out, methods);
  assert.equal(new Set(first.cells.map((c) => c.key)).size, 3);
  const r1 = await runExperiment(first, { render: false });
  assert.equal(r1.ran.length, 3);
  // the folder as the earlier code left it: every result and work folder under the cell's earlier key
  for (const c of first.cells) {
    const was = c.aliases[0]!.key;
    fs.renameSync(c.cellFile, c.aliases[0]!.cellFile);
    fs.renameSync(c.workDir, path.join(out, "work", was));
  }
  const again = planOf(SET, out, methods);
  for (const c of again.cells) assert.equal(c.workDir, path.join(out, "work", c.aliases[0]!.key), c.method);
  const computed: string[] = [];
  const r2 = await runExperiment(again, { render: false, onCellStart: (c) => computed.push(c.method) });
  assert.equal(computed.length, 0, `nothing computed again (computed: ${computed.join(", ")})`);
  assert.deepEqual(
    r2.skipped,
    again.cells.map((c) => c.id),
  );
  // the results are the ones computed first (only the ids, the keys' first digits, are new)
  const strip = (cells: { id: string }[]) => cells.map(({ id: _id, ...rest }) => rest);
  assert.deepEqual(strip(r2.results!.cells), strip(r1.results!.cells));
  // each result is filed under its key now too: found even when the earlier key no longer applies
  for (const c of again.cells) assert.ok(fs.existsSync(c.cellFile), c.method);

  // a cell the earlier code began (its work folder) and did not finish is continued there, not begun anew
  const lora = again.cells.find((c) => c.method === "lora")!;
  fs.rmSync(lora.cellFile);
  fs.rmSync(lora.aliases[0]!.cellFile);
  const third = planOf(SET, out, methods).cells.find((c) => c.method === "lora")!;
  assert.equal(third.workDir, path.join(out, "work", lora.aliases[0]!.key));
  assert.equal(third.harden!.runDir, path.join(third.workDir, "run"));
  const lines: string[] = [];
  const log = { ...silentLogger, info: (m: string) => lines.push(m) };
  computed.length = 0;
  const r3 = await runExperiment(planOf(SET, out, methods), {
    render: false,
    log,
    onCellStart: (c) => computed.push(c.method),
  });
  assert.deepEqual(computed, ["lora"]);
  assert.ok(
    lines.includes(`training: reusing ${path.join(third.workDir, "model")}`),
    "its trained model is taken from the earlier folder",
  );
  assert.deepEqual(strip(r3.results!.cells), strip(r1.results!.cells));
  // once a folder of the key itself exists, the key's own folder is the one
  fs.mkdirSync(path.join(out, "work", lora.key));
  assert.equal(
    planOf(SET, out, methods).cells.find((c) => c.method === "lora")!.workDir,
    path.join(out, "work", lora.key),
  );
});
