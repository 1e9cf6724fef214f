/**
 * `--set key=value` forms a user meets (null, an empty value, a word for a number, a non-integer, a key below a
 * number, an unknown key, checkpointing's true/false/"auto"), across harden, identify, train, judge train and
 * experiment plan/run: every refusal is a usage error (exit 2) that names the key, what it expects and the --set it
 * came from. Nothing is loaded: the settings are checked before any model or data is read.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { runCli, showRun } from "./cli-helpers.js";

const work = scratchDir("gv-set-values-");
const stage = (cmd: string[]) => [...cmd, "-m", path.join(work, "m"), "-d", path.join(work, "d.jsonl")];
const NULL_HINT = /received null \(an empty value, null or ~, in the file or a --set, reads as null/;

test("harden, identify, train, judge train: each bad --set value is named with its key and what it expects", async () => {
  const cases: [string[], string, RegExp[]][] = [
    [
      stage(["harden", "-o", path.join(work, "o")]),
      "identify.topK=null",
      [/identify\.topK: .*expected number/, NULL_HINT],
    ],
    [stage(["harden", "-o", path.join(work, "o")]), "train.lr=", [/train\.lr: .*expected number/, NULL_HINT]],
    [
      stage(["harden", "-o", path.join(work, "o")]),
      "cluster.threshold=~",
      [/cluster\.threshold: .*expected number/, NULL_HINT],
    ],
    [
      stage(["harden", "-o", path.join(work, "o")]),
      "train.lr=fast",
      [/train\.lr: .*expected number, received string/],
    ],
    [
      stage(["harden", "-o", path.join(work, "o")]),
      "identify.topK=1.5",
      [/identify\.topK: .*expected int, received number/],
    ],
    [
      stage(["harden", "-o", path.join(work, "o")]),
      "train.lr.x=1",
      [/train\.lr: .*expected number, received object/],
    ],
    [stage(["harden", "-o", path.join(work, "o")]), "nope.key=1", [/unknown key "nope"$/m]],
    [
      stage(["harden", "-o", path.join(work, "o")]),
      "train.gradientCheckpointing=null",
      [/train\.gradientCheckpointing: expected true, false or "auto", received null/],
    ],
    [
      stage(["identify", "-o", path.join(work, "n.json")]),
      "identify.gradientCheckpointing=maybe",
      [/identify\.gradientCheckpointing: expected true, false or "auto", received "maybe"/],
    ],
    [stage(["identify", "-o", path.join(work, "n.json")]), "identify.topK=", [/identify\.topK: /, NULL_HINT]],
    [stage(["train", "-o", path.join(work, "t")]), "train.epochs=null", [/train\.epochs: /, NULL_HINT]],
    [
      [
        "judge",
        "train",
        "-m",
        path.join(work, "m"),
        "-d",
        path.join(work, "d.jsonl"),
        "-o",
        path.join(work, "j"),
      ],
      "lr=",
      [/lr: .*expected number/, NULL_HINT],
    ],
  ];
  for (const [args, set, want] of cases) {
    const r = await runCli([...args, "--set", set]);
    assert.equal(r.code, 2, `${set}: ${showRun(r)}`);
    assert.ok(r.stderr.includes(`--set ${set}`), `${set}: the --set is named\n${r.stderr}`);
    for (const w of want) assert.match(r.stderr, w, set);
  }
  // the accepted forms of checkpointing reach the settings (the run then stops at the missing model folder)
  for (const v of ["true", "false", "auto"]) {
    const r = await runCli([
      ...stage(["harden", "-o", path.join(work, "o")]),
      "--set",
      `train.gradientCheckpointing=${v}`,
    ]);
    assert.doesNotMatch(r.stderr, /gradientCheckpointing/, `${v}: ${showRun(r)}`);
  }
  // malformed --set forms
  for (const [set, want] of [
    ["identify.topK", /--set expects key=value, got "identify\.topK"/],
    ["=1", /--set expects key=value, got "=1"/],
    ["a..b=1", /key "a\.\.b" has an empty part/],
  ] as const) {
    const r = await runCli([...stage(["harden", "-o", path.join(work, "o")]), "--set", set]);
    assert.equal(r.code, 2, showRun(r));
    assert.match(r.stderr, want);
  }
  // eval takes no --set: commander says so and suggests --seed
  const e = await runCli([...stage(["eval"]), "--set", "a=1"]);
  assert.equal(e.code, 2, showRun(e));
  assert.match(e.stderr, /unknown option '--set'/);
});

test("a --set key of a section the command does not read is said to be ignored; the help's example is the command's own", async () => {
  // (the run then stops at the missing model folder: the warning comes before any work)
  for (const [cmd, set, warned] of [
    [["identify", "-o", path.join(work, "n.json")], "train.gradAccum=8", true],
    [["train", "-o", path.join(work, "t"), "--method", "lora"], "identify.topK=3", true],
    [["identify", "-o", path.join(work, "n.json")], "identify.topK=3", false],
    [["harden", "-o", path.join(work, "o")], "train.gradAccum=8", false],
    [["identify", "-o", path.join(work, "n.json")], "seed=3", false],
  ] as const) {
    const r = await runCli([...stage([...cmd]), "--set", set]);
    const key = set.split("=")[0]!;
    if (warned)
      assert.match(
        r.stderr,
        new RegExp(
          `warning: --set ${key.replace(".", "\\.")}: \`${cmd[0]}\` reads only .* so this key is ignored`,
        ),
        showRun(r),
      );
    else assert.doesNotMatch(r.stderr, /is ignored/, showRun(r));
  }
  for (const [cmd, example] of [
    ["identify", "identify.batchSize=8"],
    ["train", "train.gradAccum=8"],
    ["harden", "identify.batchSize=8"],
  ] as const) {
    const h = await runCli([cmd, "--help"]);
    assert.match(h.stdout.replace(/\s+/g, " "), new RegExp(`e\\.g\\. --set ${example.replace(".", "\\.")}`));
  }
});

test("experiment plan and run: a bad --set value names the file and the --set it came from", async () => {
  const file = path.join(work, "exp.yaml");
  fs.writeFileSync(
    file,
    [
      "name: sets",
      "models: [{name: m, path: ./missing-model}]",
      "data: {train: ./t.jsonl, dev: ./d.jsonl}",
      "methods: [base, goodvibe]",
      "seeds: [0]",
      "",
    ].join("\n"),
  );
  for (const cmd of ["plan", "run"]) {
    for (const [set, want] of [
      ["seeds=", /seeds: .*expected array, received null \(an empty value/],
      ["eval.maxPrompts=null", /eval\.maxPrompts: .*expected number, received null \(an empty value/],
      ["eval.seed=abc", /eval\.seed: .*expected number, received string/],
    ] as const) {
      const r = await runCli(["experiment", cmd, file, "--set", set, "-o", path.join(work, `out-${cmd}`)]);
      assert.equal(r.code, 2, showRun(r));
      assert.ok(r.stderr.includes(`${file} with --set ${set}: invalid experiment file`), r.stderr);
      assert.match(r.stderr, want);
    }
  }
  // a harden setting of the defaults: checked when the cells are planned (plan checks before it lists what is
  // missing), and named as the --set's
  const r = await runCli(["experiment", "plan", file, "--set", "defaults.train.gradientCheckpointing=maybe"]);
  assert.equal(r.code, 2, showRun(r));
  assert.ok(
    r.stderr.includes(
      `${file} with --set defaults.train.gradientCheckpointing=maybe: defaults: invalid harden setting: ` +
        `train.gradientCheckpointing: expected true, false or "auto", received "maybe"`,
    ),
    r.stderr,
  );
  const lr = await runCli(["experiment", "plan", file, "--set", "defaults.train.lr="]);
  assert.equal(lr.code, 2, showRun(lr));
  assert.match(
    lr.stderr,
    /with --set defaults\.train\.lr=: defaults: invalid harden setting: train\.lr: .*received null \(an empty value/,
  );
});
