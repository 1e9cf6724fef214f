/**
 * The experiment file and its expansion into cells, without any model: labels, order, which settings each cell
 * gets, and errors that name the file and the field.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { InputError } from "../../src/errors.js";
import { loadExperimentSpec, nestSettings, parseExperimentSpec } from "../../src/experiment/spec.js";
import { canonicalJson } from "../../src/io/hash.js";
import { expandCells } from "../../src/experiment/plan.js";

const BASE = {
  name: "t",
  models: [{ name: "m", path: "/nowhere/m" }],
  data: { train: "/nowhere/train.jsonl", dev: "/nowhere/dev.jsonl" },
};

test("cells: base once per model, per seed each method, then per seed each method's ablations and grid values", () => {
  const spec = parseExperimentSpec(
    {
      ...BASE,
      methods: ["base", "goodvibe", "lora"],
      seeds: [3, 4],
      defaults: { train: { epochs: 1, lr: 0.001 }, "identify.topK": 7 },
      ablations: [
        { name: "no-cluster", set: { "cluster.disabled": true } },
        { name: "lora-r4", method: "lora", set: { lora: { r: 4 } } },
      ],
      grids: [{ name: "threshold", key: "cluster.threshold", values: [0.02, 0.1] }],
    },
    "t.yaml",
  );
  const cells = expandCells(spec);
  const names = cells.map((c) => `${c.method}|${c.ablation ?? ""}|${c.seed}`);
  const variants = (s: number) => [
    `goodvibe|no-cluster|${s}`,
    `goodvibe|threshold=0.02|${s}`,
    `goodvibe|threshold=0.1|${s}`,
    `lora|lora-r4|${s}`,
  ];
  assert.deepEqual(names, [
    "base||3",
    "goodvibe||3",
    "lora||3",
    "goodvibe||4",
    "lora||4",
    ...variants(3),
    ...variants(4),
  ]);

  assert.equal(cells[0]!.harden, null);
  const byName = new Map(cells.map((c) => [`${c.method}|${c.ablation ?? ""}|${c.seed}`, c.harden!]));
  // defaults reach every trained cell, nested or dotted
  for (const h of [...byName.values()].filter(Boolean)) {
    assert.equal(h.train.epochs, 1);
    assert.equal(h.train.lr, 0.001);
    assert.equal(h.identify.topK, 7);
  }
  // one leaf changed, its siblings keep the defaults
  assert.equal(byName.get("goodvibe|threshold=0.1|4")!.cluster.threshold, 0.1);
  assert.equal(byName.get("goodvibe|threshold=0.1|4")!.cluster.kMax, 8);
  assert.equal(byName.get("goodvibe||4")!.cluster.threshold, 0.05);
  assert.equal(byName.get("goodvibe|no-cluster|3")!.cluster.disabled, true);
  assert.equal(byName.get("goodvibe||3")!.cluster.disabled, false);
  assert.equal(byName.get("lora|lora-r4|3")!.lora.r, 4);
  assert.equal(byName.get("lora||3")!.lora.r, 8);
  // the seed axis sets the recipe seed and the training seed
  assert.equal(byName.get("lora||4")!.seed, 4);
  assert.equal(byName.get("lora||4")!.train.seed, 4);
  assert.equal(byName.get("lora||4")!.method, "lora");
});

test("no base in methods: no base cell; two models: each its own block", () => {
  const spec = parseExperimentSpec(
    {
      ...BASE,
      models: [
        { name: "a", path: "/a" },
        { name: "b", path: "/b" },
      ],
      methods: ["full"],
    },
    "t.yaml",
  );
  assert.deepEqual(
    expandCells(spec).map((c) => `${c.model.name}:${c.method}`),
    ["a:full", "b:full"],
  );
});

test("dotted and nested settings mean the same", () => {
  assert.deepEqual(nestSettings({ "train.lr": 1, cluster: { threshold: 2 } }), {
    train: { lr: 1 },
    cluster: { threshold: 2 },
  });
  assert.equal(
    canonicalJson({ b: 1, a: { d: 2, c: [3, { f: 1, e: 0 }] } }),
    canonicalJson({ a: { c: [3, { e: 0, f: 1 }], d: 2 }, b: 1 }),
  );
  assert.notEqual(canonicalJson({ a: [1, 2] }), canonicalJson({ a: [2, 1] }));
});

function throwsInput(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    for (const p of parts) {
      if (typeof p === "string") assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
      else assert.match(e.message, p);
    }
    return true;
  });
}

test("errors name the file and the field", () => {
  throwsInput(() => parseExperimentSpec({ ...BASE, models: [] }, "x.yaml"), "x.yaml", "models");
  throwsInput(() => parseExperimentSpec({ ...BASE, methods: ["goodvibe", "dpo"] }, "x.yaml"), "methods.1");
  throwsInput(() => parseExperimentSpec({ ...BASE, seed: [0] }, "x.yaml"), "seed");
  throwsInput(() => parseExperimentSpec({ ...BASE, name: "a/b" }, "x.yaml"), "name");
  throwsInput(() => parseExperimentSpec({ ...BASE, seeds: [0, 0] }, "x.yaml"), 'seed "0" appears twice');
  throwsInput(
    () =>
      parseExperimentSpec(
        {
          ...BASE,
          methods: ["base", "lora"],
          ablations: [{ name: "nc", set: { "cluster.disabled": true } }],
        },
        "x.yaml",
      ),
    "ablations[0] (nc)",
    "goodvibe",
  );
  throwsInput(
    () =>
      parseExperimentSpec(
        {
          ...BASE,
          grids: [{ name: "threshold", key: "cluster.threshold", values: [0.1] }],
          ablations: [{ name: "threshold=0.1", set: {} }],
        },
        "x.yaml",
      ),
    'x.yaml: grids[0] (threshold).values[0]: cell label "threshold=0.1" appears twice (first at ablations[0].name)',
  );
  // a grid value given twice (0.1 and 0.10 are one number), and one model folder under two names
  throwsInput(
    () =>
      parseExperimentSpec(
        { ...BASE, grids: [{ name: "threshold", key: "cluster.threshold", values: [0.1, 0.2, 0.1] }] },
        "x.yaml",
      ),
    'x.yaml: grids[0] (threshold).values[2]: cell label "threshold=0.1" appears twice (first at grids[0] (threshold).values[0])',
  );
  throwsInput(
    () =>
      parseExperimentSpec(
        { ...BASE, models: [BASE.models[0], { name: "copy", path: "/nowhere/../nowhere/m" }] },
        "x.yaml",
      ),
    'x.yaml: models[1].path (copy): model folder "/nowhere/m" appears twice (first at models[0].path (m))',
  );
  throwsInput(() => parseExperimentSpec({ ...BASE, defaults: { seed: 3 } }, "x.yaml"), "defaults.seed");
  // harden keys are checked when the cells are made, with the cell named
  const typo = parseExperimentSpec({ ...BASE, defaults: { train: { epoch: 2 } } }, "x.yaml");
  throwsInput(
    () => expandCells(typo, "x.yaml"),
    "x.yaml",
    "defaults",
    'unknown key "train.epoch" (did you mean "train.epochs"?)',
  );
  // the experiment file's own keys get the nearest known key at their level too, list items included
  throwsInput(
    () => parseExperimentSpec({ ...BASE, seedz: [1], models: [{ ...BASE.models[0], nmae: "x" }] }, "x.yaml"),
    'unknown key "seedz" (did you mean "seeds"?)',
    /unknown key "models\.0\.nmae" \(did you mean "models\.0\.name"\?\)/,
  );
  const badGrid = parseExperimentSpec(
    { ...BASE, grids: [{ name: "topk", key: "identify.topK", values: [0] }] },
    "x.yaml",
  );
  throwsInput(() => expandCells(badGrid, "x.yaml"), "grids[0] (topk=0)", "identify.topK");
});

test("a misspelt option names the field, the options and the nearest one, in a one-or-many field too", () => {
  // a plain enum list
  throwsInput(
    () => parseExperimentSpec({ ...BASE, methods: ["base", "goodvibes"] }, "x.yaml"),
    "x.yaml",
    'methods.1: "goodvibes" is not an option: expected one of "base"|"goodvibe"|"lora"|"full" (did you mean "goodvibe"?)',
  );
  // an ablation's or grid's method is one method or a list of them (a union): zod alone says "Invalid input"
  const ablation = (method: unknown) =>
    parseExperimentSpec({ ...BASE, ablations: [{ name: "a", method, set: {} }] }, "x.yaml");
  throwsInput(
    () => ablation("Goodvibe"),
    'ablations.0.method: "Goodvibe" is not an option: expected one of "goodvibe"|"lora"|"full" (did you mean "goodvibe"?)',
  );
  throwsInput(
    () => ablation(["goodvibe", "lorra"]),
    'ablations.0.method.1: "lorra" is not an option: expected one of "goodvibe"|"lora"|"full" (did you mean "lora"?)',
  );
  throwsInput(
    () =>
      parseExperimentSpec(
        { ...BASE, grids: [{ name: "g", method: "ful", key: "train.epochs", values: [1] }] },
        "x.yaml",
      ),
    'grids.0.method: "ful" is not an option',
    '(did you mean "full"?)',
  );
  // far from every option: the options, no guess
  assert.throws(
    () => ablation("dpo"),
    (e: Error) =>
      /expected one of "goodvibe"\|"lora"\|"full"$/m.test(e.message) && !/did you mean/.test(e.message),
  );
  // a harden setting's option (validated by the harden schema through the same lines)
  const spec = parseExperimentSpec({ ...BASE, defaults: { "identify.mode": "activaton" } }, "x.yaml");
  throwsInput(
    () => expandCells(spec, "x.yaml"),
    "x.yaml: defaults: invalid harden setting",
    'identify.mode: "activaton" is not an option: expected one of "gradient"|"activation" (did you mean "activation"?)',
  );
});

test("a setting the experiment sets in every cell is refused in defaults, an ablation or a grid, not overwritten", () => {
  // before: each of these parsed and was overwritten by the experiment's own value (plan.ts hardenConfigFor), so a
  // grid over the seed gave three cells with the default cell's key and results, labelled seed=1, 2, 3
  const cases: [Record<string, unknown>, string, string][] = [
    [{ grids: [{ name: "s", key: "seed", values: [1, 2, 3] }] }, "grids[0] (s).key seed", "seeds"],
    [{ grids: [{ name: "ts", key: "train.seed", values: [1, 2] }] }, "grids[0] (ts).key train.seed", "seeds"],
    [{ defaults: { train: { seed: 7 } } }, "defaults.train.seed", "seeds"],
    [
      { ablations: [{ name: "d", set: { data: "/other.jsonl" } }] },
      "ablations[0] (d).set.data",
      "data.train",
    ],
    [
      { ablations: [{ name: "l", set: { languages: ["go"] } }] },
      "ablations[0] (l).set.languages",
      "languageRuns",
    ],
    [{ ablations: [{ name: "m", set: { method: "lora" } }] }, "ablations[0] (m).set.method", "methods"],
  ];
  for (const [extra, where, instead] of cases)
    throwsInput(
      () => parseExperimentSpec({ ...BASE, methods: ["base", "goodvibe"], ...extra }, "x.yaml"),
      `x.yaml: ${where}: set by the experiment itself, not here: `,
      instead,
    );
  // train.seed is the seed axis's, the rest of train is the user's
  assert.doesNotThrow(() =>
    parseExperimentSpec({ ...BASE, grids: [{ name: "e", key: "train.epochs", values: [1] }] }, "x.yaml"),
  );
});

test("a misspelt language in data.languages or a language run is refused with the file, the key and the nearest", () => {
  // before: accepted here, refused only when the data was read, with neither file nor key ("unknown language
  // "jva" in the language filter (known: ...)")
  throwsInput(
    () => parseExperimentSpec({ ...BASE, data: { ...BASE.data, languages: ["c++", "jva"] } }, "x.yaml"),
    'x.yaml: data.languages[1]: unknown language "jva" (did you mean "java"?); known: c++, java, swift, go',
  );
  throwsInput(
    () =>
      parseExperimentSpec(
        {
          ...BASE,
          languageRuns: [
            { name: "Go", languages: ["golang"] },
            { name: "S", languages: ["swfit"] },
          ],
        },
        "x.yaml",
      ),
    'x.yaml: languageRuns[1].languages[0]: unknown language "swfit" (did you mean "swift"?)',
  );
  // every spelling the data reader takes is taken here ("C++", "cpp", "golang")
  assert.doesNotThrow(() =>
    parseExperimentSpec(
      { ...BASE, data: { ...BASE.data, languages: ["C++", "cpp", "golang", "Java"] } },
      "x.yaml",
    ),
  );
});

test("loadExperimentSpec: YAML with --set overrides; unreadable and non-mapping files are InputErrors", () => {
  const dir = scratchDir("gv-exp-spec-");
  const file = path.join(dir, "e.yaml");
  fs.writeFileSync(
    file,
    [
      "name: e",
      "models: [{name: m, path: /m}]",
      "data: {train: /t.jsonl, dev: /d.jsonl}",
      "methods: [base, goodvibe]",
      "eval: {maxPrompts: 8}",
    ].join("\n"),
  );
  const spec = loadExperimentSpec(file, ["seeds=[1,2]", "eval.maxNewTokens=32", "defaults.train.epochs=3"]);
  assert.deepEqual(spec.seeds, [1, 2]);
  assert.equal(spec.eval.maxPrompts, 8);
  assert.equal(spec.eval.maxNewTokens, 32);
  assert.equal(expandCells(spec)[1]!.harden!.train.epochs, 3);
  throwsInput(() => loadExperimentSpec(path.join(dir, "missing.yaml")), "missing.yaml");
  fs.writeFileSync(path.join(dir, "list.yaml"), "- a\n- b\n");
  throwsInput(() => loadExperimentSpec(path.join(dir, "list.yaml")), "list.yaml", "mapping");
  throwsInput(() => loadExperimentSpec(file, ["noequals"]), "key=value");
});

test("languageRuns: one block per language run, its methods and studies; bad names are refused", () => {
  const spec = parseExperimentSpec(
    {
      ...BASE,
      methods: ["base", "goodvibe", "lora"],
      ablations: [{ name: "no-cluster", set: { "cluster.disabled": true } }],
      grids: [{ name: "topk", key: "identify.topK", values: [10] }],
      languageRuns: [
        { name: "C++", languages: ["c++"] },
        { name: "Go", languages: ["go"], methods: ["goodvibe"], studies: ["topk"] },
      ],
    },
    "t.yaml",
  );
  const cells = expandCells(spec);
  assert.deepEqual(
    cells.map((c) => `${c.run!.name}|${c.method}|${c.ablation ?? ""}|${(c.harden?.languages ?? []).join()}`),
    [
      "C++|base||",
      "C++|goodvibe||c++",
      "C++|lora||c++",
      "C++|goodvibe|no-cluster|c++",
      "C++|goodvibe|topk=10|c++",
      "Go|goodvibe||go",
      "Go|goodvibe|topk=10|go",
    ],
  );
  const bad = (over: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => parseExperimentSpec({ ...BASE, ...over }, "t.yaml"), re);
  bad({ languageRuns: [{ name: "a b", languages: ["go"] }] }, /languageRuns\.0\.name/);
  bad(
    { languageRuns: [{ name: "Go", languages: ["go"], methods: ["full"] }] },
    /languageRuns\[0\] \(Go\).*full/,
  );
  bad({ languageRuns: [{ name: "Go", languages: ["go"], studies: ["nope"] }] }, /study "nope"/);
  bad(
    {
      languageRuns: [
        { name: "Go", languages: ["go"] },
        { name: "Go", languages: ["golang"] },
      ],
    },
    /language run "Go" appears twice/,
  );
});

test("an experiment file is read through the one config resolver: missing, not YAML, not a mapping, prototype keys and --set each fail or apply as for a config file, naming the file", () => {
  const dir = scratchDir("gv-spec-file-");
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const missing = path.join(dir, "missing.yaml");
  assert.throws(
    () => loadExperimentSpec(missing),
    (e: Error) => {
      assert.ok(e instanceof InputError);
      assert.match(
        e.message,
        new RegExp(`cannot read experiment file ${missing.replace(/[.\\/]/g, "\\$&")}`),
      );
      return true;
    },
  );
  const bad = file("bad.yaml", "name: [unclosed\n");
  assert.throws(() => loadExperimentSpec(bad), /bad\.yaml: not valid YAML/);
  const list = file("list.yaml", "- a\n- b\n");
  assert.throws(() => loadExperimentSpec(list), /list\.yaml: the top level must be a mapping/);
  const proto = file("proto.yaml", "name: t\n__proto__: { polluted: true }\n");
  assert.throws(() => loadExperimentSpec(proto), /proto\.yaml/);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  const ok = file(
    "ok.yaml",
    "name: t\nmodels: [{ name: m, path: /nowhere/m }]\ndata: { train: /nowhere/t.jsonl, dev: /nowhere/d.jsonl }\nseeds: [0]\n",
  );
  assert.deepEqual(loadExperimentSpec(ok).seeds, [0]);
  assert.deepEqual(loadExperimentSpec(ok, ["seeds=[1, 2]", "name=u"]).seeds, [1, 2]);
  assert.equal(loadExperimentSpec(ok, ["name=u"]).name, "u");
  fs.rmSync(dir, { recursive: true });
});
