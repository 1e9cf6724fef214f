/**
 * The configuration resolver (src/config/): one merge with a fixed precedence, unknown keys refused, and every
 * default written once, in the stage's own config file (the schema's defaults are those objects' values).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import {
  defaultHardenConfig,
  defaultRunDir,
  hardenConfigOf,
  hardenSchema,
  resolveHardenConfig,
  stageFileSchema,
  DEFAULT_DTYPE,
  DEFAULT_METHOD,
  DEFAULT_SEED,
} from "../../src/config/harden.js";
import { resolveConfig } from "../../src/config/resolve.js";
import { editDistance, nearestKey } from "../../src/util/suggest.js";
import { DEFAULT_CLUSTER, DEFAULT_IDENTIFY } from "../../src/method/goodvibe/config.js";
import { DEFAULT_TRAIN, DEFAULT_TRAIN_DATA } from "../../src/method/train-config.js";
import { DEFAULT_LORA } from "../../src/method/lora/config.js";
import { DEFAULT_JUDGE_TASK } from "../../src/data/prompts.js";

const PATHS = { model: "m", data: "d", out: "o" };

function yamlFile(text: string): string {
  const dir = scratchDir("gv-config-");
  const file = path.join(dir, "harden.yaml");
  fs.writeFileSync(file, text);
  return file;
}

test("every default of the schema is the stage config's own value (one place per default)", () => {
  const d = hardenSchema.parse(PATHS);
  // each section equals its stage's default object, key for key: nothing is re-typed in the schema
  assert.deepEqual(d.identify, {
    ...DEFAULT_IDENTIFY,
    judgeTask: { instruction: DEFAULT_JUDGE_TASK.instruction, labels: { ...DEFAULT_JUDGE_TASK.labels } },
  });
  assert.deepEqual(d.cluster, DEFAULT_CLUSTER);
  // train.seed has no default of its own: it follows the run's seed (next test)
  const { seed: _trainSeed, ...trainDefaults } = DEFAULT_TRAIN;
  assert.deepEqual(d.train, { ...trainDefaults, ...DEFAULT_TRAIN_DATA });
  assert.deepEqual(d.lora, DEFAULT_LORA);
  assert.equal(d.method, DEFAULT_METHOD);
  assert.equal(d.dtype, DEFAULT_DTYPE);
  assert.equal(d.seed, DEFAULT_SEED);
});

test("train.seed (data order, dropout) follows the run's seed unless set: --seed 1 trains another run than --seed 0", () => {
  assert.equal(resolveHardenConfig(undefined, PATHS).train.seed, DEFAULT_SEED);
  assert.equal(resolveHardenConfig(undefined, { ...PATHS, seed: 3 }).train.seed, 3);
  assert.equal(resolveHardenConfig(undefined, PATHS, ["seed=4"]).train.seed, 4);
  // set, it is its own, from a file, a flag's --set or an experiment cell alike
  assert.equal(resolveHardenConfig(undefined, { ...PATHS, seed: 3 }, ["train.seed=1"]).train.seed, 1);
  const file = yamlFile("seed: 5\ntrain:\n  seed: 2\n");
  assert.equal(resolveHardenConfig(file, PATHS).train.seed, 2);
  assert.equal(resolveHardenConfig(file, PATHS).seed, 5);
  assert.equal(resolveHardenConfig(yamlFile("seed: 5\n"), PATHS).train.seed, 5);
  assert.equal(hardenConfigOf({ ...PATHS, seed: 6 }, "cell").train.seed, 6);
  assert.equal(defaultHardenConfig(PATHS).train.seed, DEFAULT_SEED);
  assert.equal(defaultHardenConfig({ ...PATHS, seed: 8 }).train.seed, 8);
});

test("the library's defaults are the CLI's: defaultHardenConfig equals the resolver with nothing set", () => {
  const lib = defaultHardenConfig(PATHS);
  const cli = resolveHardenConfig(undefined, PATHS);
  assert.deepEqual(lib, cli);
  assert.equal(lib.runDir, defaultRunDir("o"));
  assert.equal(path.basename(lib.runDir), ".o.run");
  // a whole section given to defaultHardenConfig replaces the default's (the library's documented contract)
  const one = defaultHardenConfig({ ...PATHS, train: { ...lib.train, epochs: 1 } });
  assert.equal(one.train.epochs, 1);
  assert.equal(one.train.lr, DEFAULT_TRAIN.lr);
});

test("precedence: default < config file < explicit flag < --set", () => {
  const file = yamlFile("identify:\n  topK: 7\ncluster:\n  threshold: 0.2\n  kMax: 5\ntrain:\n  epochs: 3\n");
  // the file over the defaults
  const f = resolveHardenConfig(file, PATHS);
  assert.equal(f.identify.topK, 7);
  assert.equal(f.cluster.threshold, 0.2);
  assert.equal(f.cluster.nInit, DEFAULT_CLUSTER.nInit, "keys the file does not name keep their default");
  // a flag over the file
  const g = resolveHardenConfig(file, { ...PATHS, "identify.topK": 9, "train.epochs": undefined });
  assert.equal(g.identify.topK, 9);
  assert.equal(g.train.epochs, 3, "a flag not given (undefined) leaves the file's value");
  // --set over the flag and the file (the CLI's --help: "flags override it; --set overrides both")
  const h = resolveHardenConfig(file, { ...PATHS, "identify.topK": 9 }, [
    "identify.topK=11",
    "cluster.kMax=6",
  ]);
  assert.equal(h.identify.topK, 11);
  assert.equal(h.cluster.kMax, 6);
  assert.equal(h.cluster.threshold, 0.2);
  // overrides replace single leaves, not whole sections
  assert.equal(h.identify.mode, DEFAULT_IDENTIFY.mode);
});

test("an unknown key is named with the nearest known key at its level, or alone when none is near", () => {
  // misspelling -> the suggestion, by hand: case only; a letter dropped, added, swapped; a wrong case one level up
  const cases: [string, string | null][] = [
    ["identify.topk=5", "identify.topK"],
    ["cluster.thresold=0.2", "cluster.threshold"],
    ["train.epoch=2", "train.epochs"],
    ["train.lrr=1e-4", "train.lr"],
    ["cluster.kmxa=4", "cluster.kMax"],
    ["lora.alhpa=8", "lora.alpha"],
    ["Identify.topK=5", "identify"],
    // nothing near: no suggestion rather than a wild one
    ["cluster.bogus=1", null],
    ["train.learningRate=1e-4", null],
    ["nope.key=1", null],
  ];
  for (const [set, near] of cases) {
    const key = set.slice(0, set.indexOf("=")).split(".");
    // the unknown key is the first part that is not a setting: "nope" of nope.key, "Identify" of Identify.topK
    const unknown = near === "identify" || (near === null && key[0] === "nope") ? key[0]! : key.join(".");
    const want = `unknown key "${unknown}"${near === null ? "" : ` (did you mean "${near}"?)`}`;
    assert.throws(
      () => resolveHardenConfig(undefined, PATHS, [set]),
      (e: unknown) => e instanceof InputError && e.message.split("\n").includes(`  ${want}`),
      `${set}: expected the line ${want}`,
    );
  }
  // a YAML config file (harden -c) is told the same way, one line per unknown key
  assert.throws(
    () => resolveHardenConfig(yamlFile("identify:\n  topk: 7\n  mdoe: x\ntrian:\n  lr: 1\n"), PATHS),
    (e: unknown) =>
      e instanceof InputError &&
      [
        'unknown key "identify.topk" (did you mean "identify.topK"?)',
        'unknown key "identify.mdoe" (did you mean "identify.mode"?)',
        'unknown key "trian" (did you mean "train"?)',
      ].every((l) => e.message.split("\n").includes(`  ${l}`)),
  );
});

test("editDistance and nearestKey: textbook distances; a case-insensitive match wins over a closer-looking one", () => {
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(editDistance("flaw", "lawn"), 2);
  assert.equal(editDistance("ab", "ba"), 1); // a swap of neighbours is one edit
  assert.equal(editDistance("ca", "abc"), 3); // optimal string alignment, not full Damerau (which gives 2)
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("TopK", "topk"), 0);
  assert.equal(nearestKey("topk", ["top", "topK"]), "topK");
  assert.equal(nearestKey("ab", ["cd"]), undefined);
  assert.equal(nearestKey("threshhold", ["threshold", "seed"]), "threshold");
  assert.equal(nearestKey("x", []), undefined);
});

test("unknown keys are refused, each named, from a file, a --set and an experiment cell alike", () => {
  const file = yamlFile("identify:\n  topk: 7\n");
  assert.throws(
    () => resolveHardenConfig(file, PATHS),
    (e: unknown) => e instanceof InputError && /identify/.test(e.message) && /topk/.test(e.message),
  );
  assert.throws(
    () => resolveHardenConfig(undefined, PATHS, ["cluster.treshold=0.1"]),
    (e: unknown) => e instanceof InputError && /cluster/.test(e.message) && /treshold/.test(e.message),
  );
  assert.throws(
    () => resolveHardenConfig(undefined, PATHS, ["bogus=1"]),
    (e: unknown) => e instanceof InputError && /bogus/.test(e.message),
  );
  assert.throws(
    () => hardenConfigOf({ ...PATHS, train: { epoch: 2 } }, "exp.yaml: defaults: invalid harden setting"),
    (e: unknown) =>
      e instanceof InputError &&
      e.message ===
        'exp.yaml: defaults: invalid harden setting: unknown key "train.epoch" (did you mean "train.epochs"?)',
  );
  // a wrong type names the key and the file
  assert.throws(
    () => resolveConfig(hardenSchema, yamlFile("train:\n  lr: fast\n"), PATHS),
    (e: unknown) => e instanceof InputError && /train\.lr/.test(e.message) && /harden\.yaml/.test(e.message),
  );
});

test("a stage command reads the same file without the run's paths (goodvibe cluster -c harden.yaml)", () => {
  const file = yamlFile("model: ./m\ndata: ./d.jsonl\nout: ./o\ncluster:\n  threshold: 0.3\n");
  const c = resolveConfig(stageFileSchema, file, { "cluster.kMax": 4 });
  assert.equal(c.cluster.threshold, 0.3);
  assert.equal(c.cluster.kMax, 4);
  const bare = resolveConfig(stageFileSchema, undefined, {});
  assert.deepEqual(bare.cluster, DEFAULT_CLUSTER);
  assert.throws(() => resolveConfig(stageFileSchema, undefined, {}, ["cluster.k=3"]), InputError);
});

test("a bad key given by --set is named as a --set, not as the file's (goodvibe harden -c harden.yaml --set …)", () => {
  const file = yamlFile("train:\n  lr: 1.0e-4\n");
  assert.throws(
    () => resolveConfig(hardenSchema, file, PATHS, ["train.epochs=1", "cluster.bogus=1"]),
    (e: unknown) =>
      e instanceof InputError &&
      e.message.startsWith(`invalid configuration (${file}, --set train.epochs=1, --set cluster.bogus=1):`) &&
      /unknown key "cluster\.bogus"$/m.test(e.message),
  );
  assert.throws(
    () => resolveConfig(hardenSchema, undefined, PATHS, ["cluster.bogus=1"]),
    (e: unknown) =>
      e instanceof InputError && e.message.startsWith("invalid configuration (--set cluster.bogus=1):"),
  );
});

test("the run folder: given by the file or a flag, else the command's default", () => {
  const file = yamlFile("runDir: /tmp/somewhere\n");
  assert.equal(resolveHardenConfig(file, PATHS).runDir, "/tmp/somewhere");
  assert.equal(resolveHardenConfig(undefined, PATHS, [], { runDirFor: (o) => `${o}.run` }).runDir, "o.run");
  assert.equal(
    resolveHardenConfig(undefined, { ...PATHS, runDir: "r" }, [], { runDirFor: () => "x" }).runDir,
    "r",
  );
});
