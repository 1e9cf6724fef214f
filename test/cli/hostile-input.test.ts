/**
 * Issue 8, "Hostile and careless input", as a user meets it: each case is the built CLI on a real model folder
 * (the shipped organism: Llama layout, real tokenizer) made wrong in one way. Every case must exit with the
 * documented code (2 bad input, 3 full disk), say on stderr what is wrong and where, show no stack, leave
 * nothing behind in the working folder, and leave the input folder byte-identical.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import {
  openModelWeights,
  writeModelWeights,
  writeSafetensors,
  type TensorRecord,
} from "../../src/io/safetensors.js";
import { REPO_ROOT, scratchDir } from "../evalcore/make-model.js";
import {
  addonOpens,
  hashTree,
  recordAddons,
  runCli,
  showRun,
  startCli,
  type CliResult,
} from "./cli-helpers.js";

const ORGANISM = path.join(REPO_ROOT, "assets/organism");
const work = scratchDir("gv-hostile-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

const DEV = fs.readFileSync(path.join(ORGANISM, "data/dev.jsonl"), "utf8").trim().split("\n");
const pairsFile = path.join(work, "pairs.jsonl");
fs.writeFileSync(pairsFile, DEV.slice(0, 8).join("\n") + "\n");
const TINY = ["--top-k", "2", "--epochs", "1", "--set", "identify.maxPairs=4", "--set", "train.maxPairs=4"];

/** A copy of the organism with its config and tensors edited. */
function variant(
  name: string,
  edit: { config?: (c: Record<string, unknown>) => void; tensors?: (t: TensorRecord[]) => TensorRecord[] },
): string {
  const dir = path.join(work, name);
  fs.cpSync(ORGANISM, dir, { recursive: true });
  fs.rmSync(path.join(dir, "data"), { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  edit.config?.(cfg);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(cfg, null, 2));
  if (edit.tensors) {
    const recs = [...openModelWeights(ORGANISM).tensors.values()].map((r) => ({
      ...r,
      shape: [...r.shape],
      data: Buffer.from(r.data),
    }));
    writeModelWeights(dir, edit.tensors(recs));
  }
  return dir;
}

let caseNo = 0;
/**
 * Run in a fresh empty folder; assert the exit code, the patterns, no stack, nothing left, input unchanged. With
 * `noAddon`, also that the refusal came before the libtorch addon loaded (about a second of start-up: a model
 * folder that does not match its config is refused on the weights' headers, before they are mapped).
 */
async function refused(
  args: string[],
  code: number,
  patterns: RegExp[],
  opts: { input?: string; noAddon?: boolean } = {},
): Promise<CliResult> {
  const cwd = path.join(work, `case-${++caseNo}`);
  fs.mkdirSync(cwd);
  const before = opts.input ? hashTree(opts.input) : null;
  const record = path.join(work, `record-${caseNo}.txt`);
  const r = await runCli(args, { cwd, env: opts.noAddon ? recordAddons(record) : {} });
  assert.equal(r.code, code, `${args.join(" ")}\n${showRun(r)}`);
  assert.match(r.stderr, /^error: /m, showRun(r));
  for (const p of patterns) assert.match(r.stderr, p, showRun(r));
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, `a stack reached the user:\n${r.stderr}`);
  assert.deepEqual(fs.readdirSync(cwd), [], `left behind by ${args.join(" ")}`);
  if (opts.input) assert.deepEqual(hashTree(opts.input), before, "the input folder changed");
  if (opts.noAddon) assert.deepEqual(addonOpens(record), [], `${args.join(" ")} loaded libtorch to refuse`);
  return r;
}

test("prototype keys: --set __proto__.x=1 and a config with model_type __proto__ exit 2 naming the key", async () => {
  await refused(
    ["harden", "-m", ORGANISM, "-d", pairsFile, "-o", "out", ...TINY, "--set", "__proto__.x=1"],
    2,
    [/__proto__/],
  );
  await refused(
    ["harden", "-m", ORGANISM, "-d", pairsFile, "-o", "out", ...TINY, "--set", "constructor.prototype.x=1"],
    2,
    [/constructor/],
  );
  const proto = variant("proto-type", { config: (c) => (c.model_type = "__proto__") });
  for (const args of [
    ["harden", "-m", proto, "-d", pairsFile, "-o", "out", ...TINY],
    ["eval", "-m", proto, "-d", pairsFile, "--prompts", "1"],
    ["export", "-m", proto, "-o", "x.gguf"],
    ["generate", "-m", proto, "-p", "hi", "--max-new-tokens", "1"],
  ])
    await refused(args, 2, [/config\.json/, /model_type "__proto__" is not supported/], { input: proto });
  const nested = variant("proto-nested", {});
  const cfgFile = path.join(nested, "config.json");
  fs.writeFileSync(
    cfgFile,
    '{"constructor": {"prototype": {"polluted": true}}, ' +
      fs.readFileSync(cfgFile, "utf8").trimStart().slice(1),
  );
  await refused(["export", "-m", nested, "-o", "x.gguf"], 2, [/config\.json: key "constructor"/], {
    input: nested,
  });
});

const LAYERS2 = "config.json says num_hidden_layers = 2 but the weights have 4 layers";

test("config.json saying 2 layers over 4 stored: every command refuses before any work", async () => {
  const bad = variant("layers2", { config: (c) => (c.num_hidden_layers = 2) });
  const delta = path.join(work, "delta.safetensors");
  fs.writeFileSync(delta, "not read: the model is refused first");
  const cases: string[][] = [
    ["harden", "-m", bad, "-d", pairsFile, "-o", "out", ...TINY],
    ["identify", "-m", bad, "-d", pairsFile, "-o", "neurons.json", "--top-k", "2"],
    ["train", "-m", bad, "-d", pairsFile, "--method", "lora", "-o", "out", "--epochs", "1"],
    ["fold", "-m", bad, "--delta", delta, "-o", "out"],
    ["eval", "-m", bad, "-d", pairsFile, "--prompts", "1"],
    ["export", "-m", bad, "-o", "x.gguf"],
    ["export", "-m", bad, "-o", "st", "--format", "safetensors"],
    ["generate", "-m", bad, "-p", "hi", "--max-new-tokens", "1"],
  ];
  for (const args of cases)
    await refused(args, 2, [new RegExp(LAYERS2), /layers2/], { input: bad, noAddon: true });
  // serve: refused before it listens (a server that started would never exit by itself)
  const cwd = path.join(work, "serve-case");
  fs.mkdirSync(cwd);
  const record = path.join(work, "record-serve.txt");
  const run = startCli(["serve", "-m", bad, "--port", "0"], { cwd, env: recordAddons(record) });
  const timer = setTimeout(() => run.child.kill("SIGKILL"), 120_000);
  const r = await run.done;
  clearTimeout(timer);
  assert.equal(r.code, 2, showRun(r));
  assert.match(r.stderr, new RegExp(LAYERS2));
  assert.doesNotMatch(r.stderr, /serving /);
  assert.deepEqual(addonOpens(record), [], "serve loaded libtorch to refuse");
});

test("weights that do not fit the config: transposed or 1-D embedding, 8 layers over 4, int32, vocab 1e9, NaN", async () => {
  const embed = "model.embed_tokens.weight";
  const edit = (f: (r: TensorRecord) => TensorRecord) => (ts: TensorRecord[]) =>
    ts.map((r) => (r.name === embed ? f(r) : r));
  const variants: [string, Parameters<typeof variant>[1], RegExp[]][] = [
    [
      "transposed",
      { tensors: edit((r) => ({ ...r, shape: [r.shape[1]!, r.shape[0]!] })) },
      [/model\.embed_tokens\.weight has shape \[128, 1024\], config\.json implies \[1024, 128\]/],
    ],
    [
      "embed-1d",
      { tensors: edit((r) => ({ ...r, shape: [r.shape[0]! * r.shape[1]!] })) },
      [/model\.embed_tokens\.weight has shape \[131072\]/],
    ],
    [
      "layers8",
      { config: (c) => (c.num_hidden_layers = 8) },
      [/missing \(36\)/, /num_hidden_layers = 8 but the weights have 4 layers/],
    ],
    [
      "int32",
      { tensors: (ts) => ts.map((r) => ({ ...r, dtype: "I32" as const })) },
      [/dtype I32/, /weights must be F32, BF16, F16/],
    ],
    ["vocab1e9", { config: (c) => (c.vocab_size = 1e9) }, [/config\.json implies \[1000000000, 128\]/]],
    [
      "nan",
      {
        tensors: (ts) =>
          ts.map((r) => {
            if (r.name === "model.layers.2.mlp.up_proj.weight") r.data.writeFloatLE(NaN, 4 * 1000);
            return r;
          }),
      },
      [/model\.layers\.2\.mlp\.up_proj\.weight holds a NaN or infinite value \(element 1000/],
    ],
  ];
  for (const [name, e, patterns] of variants) {
    const dir = variant(name, e);
    // names, shapes and dtypes are refused on the weights' headers, before the addon loads; a NaN once the values
    // are read: by a small GGUF export without the addon (it reads the file), by harden through libtorch
    await refused(["export", "-m", dir, "-o", "x.gguf"], 2, patterns, { input: dir, noAddon: true });
    await refused(["harden", "-m", dir, "-d", pairsFile, "-o", "out", ...TINY], 2, patterns, {
      input: dir,
      noAddon: name !== "nan",
    });
  }
});

test("export with vocab_size 1e9 fails on the shape, before allocating for the vocabulary", () => {
  // The old export grew to 4.6 GB (a vocabulary padded to vocab_size) before any check; with a 512 MB heap it
  // would die of it (exit 134) instead of exiting 2.
  const dir = variant("vocab1e9-mem", { config: (c) => (c.vocab_size = 1e9) });
  const r = spawnSync(
    process.execPath,
    [
      "--max-old-space-size=512",
      path.join(REPO_ROOT, "dist/src/cli/main.js"),
      "export",
      "-m",
      dir,
      "-o",
      path.join(work, "v.gguf"),
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /implies \[1000000000, 128\]/);
  assert.ok(!fs.existsSync(path.join(work, "v.gguf")));
});

test("a 50 MB dataset row: harden and eval exit 2 naming the file and the row, no heap abort", async () => {
  const huge = JSON.parse(DEV[2]!);
  huge.id = "huge";
  huge.chosen = "```cpp\n" + "int x = 1;\n".repeat(5_000_000) + "```";
  const file = path.join(work, "huge-row.jsonl");
  fs.writeFileSync(file, [DEV[0], DEV[1], JSON.stringify(huge), DEV[3]].join("\n") + "\n");
  const row = [/huge-row\.jsonl row 3: the row is larger than 1\.00 MiB/, /GOODVIBE_MAX_ROW_BYTES/];
  await refused(["harden", "-m", ORGANISM, "-d", file, "-o", "out", ...TINY], 2, row, { input: ORGANISM });
  await refused(["eval", "-m", ORGANISM, "-d", file, "--prompts", "1"], 2, row);
});

test("identify.topK past the smallest module and train.lr=1e9 are refused with the valid range", async () => {
  await refused(
    ["harden", "-m", ORGANISM, "-d", pairsFile, "-o", "out", ...TINY, "--set", "identify.topK=1000000000"],
    2,
    [
      /identify\.topK \(--top-k\) = 1000000000 is out of range: it must be a whole number from 1 to 64/,
      /model\.layers\.0\.self_attn\.k_proj, 64/,
    ],
    // the range is config.json's (the organism's k_proj: 2 key-value heads × head_dim 32 = 64 rows): refused
    // before the model loads
    { noAddon: true },
  );
  await refused(
    ["identify", "-m", ORGANISM, "-d", pairsFile, "-o", "n.json", "--top-k", "65"],
    2,
    [/identify\.topK \(--top-k\) = 65 is out of range: it must be a whole number from 1 to 64/],
    { noAddon: true },
  );
  // an experiment's grid cell past the range: refused before any cell, naming the cell, no output folder made
  const spec = path.join(work, "topk.yaml");
  const expOut = path.join(work, "topk-out");
  fs.writeFileSync(
    spec,
    JSON.stringify({
      name: "topk",
      models: [{ name: "organism", path: ORGANISM }],
      data: { train: pairsFile, dev: pairsFile },
      methods: ["goodvibe"],
      grids: [{ name: "topk", key: "identify.topK", values: [16, 65] }],
    }),
  );
  await refused(
    ["experiment", "run", spec, "-o", expOut],
    2,
    [
      /topk\.yaml: cell organism goodvibe \[topk=65\] seed 0: identify\.topK \(--top-k\) = 65 is out of range/,
    ],
    { noAddon: true },
  );
  assert.ok(!fs.existsSync(expOut), "the refused experiment made its output folder");
  await refused(
    ["harden", "-m", ORGANISM, "-d", pairsFile, "-o", "out", ...TINY, "--set", "train.lr=1e9"],
    2,
    [/train\.lr: must be at most 1/],
  );
});

test("export --adapter: a taken --out and a bad --outtype are refused before the delta's tensors are read", async () => {
  // a delta naming its base model (harden records it); its tensors are never read: the arguments are refused first
  const delta = path.join(work, "adapter-delta.safetensors");
  const rows = { dtype: "I64" as const, shape: [1], data: new Uint8Array(8) };
  writeSafetensors(
    delta,
    [
      { name: "model.layers.0.mlp.up_proj.rows", ...rows },
      { name: "model.layers.0.mlp.up_proj.clusters", ...rows },
      { name: "model.layers.0.mlp.up_proj.U", dtype: "F32", shape: [1, 256], data: new Uint8Array(4 * 256) },
    ],
    { format: "goodvibe-delta", fingerprint: "{}", base_model: ORGANISM },
  );
  const taken = path.join(work, "taken-adapter");
  fs.mkdirSync(taken);
  fs.writeFileSync(path.join(taken, "notes.txt"), "someone's work\n");
  await refused(
    ["export", "--adapter", "peft", "--delta", delta, "-o", taken],
    2,
    [/--out .*taken-adapter: exists and is not empty.*--overwrite/],
    { input: taken, noAddon: true },
  );
  await refused(
    ["export", "--adapter", "gguf", "--delta", delta, "--outtype", "q4_0", "-o", "a.gguf"],
    2,
    [/--outtype for a LoRA GGUF must be f32, f16 or bf16/],
    { noAddon: true },
  );
});

test("eval on many pairs: preference is capped (a documented setting) and shows progress", async () => {
  const many = path.join(work, "many.jsonl");
  const rows: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const r = JSON.parse(DEV[i % DEV.length]!);
    r.id = `${r.id}-${i}`;
    rows.push(JSON.stringify(r));
  }
  fs.writeFileSync(many, rows.join("\n") + "\n");
  const cwd = path.join(work, "eval-many");
  fs.mkdirSync(cwd);
  const r = await runCli(
    [
      "eval",
      "-m",
      ORGANISM,
      "-d",
      many,
      "--prompts",
      "1",
      "--max-new-tokens",
      "2",
      "--preference-pairs",
      "12",
      "--cache",
      "cache",
    ],
    { cwd },
  );
  assert.equal(r.code, 0, showRun(r));
  assert.match(r.stderr, /secure preference on 12 of 5000 held-out pairs/);
  // plain progress lines: "<UTC time> preference 24/24 (100.0%) …"
  assert.match(r.stderr, /preference 24\/24/);
  assert.match(r.stdout, /of 12 pairs/);
  const bad = await runCli(["eval", "-m", ORGANISM, "-d", many, "--preference-pairs", "-1"], { cwd });
  assert.equal(bad.code, 2, showRun(bad));
});

// ---------------------------------------------------------------- a full disk (a small tmpfs of our own)

/** Mount a tmpfs of `size` at a fresh folder; null when this machine does not let us (not root, no mount). */
function smallDisk(name: string, size: string): { dir: string; umount: () => void } | null {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { encoding: "utf8" });
  if (r.status !== 0) return null;
  return { dir, umount: () => spawnSync("umount", ["-l", dir]) };
}
const canMount = (() => {
  const d = smallDisk("probe", "64k");
  d?.umount();
  return d !== null;
})();
const skipMount = canMount ? false : "mounting a tmpfs is not permitted here";

test(
  "a full disk: export (GGUF and safetensors) and a --run-dir exit 3 naming the path, no stack, no partial file",
  { skip: skipMount },
  async () => {
    const disk = smallDisk("full-export", "1m")!;
    try {
      for (const args of [
        ["export", "-m", ORGANISM, "-o", path.join(disk.dir, "x.gguf"), "--outtype", "f32"],
        [
          "export",
          "-m",
          ORGANISM,
          "-o",
          path.join(disk.dir, "st"),
          "--format",
          "safetensors",
          "--outtype",
          "float32",
        ],
      ]) {
        await refused(
          args,
          3,
          [/no space left on the device/, new RegExp(disk.dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))],
          { input: ORGANISM },
        );
        assert.deepEqual(fs.readdirSync(disk.dir), [], "a partial output was left on the full disk");
      }
    } finally {
      disk.umount();
    }
    const runDisk = smallDisk("full-run", "64k")!;
    try {
      const r = await refused(
        [
          "harden",
          "-m",
          ORGANISM,
          "-d",
          pairsFile,
          "-o",
          "out",
          ...TINY,
          "--run-dir",
          path.join(runDisk.dir, "run"),
        ],
        3,
        [/no space left on the device/, /full-run/],
        { input: ORGANISM },
      );
      assert.doesNotMatch(r.stderr, /0\.00 GiB/);
    } finally {
      runDisk.umount();
    }
  },
);

test(
  "not enough disk for the hardened checkpoint: the message gives sensible units",
  { skip: skipMount },
  async () => {
    const disk = smallDisk("small-out", "512k")!;
    try {
      const r = await refused(
        [
          "harden",
          "-m",
          ORGANISM,
          "-d",
          pairsFile,
          "-o",
          path.join(disk.dir, "out"),
          ...TINY,
          "--run-dir",
          path.join(work, "run-elsewhere"),
        ],
        3,
        [/needs about 3\.\d\d MiB of disk/, /only (5\d\d|4\d\d) KiB is free/],
        { input: ORGANISM },
      );
      assert.doesNotMatch(r.stderr, /0\.00 GiB/);
    } finally {
      disk.umount();
      fs.rmSync(path.join(work, "run-elsewhere"), { recursive: true, force: true });
    }
  },
);

test("a log reader that goes away (2>&1 | head) does not end the work: the run completes, exit 0, its output whole", async () => {
  // the first write to the closed stderr crashed identify and harden with an unhandled EPIPE, exit 1 (an audit)
  const out = path.join(work, "epipe-neurons.json");
  const run = startCli(["identify", "-m", ORGANISM, "-d", pairsFile, "-o", out, "--top-k", "2"]);
  run.child.stderr!.once("data", () => run.child.stderr!.destroy());
  const r = await run.done;
  assert.equal(r.code, 0, showRun(r));
  assert.ok(JSON.parse(fs.readFileSync(out, "utf8")).modules, "the neuron map is written whole");
});
