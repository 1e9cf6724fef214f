/**
 * `goodvibe export --adapter` honours every flag it accepts or refuses it by name, before any work. --outtype for a
 * PEFT adapter is adapter_model.safetensors' dtype (torch's names, as --format safetensors): PEFT loads a bfloat16 or
 * float16 adapter file by casting it into its adapter parameters (load_state_dict; float32 under its default
 * autocast_adapter_dtype), so the file holds the float32 values rounded to that dtype and adapter_config.json is
 * the float32 export's. References: round to nearest even written out here for bfloat16, io/gguf.ts f32ToF16Bits
 * (numpy's astype(float16)) for float16, and the float32 export's own adapter_config.json. A delta made for a
 * model of another shape (layers, hidden size, vocabulary) or whose tensors cannot fit the base is refused from the
 * safetensors headers and the base's config.json, before libtorch loads; the expected figures come from the
 * organism's config.json. --delta, --peft and --base-model-name where they would be dropped (without --adapter;
 * --base-model-name for a LoRA GGUF) and a --format the adapter is not are refused by name.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { FIXTURES, REPO_ROOT } from "../evalcore/make-model.js";
import { loadModel } from "../../src/models/index.js";
import { Tensor, manualSeed, noGrad } from "../../src/tensor/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { writeGoodVibeDelta } from "../../src/method/goodvibe/delta.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import { attachPeftAdapter } from "../../src/method/lora/model.js";
import { readPeftAdapter } from "../../src/method/lora/peft.js";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.js";
import { loadModelConfig } from "../../src/io/config.js";
import { ModelShape } from "../../src/models/shapes.js";
import { modelShapeRecord } from "../../src/method/goodvibe/model-shape.js";
import { f32ToF16Bits } from "../../src/io/gguf.js";
import { addonOpens, recordAddons, runCli, showRun } from "./cli-helpers.js";

const tmp = scratchDir("gv-export-adapter-");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const BASE = path.join(FIXTURES, "llama");

/** bfloat16 bits of the float32 whose bits are `u`: round to nearest even (the finite values of randn). */
const bf16Bits = (u: number) => ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;

/** A delta on the llama fixture naming it as its base: two modules, 2 and 1 clusters, random U. */
function makeDelta(): { file: string; sel: Map<string, RowSelection>; U: Map<string, Float32Array> } {
  const model = loadModel(BASE);
  const sel = new Map<string, RowSelection>([
    ["model.layers.0.self_attn.q_proj", { rows: [0, 3, 5], clusters: [0, 1, 0], nClusters: 2 }],
    ["model.layers.1.mlp.down_proj", { rows: [1, 2], clusters: [0, 0], nClusters: 1 }],
  ]);
  manualSeed(5);
  const U = new Map<string, Tensor>();
  for (const [name, s] of sel)
    U.set(`${name}.U`, Tensor.randn([s.nClusters, model.linear(name).inFeatures]).mul(0.3));
  const method = attachGoodVibe(model, sel, U);
  const file = path.join(tmp, "delta.safetensors");
  writeGoodVibeDelta(file, model, sel, method, { base_model: BASE });
  method.detach();
  return { file, sel, U: new Map([...U].map(([k, t]) => [k, t.toFloat32Array()])) };
}

test("export --adapter peft --outtype bfloat16 / float16: the tensors in that dtype, adapter_config.json unchanged, loadable", async () => {
  const delta = makeDelta();
  const out = (t: string) => path.join(tmp, `peft-${t}`);
  for (const t of ["float32", "bfloat16", "float16"]) {
    const r = await runCli([
      "export",
      "--adapter",
      "peft",
      "--delta",
      delta.file,
      "-o",
      out(t),
      "--outtype",
      t,
    ]);
    assert.equal(r.code, 0, showRun(r));
  }
  const cfg32 = fs.readFileSync(path.join(out("float32"), "adapter_config.json"), "utf8");
  for (const [t, st, bits] of [
    ["bfloat16", "BF16", (x: number, u: number) => bf16Bits(u)],
    ["float16", "F16", (x: number) => f32ToF16Bits(x)],
  ] as const) {
    assert.equal(fs.readFileSync(path.join(out(t), "adapter_config.json"), "utf8"), cfg32, t);
    const f = readSafetensors(path.join(out(t), "adapter_model.safetensors"));
    assert.equal(f.tensors.size, 2 * delta.sel.size);
    for (const [name, s] of delta.sel) {
      const a = f.tensors.get(`base_model.model.${name}.lora_A.weight`)!;
      const b = f.tensors.get(`base_model.model.${name}.lora_B.weight`)!;
      assert.equal(a.dtype, st, `${t} ${name} lora_A`);
      assert.equal(b.dtype, st, `${t} ${name} lora_B`);
      const u = delta.U.get(`${name}.U`)!;
      const ubits = new Uint32Array(u.buffer, u.byteOffset, u.length);
      const got = new Uint16Array(a.data.buffer, a.data.byteOffset, a.data.byteLength / 2);
      assert.equal(got.length, u.length);
      let rounded = 0;
      for (let i = 0; i < u.length; i++) {
        assert.equal(got[i], bits(u[i]!, ubits[i]!), `${t} ${name} lora_A[${i}] of ${u[i]}`);
        if (got[i]! << 16 !== ubits[i]) rounded++;
      }
      assert.ok(rounded > u.length / 2, "the float32 values must need rounding for this test to show it");
      // lora_B: one 1 per selected row, in that row's cluster column (1.0 is 0x3f80 in bfloat16, 0x3c00 in float16)
      const one = st === "BF16" ? 0x3f80 : 0x3c00;
      const B = new Uint16Array(b.data.buffer, b.data.byteOffset, b.data.byteLength / 2);
      const want = new Uint16Array(B.length);
      s.rows.forEach((row, i) => (want[row * s.nClusters + s.clusters[i]!] = one));
      assert.deepEqual(B, want, `${t} ${name} lora_B`);
    }
  }
  // our PEFT loader takes the bfloat16 adapter (as PEFT does): its effect is the float32 adapter's within rounding
  const ids = Tensor.fromArray([1, 5, 9, 13, 2, 7], [1, 6], "int64");
  const logits = (dir?: string) => {
    const m = loadModel(BASE);
    if (dir) attachPeftAdapter(m, readPeftAdapter(dir));
    return noGrad(() => m.forward(ids)).toFloat32Array();
  };
  const plain = logits();
  const f32 = logits(out("float32"));
  const bf16 = logits(out("bfloat16"));
  let effect = 0;
  let diff = 0;
  for (let i = 0; i < f32.length; i++) {
    effect = Math.max(effect, Math.abs(f32[i]! - plain[i]!));
    diff = Math.max(diff, Math.abs(bf16[i]! - f32[i]!));
  }
  assert.ok(effect > 1e-2, `the adapter must change the model (${effect})`);
  assert.ok(diff < effect / 20, `bfloat16 adapter off the float32 one by ${diff} (effect ${effect})`);
});

test("export --adapter peft: an --outtype it cannot write is refused naming the flag, before libtorch loads", async () => {
  const delta = path.join(tmp, "delta.safetensors");
  if (!fs.existsSync(delta)) makeDelta();
  for (const t of ["bf16", "q8_0", "int8"]) {
    const out = path.join(tmp, `refused-${t}`);
    const record = path.join(tmp, `record-${t}.txt`);
    const r = await runCli(["export", "--adapter", "peft", "--delta", delta, "-o", out, "--outtype", t], {
      env: recordAddons(record),
    });
    assert.equal(r.code, 2, showRun(r));
    assert.match(
      r.stderr,
      new RegExp(`--outtype for a PEFT adapter must be float32, bfloat16 or float16 .*got "${t}"`),
    );
    assert.ok(!fs.existsSync(out), `${out} was made`);
    assert.deepEqual(addonOpens(record), [], "libtorch loaded to refuse --outtype");
  }
});

const ORGANISM = path.join(REPO_ROOT, "assets/organism");

test("a model's shape record from config.json alone is the loaded model's (what export --adapter checks first)", () => {
  for (const dir of [ORGANISM, ...["llama", "qwen2", "qwen3", "gemma3"].map((f) => path.join(FIXTURES, f))])
    assert.deepEqual(
      modelShapeRecord(new ModelShape(loadModelConfig(dir))),
      modelShapeRecord(loadModel(dir)),
      dir,
    );
});

test("export --adapter: a delta for another model's shape, or one whose tensors cannot fit, is refused from the headers, naming the file and the field", async () => {
  const cfg = JSON.parse(fs.readFileSync(path.join(ORGANISM, "config.json"), "utf8")) as Record<
    string,
    number
  >;
  const L = cfg.num_hidden_layers!;
  const H = cfg.hidden_size!;
  const Q = cfg.num_attention_heads! * cfg.head_dim!;
  const MOD = "model.layers.0.self_attn.q_proj";
  /** The shape record of the organism with `edit` made to its config.json (a config alone: no weights). */
  const recordOf = (edit: Record<string, number>) => {
    const dir = path.join(tmp, `cfg-${Object.keys(edit).join("-")}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, ...edit }));
    return JSON.stringify(modelShapeRecord(new ModelShape(loadModelConfig(dir))));
  };
  const own = recordOf({});
  const i64 = (n: number) => ({ dtype: "I64" as const, shape: [n], data: new Uint8Array(8 * n) });
  /** A delta on MOD (rows 0..n-1, one cluster, U of `width` columns), its record `fingerprint`, naming the organism. */
  const delta = (
    name: string,
    fingerprint: string,
    o: { width?: number; rows?: number; extra?: boolean } = {},
  ) => {
    const file = path.join(tmp, name);
    const width = o.width ?? H;
    const rows = o.rows ?? 2;
    writeSafetensors(
      file,
      [
        { name: `${MOD}.rows`, ...i64(rows) },
        { name: `${MOD}.clusters`, ...i64(rows) },
        { name: `${MOD}.U`, dtype: "F32", shape: [1, width], data: new Uint8Array(4 * width) },
        ...(o.extra ? [{ name: "model.layers.1.mlp.up_proj.rows", ...i64(1) }] : []),
      ],
      { format: "goodvibe-delta", fingerprint, base_model: ORGANISM },
    );
    return file;
  };
  const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const cases: [string, string, RegExp][] = [
    [
      "more-layers",
      delta("more-layers.safetensors", recordOf({ num_hidden_layers: L + 2 })),
      new RegExp(
        re(
          `it has module model.layers.${L}.self_attn.q_proj, which this model lacks (${L + 2} layers there, ${L} here)`,
        ),
      ),
    ],
    [
      "fewer-layers",
      delta("fewer-layers.safetensors", recordOf({ num_hidden_layers: L - 1 })),
      new RegExp(
        re(
          `this model has module model.layers.${L - 1}.self_attn.q_proj, which it lacks (${L - 1} layers there, ${L} here)`,
        ),
      ),
    ],
    [
      "hidden",
      delta("hidden.safetensors", recordOf({ hidden_size: 2 * H })),
      new RegExp(re(`${MOD} is [${Q},${2 * H}] there and [${Q},${H}] here`)),
    ],
    [
      "vocab",
      delta("vocab.safetensors", recordOf({ vocab_size: cfg.vocab_size! + 64 })),
      new RegExp(
        re(`its modules are this model's, but not its vocabulary (vocab_size ${cfg.vocab_size} here`),
      ),
    ],
    [
      "width",
      delta("width.safetensors", own, { width: H - 1 }),
      new RegExp(re(`${MOD}.U has shape [1,${H - 1}]: its rows must have the module's input width ${H}`)),
    ],
    [
      "rows",
      delta("rows.safetensors", own, { rows: Q + 1 }),
      new RegExp(re(`${MOD}.rows holds ${Q + 1} rows, more than the module's ${Q}`)),
    ],
    [
      "orphan",
      delta("orphan.safetensors", own, { extra: true }),
      /tensor model\.layers\.1\.mlp\.up_proj\.rows belongs to no module's update/,
    ],
    [
      "fingerprint",
      delta("fingerprint.safetensors", "{"),
      /\(metadata fingerprint\): its record of the model's shape is not \{family, hash, modules/,
    ],
  ];
  for (const [name, file, want] of cases)
    for (const kind of ["peft", "gguf"]) {
      const out = path.join(tmp, `out-${name}-${kind}${kind === "gguf" ? ".gguf" : ""}`);
      const record = path.join(tmp, `record-${name}-${kind}.txt`);
      const before = fs.readFileSync(file);
      const r = await runCli(["export", "--adapter", kind, "--delta", file, "-o", out], {
        env: recordAddons(record),
      });
      assert.equal(r.code, 2, `${name} ${kind}\n${showRun(r)}`);
      assert.ok(r.stderr.includes(file), `${name}: the message names the delta file\n${r.stderr}`);
      assert.match(r.stderr, want, `${name} ${kind}`);
      assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, r.stderr);
      assert.ok(!fs.existsSync(out), `${out} was made`);
      assert.deepEqual(fs.readFileSync(file), before, "the delta changed");
      assert.deepEqual(addonOpens(record), [], `${name} ${kind}: libtorch loaded to refuse it`);
    }
});

test("export: the adapter's flags are refused where they would be ignored, before libtorch loads", async () => {
  const delta = path.join(tmp, "delta.safetensors");
  if (!fs.existsSync(delta)) makeDelta();
  const cases: [string[], RegExp][] = [
    // without --adapter, --delta was dropped and the base model exported as if it were the hardened one
    [
      ["export", "-m", ORGANISM, "--delta", delta, "-o", "x.gguf"],
      /--delta is read only with --adapter peft\|gguf.*give its folder with -m/,
    ],
    [
      ["export", "-m", ORGANISM, "--peft", path.join(BASE, "lora-adapter"), "-o", "x.gguf"],
      /--peft is read only with --adapter/,
    ],
    [
      ["export", "-m", ORGANISM, "--base-model-name", "org/base", "-o", "st", "--format", "safetensors"],
      /--base-model-name is read only with --adapter/,
    ],
    // a LoRA GGUF has no base model name to write
    [
      ["export", "--adapter", "gguf", "--delta", delta, "--base-model-name", "org/base", "-o", "x.gguf"],
      /--base-model-name is adapter_config\.json's base_model_name_or_path, for --adapter peft/,
    ],
    // --format that the adapter is not
    [
      ["export", "--adapter", "peft", "--delta", delta, "--format", "gguf", "-o", "p"],
      /--format gguf does not go with --adapter peft, which writes a PEFT adapter folder/,
    ],
    [
      ["export", "--adapter", "gguf", "--delta", delta, "--format", "safetensors", "-o", "x.gguf"],
      /--format safetensors does not go with --adapter gguf, which writes a LoRA GGUF file/,
    ],
  ];
  for (const [args, want] of cases) {
    const cwd = fs.mkdtempSync(path.join(tmp, "flags-"));
    const record = path.join(tmp, `record-${path.basename(cwd)}.txt`);
    const r = await runCli(args, { cwd, env: recordAddons(record) });
    assert.equal(r.code, 2, `${args.join(" ")}\n${showRun(r)}`);
    assert.match(r.stderr, want, args.join(" "));
    assert.deepEqual(fs.readdirSync(cwd), [], `${args.join(" ")} left output`);
    assert.deepEqual(addonOpens(record), [], `${args.join(" ")}: libtorch loaded to refuse it`);
  }
  // the --format the adapter is stays accepted
  const ok = path.join(tmp, "peft-format");
  const r = await runCli([
    "export",
    "--adapter",
    "peft",
    "--delta",
    delta,
    "--format",
    "safetensors",
    "-o",
    ok,
  ]);
  assert.equal(r.code, 0, showRun(r));
  assert.ok(fs.existsSync(path.join(ok, "adapter_model.safetensors")));
});

test("export --adapter: a delta whose recorded base folder is not here is refused naming it and -m; with -m it exports", async () => {
  const H = loadModelConfig(ORGANISM).hiddenSize;
  const MOD = "model.layers.0.mlp.up_proj";
  const file = path.join(tmp, "moved-delta.safetensors");
  const i64 = { dtype: "I64" as const, shape: [1], data: new Uint8Array(8) };
  writeSafetensors(
    file,
    [
      { name: `${MOD}.rows`, ...i64 },
      { name: `${MOD}.clusters`, ...i64 },
      {
        name: `${MOD}.U`,
        dtype: "F32",
        shape: [1, H],
        data: new Uint8Array(new Float32Array(H).fill(0.5).buffer),
      },
    ],
    {
      format: "goodvibe-delta",
      fingerprint: JSON.stringify(modelShapeRecord(new ModelShape(loadModelConfig(ORGANISM)))),
      base_model: "/home/someone/models/organism",
    },
  );
  const cwd = fs.mkdtempSync(path.join(tmp, "moved-"));
  const record = path.join(tmp, "record-moved.txt");
  const r = await runCli(["export", "--adapter", "peft", "--delta", file, "-o", "lora"], {
    cwd,
    env: recordAddons(record),
  });
  assert.equal(r.code, 2, showRun(r));
  assert.ok(
    r.stderr.includes(
      `${file} names its base model /home/someone/models/organism (metadata base_model), which holds no config.json here: give the base model folder with -m`,
    ),
    r.stderr,
  );
  assert.deepEqual(fs.readdirSync(cwd), []);
  assert.deepEqual(addonOpens(record), []);
  const ok = await runCli(["export", "--adapter", "peft", "--delta", file, "-m", ORGANISM, "-o", "lora"], {
    cwd,
  });
  assert.equal(ok.code, 0, showRun(ok));
  const cfg = JSON.parse(fs.readFileSync(path.join(cwd, "lora", "adapter_config.json"), "utf8"));
  assert.deepEqual(cfg.target_modules, [MOD]);
});
