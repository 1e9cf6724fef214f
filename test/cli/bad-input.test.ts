/**
 * Bad input as users really give it: each run must exit 2, say on stderr what is wrong and where (file, row,
 * field, or how to fix it), and leave nothing behind: no output folder and no run folder beside it.
 * Every case runs in its own empty folder with a relative --out, so "nothing behind" is "no new entry".
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { makeCliFixture, runCli, showRun, type CliResult } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 2 });
after(() => fx.cleanup());

const TINY = ["--top-k", "4", "--epochs", "1", "--set", "identify.maxPairs=4", "--set", "train.maxPairs=4"];

/** A fresh empty folder to run one case in. */
function caseDir(name: string): string {
  const dir = path.join(fx.work, name);
  fs.mkdirSync(dir);
  return dir;
}

/** Exit 2, an `error:` line on stderr matching every pattern, and no files but the given inputs in `cwd`. */
function assertRefused(r: CliResult, cwd: string, inputs: string[], patterns: RegExp[]): void {
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, /^error: /m, showRun(r));
  for (const p of patterns) assert.match(r.stderr, p);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, "a stack trace reached the user");
  const left = fs.readdirSync(cwd).filter((f) => !inputs.includes(f));
  assert.ok(!left.includes("out"), `the output folder was left behind: ${left.join(", ")}`);
  assert.deepEqual(left, [], `left behind: ${left.join(", ")}`);
}

test("a model folder that does not exist: says so, names it", async () => {
  const cwd = caseDir("missing-model");
  const r = await runCli(["harden", "-m", "no-such-model", "-d", fx.pairsFile, "-o", "out", ...TINY], {
    cwd,
  });
  assertRefused(r, cwd, [], [/no-such-model/, /does not exist|not found|no such/i]);
});

test("a tokenizer without a chat template: harden and identify (whole or a shard) say so, and leave no run folder", async () => {
  // harden added "(train.maxLength; raise it or leave the pair out)" to it; identify left its run folder (the
  // model's hash, the stage's inputs) behind; both found by an audit of README's commands
  const cwd = caseDir("no-chat-template");
  const model = path.join(cwd, "model");
  fs.cpSync(fx.model.dir, model, { recursive: true });
  const tc = path.join(model, "tokenizer_config.json");
  const cfg = JSON.parse(fs.readFileSync(tc, "utf8")) as Record<string, unknown>;
  delete cfg.chat_template;
  fs.writeFileSync(tc, JSON.stringify(cfg));
  fs.rmSync(path.join(model, "chat_template.jinja"), { force: true });
  for (const args of [
    ["harden", "-m", "model", "-d", fx.pairsFile, "-o", "out", ...TINY],
    ["identify", "-m", "model", "-d", fx.pairsFile, "-o", "n.json", "--top-k", "4"],
    ["identify", "-m", "model", "-d", fx.pairsFile, "-o", "shard-1", "--shard", "1/2", "--top-k", "4"],
  ]) {
    const r = await runCli(args, { cwd });
    assertRefused(r, cwd, ["model"], [/model: the tokenizer has no chat template/]);
    assert.doesNotMatch(r.stderr, /maxLength/, showRun(r));
  }
});

test("paths in a -c config that do not exist from the current folder: named as the file's keys, with the folder they were taken from", async () => {
  // written relative to the config file's folder, run from another one: the paths are the current folder's
  const cwd = caseDir("config-paths");
  const cfgDir = path.join(cwd, "configs");
  fs.mkdirSync(cfgDir);
  const cfg = path.join(cfgDir, "h.yaml");
  fs.writeFileSync(cfg, "model: ../model-x\ndata: ../no-pairs.jsonl\nout: ../out\n");
  const r = await runCli(["harden", "-c", "configs/h.yaml", ...TINY], { cwd });
  assertRefused(
    r,
    cwd,
    ["configs"],
    [
      /model \.\.\/model-x \(in configs\/h\.yaml; relative to the current folder [^)]*config-paths\): no such folder/,
    ],
  );
  // the model found, the data not: the same for data; a flag is named as the flag
  fs.writeFileSync(cfg, `model: ${fx.model.dir}\ndata: ../no-pairs.jsonl\nout: ../out\n`);
  const d = await runCli(["identify", "-c", "configs/h.yaml", "-o", "n.json"], { cwd });
  assertRefused(d, cwd, ["configs"], [/data \.\.\/no-pairs\.jsonl \(in configs\/h\.yaml; relative/]);
  const f = await runCli(["harden", "-c", "configs/h.yaml", "-d", "gone.jsonl", ...TINY], { cwd });
  assertRefused(f, cwd, ["configs"], [/--data gone\.jsonl \(relative to the current folder/]);
});

test("a folder with only pytorch_model.bin: refused, with how to convert it to safetensors", async () => {
  const cwd = caseDir("pickle-only");
  const model = path.join(cwd, "pt-model");
  fs.mkdirSync(model);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(fx.model.dir, f), path.join(model, f));
  fs.writeFileSync(path.join(model, "pytorch_model.bin"), Buffer.from("PK\x03\x04 not really a pickle"));
  const r = await runCli(["harden", "-m", "pt-model", "-d", fx.pairsFile, "-o", "out", ...TINY], { cwd });
  assertRefused(r, cwd, ["pt-model"], [/pytorch_model\.bin/, /safetensors/, /save_pretrained|save_file/]);
});

test("a pairs file with a broken row: names the file and the row", async () => {
  const cwd = caseDir("broken-row");
  const lines = fs.readFileSync(fx.pairsFile, "utf8").trim().split("\n");
  lines[2] = lines[2]!.slice(0, 40); // row 3 cut off mid-object
  fs.writeFileSync(path.join(cwd, "pairs.jsonl"), lines.join("\n") + "\n");
  const r = await runCli(["harden", "-m", fx.model.dir, "-d", "pairs.jsonl", "-o", "out", ...TINY], { cwd });
  assertRefused(r, cwd, ["pairs.jsonl"], [/pairs\.jsonl row 3\b/]);
});

test("a pairs row without a required field: names the row and the field", async () => {
  const cwd = caseDir("missing-field");
  const rows = fx.pairs.map((p) => ({
    id: p.id,
    lang: p.lang,
    question: p.question,
    chosen: p.chosen,
    rejected: p.rejected,
  }));
  delete (rows[4] as Partial<(typeof rows)[number]>).rejected;
  fs.writeFileSync(path.join(cwd, "pairs.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const r = await runCli(["harden", "-m", fx.model.dir, "-d", "pairs.jsonl", "-o", "out", ...TINY], { cwd });
  assertRefused(r, cwd, ["pairs.jsonl"], [/row 5\b/, /rejected/]);
});

test("eval with a bad benchmark or --code file: refused before any work, naming the file, the row and the field", async () => {
  // the benchmarks run after the safety evaluation's generation (hours on a real model): their files are read first
  const cases: [string, string, string, RegExp[]][] = [
    ["--code", "code.jsonl", '{"code":"int x;"}\n{"text":"int y;"}\n', [/code\.jsonl row 2 field "code"/]],
    [
      "--arc",
      "arc.jsonl",
      '{"id":"a","question":"q","choices":{"text":["x","y"],"label":["A","B"]},"answerKey":"C"}\n',
      [/arc\.jsonl row 1 field "answerKey"/],
    ],
    [
      "--gsm8k",
      "gsm.jsonl",
      '{"question":"1+1?","answer":"2\\n#### 2"}\n{"question":"q"}\n',
      [/gsm\.jsonl row 2 field "answer"/],
    ],
  ];
  for (const [flag, file, text, patterns] of cases) {
    const cwd = caseDir(`eval-bad-${flag.slice(2)}`);
    fs.copyFileSync(fx.pairsFile, path.join(cwd, "dev.jsonl"));
    fs.writeFileSync(path.join(cwd, file), text);
    const r = await runCli(["eval", "-m", fx.model.dir, "-d", "dev.jsonl", flag, file, "--prompts", "2"], {
      cwd,
    });
    assertRefused(r, cwd, ["dev.jsonl", file], patterns);
    // no preference scored, no answer generated before the refusal
    assert.doesNotMatch(r.stderr, /preference|generat/i, `${flag}: work before the refusal\n${showRun(r)}`);
  }
});

test("eval with a --base that is no model folder: refused before any work, naming it", async () => {
  // found only after the model's whole evaluation before (an audit of README's commands)
  const cases: [string, (dir: string) => void, RegExp][] = [
    ["missing", () => {}, /nosuch: model folder does not exist/],
    [
      "no tokenizer",
      (dir) => {
        for (const f of ["config.json", "model.safetensors"])
          fs.copyFileSync(path.join(fx.model.dir, f), path.join(dir, f));
      },
      /nosuch: no tokenizer\.json/,
    ],
    [
      "no weights",
      (dir) => {
        for (const f of ["config.json", "tokenizer.json"])
          fs.copyFileSync(path.join(fx.model.dir, f), path.join(dir, f));
      },
      /nosuch/,
    ],
  ];
  for (const [name, make, pattern] of cases) {
    const cwd = caseDir(`eval-base-${name.replace(/ /g, "-")}`);
    fs.copyFileSync(fx.pairsFile, path.join(cwd, "dev.jsonl"));
    const base = path.join(cwd, "nosuch");
    if (name !== "missing") {
      fs.mkdirSync(base);
      make(base);
    }
    const r = await runCli(
      ["eval", "-m", fx.model.dir, "-d", "dev.jsonl", "--base", "nosuch", "--prompts", "2"],
      {
        cwd,
      },
    );
    assertRefused(r, cwd, ["dev.jsonl", "nosuch"], [pattern]);
    assert.doesNotMatch(r.stderr, /preference|generat/i, `${name}: work before the refusal\n${showRun(r)}`);
  }
});

test("experiment run with a bad benchmark file: refused before the judge and the first cell, nothing written", async () => {
  const cwd = caseDir("experiment-bad-arc");
  fs.copyFileSync(fx.pairsFile, path.join(cwd, "pairs.jsonl"));
  fs.writeFileSync(
    path.join(cwd, "arc.jsonl"),
    '{"id":"a","question":"q","choices":{"text":["x","y"],"label":["A","B"]},"answerKey":"C"}\n',
  );
  fs.writeFileSync(
    path.join(cwd, "e.yaml"),
    [
      "name: bad-arc",
      "models: [{ name: m, path: " + JSON.stringify(fx.model.dir) + " }]",
      "data: { train: pairs.jsonl, dev: pairs.jsonl }",
      "eval: { maxPrompts: 2, maxNewTokens: 4, utility: { arc: arc.jsonl } }",
      "methods: [base]",
      "seeds: [0]",
      "out: runs/bad-arc",
    ].join("\n") + "\n",
  );
  const r = await runCli(["experiment", "run", "e.yaml"], { cwd });
  assertRefused(r, cwd, ["pairs.jsonl", "arc.jsonl", "e.yaml"], [/arc\.jsonl row 1 field "answerKey"/]);
  assert.doesNotMatch(r.stderr, /preference|generat|running/i, `work before the refusal\n${showRun(r)}`);
});

test("an empty pairs file: says it is empty", async () => {
  const cwd = caseDir("empty");
  fs.writeFileSync(path.join(cwd, "pairs.jsonl"), "");
  const r = await runCli(["harden", "-m", fx.model.dir, "-d", "pairs.jsonl", "-o", "out", ...TINY], { cwd });
  assertRefused(r, cwd, ["pairs.jsonl"], [/pairs\.jsonl/, /empty|no rows/i]);
});

test("two languages asked, data has one: names the missing language", async () => {
  const cwd = caseDir("one-language");
  writeCorpusJsonl(path.join(cwd, "cpp.jsonl"), fx.model.pairs.filter((p) => p.lang === "cpp").slice(0, 6));
  const r = await runCli(
    ["harden", "-m", fx.model.dir, "-d", "cpp.jsonl", "-o", "out", "--languages", "cpp,java", ...TINY],
    { cwd },
  );
  assertRefused(r, cwd, ["cpp.jsonl"], [/java/i, /missing/i]);
});

test("--set train.lr=-1: names train.lr", async () => {
  const cwd = caseDir("negative-lr");
  const r = await runCli(
    ["harden", "-m", fx.model.dir, "-d", fx.pairsFile, "-o", "out", ...TINY, "--set", "train.lr=-1"],
    {
      cwd,
    },
  );
  assertRefused(r, cwd, [], [/train\.lr/]);
});

test("train --clusters with a cluster map made from another model's neuron map: refused", async () => {
  const cwd = caseDir("foreign-clusters");
  const other = makeTinyChatModel({ seed: 5, hidden: 32, layers: 1 });
  try {
    const id = await runCli(
      [
        "identify",
        "-m",
        other.dir,
        "-d",
        fx.pairsFile,
        "-o",
        "other-neurons.json",
        "--top-k",
        "4",
        "--set",
        "identify.maxPairs=4",
      ],
      { cwd },
    );
    assert.equal(id.code, 0, showRun(id));
    const cl = await runCli(["cluster", "-n", "other-neurons.json", "-o", "other-clusters.json"], { cwd });
    assert.equal(cl.code, 0, showRun(cl));
    const inputs = fs.readdirSync(cwd);

    const r = await runCli(
      [
        "train",
        "-m",
        fx.model.dir,
        "-d",
        fx.pairsFile,
        "--clusters",
        "other-clusters.json",
        "-o",
        "out",
        ...TINY.slice(2), // train selects no neurons: no --top-k
      ],
      { cwd },
    );
    assertRefused(r, cwd, inputs, [/other-clusters\.json/, /another model|other model|does not fit/i]);
  } finally {
    fs.rmSync(other.dir, { recursive: true, force: true });
  }
});
