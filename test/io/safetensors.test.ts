import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { InputError } from "../../src/errors.js";
import {
  DTYPE_SIZE,
  openModelWeights,
  parseSafetensors,
  readSafetensors,
  writeModelWeights,
  writeSafetensors,
  type StDtype,
  type TensorRecord,
  type TensorToWrite,
} from "../../src/io/safetensors.js";
import { FAMILIES, FIXTURES, assertInputError, prng, scratchDir } from "./helpers.js";

// Expected layouts, from the table in test/fixtures/README.md ([out, in] for linear weights).
const PROJ_SHAPES: Record<string, Record<string, number[]>> = {
  llama: { q_proj: [64, 64], k_proj: [32, 64], v_proj: [32, 64], o_proj: [64, 64] },
  qwen2: { q_proj: [64, 64], k_proj: [32, 64], v_proj: [32, 64], o_proj: [64, 64] },
  qwen3: { q_proj: [128, 64], k_proj: [64, 64], v_proj: [64, 64], o_proj: [64, 128] },
  gemma3: { q_proj: [128, 64], k_proj: [64, 64], v_proj: [64, 64], o_proj: [64, 128] },
};
const NUM_LAYERS: Record<string, number> = { llama: 2, qwen2: 2, qwen3: 2, gemma3: 4 };

/** The tensor names a family must have, written out from the README's description of each model. */
function expectedNames(family: string): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set("model.embed_tokens.weight", [512, 64]);
  m.set("model.norm.weight", [64]);
  if (family === "llama") m.set("lm_head.weight", [512, 64]); // the only untied model
  for (let i = 0; i < NUM_LAYERS[family]!; i++) {
    const p = `model.layers.${i}.`;
    for (const [proj, shape] of Object.entries(PROJ_SHAPES[family]!))
      m.set(`${p}self_attn.${proj}.weight`, shape);
    if (family === "qwen2") {
      m.set(`${p}self_attn.q_proj.bias`, [64]);
      m.set(`${p}self_attn.k_proj.bias`, [32]);
      m.set(`${p}self_attn.v_proj.bias`, [32]);
    }
    if (family === "qwen3" || family === "gemma3") {
      m.set(`${p}self_attn.q_norm.weight`, [32]);
      m.set(`${p}self_attn.k_norm.weight`, [32]);
    }
    m.set(`${p}mlp.gate_proj.weight`, [128, 64]);
    m.set(`${p}mlp.up_proj.weight`, [128, 64]);
    m.set(`${p}mlp.down_proj.weight`, [64, 128]);
    m.set(`${p}input_layernorm.weight`, [64]);
    m.set(`${p}post_attention_layernorm.weight`, [64]);
    if (family === "gemma3") {
      m.set(`${p}pre_feedforward_layernorm.weight`, [64]);
      m.set(`${p}post_feedforward_layernorm.weight`, [64]);
    }
  }
  return m;
}

/** float32 -> bfloat16 bits, round to nearest even (what torch's .to(bfloat16) does). */
function f32ToBf16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40; // NaN stays NaN
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

function assertSameTensors(a: Map<string, TensorRecord>, b: Map<string, TensorRecord>): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [name, t] of a) {
    const u = b.get(name)!;
    assert.equal(u.dtype, t.dtype, name);
    assert.deepEqual(u.shape, t.shape, name);
    assert.ok(Buffer.compare(u.data, t.data) === 0, `${name}: bytes differ`);
  }
}

function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const rand = prng(seed);
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A safetensors image assembled by hand (not by the writer under test). */
function rawImage(header: string | object, data: Uint8Array, headerLen?: bigint): Buffer {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

for (const family of FAMILIES) {
  test(`${family}: names, shapes and dtypes match the fixture README`, () => {
    const st = readSafetensors(path.join(FIXTURES, family, "model.safetensors"));
    assert.deepEqual(st.metadata, { format: "pt" });
    const expected = expectedNames(family);
    assert.deepEqual([...st.tensors.keys()].sort(), [...expected.keys()].sort());
    for (const [name, shape] of expected) {
      const t = st.tensors.get(name)!;
      assert.equal(t.dtype, "F32", name);
      assert.deepEqual(t.shape, shape, name);
      assert.equal(
        t.data.length,
        shape.reduce((a, b) => a * b, 4),
        name,
      );
    }
  });

  test(`${family}: the BF16 file holds round-to-nearest-even of the F32 weights`, () => {
    const f32 = readSafetensors(path.join(FIXTURES, family, "model.safetensors")).tensors;
    const bf16 = readSafetensors(path.join(FIXTURES, family, "model-bf16", "model.safetensors")).tensors;
    assert.deepEqual([...bf16.keys()].sort(), [...f32.keys()].sort());
    for (const [name, t] of f32) {
      const u = bf16.get(name)!;
      assert.equal(u.dtype, "BF16");
      assert.deepEqual(u.shape, t.shape);
      for (let i = 0; i < t.data.length / 4; i++) {
        assert.equal(u.data.readUInt16LE(2 * i), f32ToBf16Bits(t.data.readUInt32LE(4 * i)), `${name}[${i}]`);
      }
    }
  });

  test(`${family}: writing the fixture's tensors reproduces the fixture files byte for byte`, () => {
    const dir = scratchDir();
    const files = [
      "model.safetensors",
      "model-bf16/model.safetensors",
      "sharded/model-00001-of-00002.safetensors",
      "sharded/model-00002-of-00002.safetensors",
    ];
    for (const [k, rel] of files.entries()) {
      const src = path.join(FIXTURES, family, rel);
      const st = readSafetensors(src);
      const out = path.join(dir, `${k}.safetensors`);
      // Shuffled input: the writer must impose the library's order itself.
      writeSafetensors(out, shuffled([...st.tensors.values()], 17 + k), st.metadata);
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(src)), `${rel} differs`);
      assertSameTensors(readSafetensors(out).tensors, st.tensors);
    }
    fs.rmSync(dir, { recursive: true });
  });

  test(`${family}: the sharded folder loads the same tensors as the single file`, () => {
    const single = openModelWeights(path.join(FIXTURES, family));
    const sharded = openModelWeights(path.join(FIXTURES, family, "sharded"));
    assert.equal(single.files.length, 1);
    assert.deepEqual(
      sharded.files.map((f) => path.basename(f)),
      ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
    );
    assertSameTensors(sharded.tensors, single.tensors);
    // README: shard 1 = embed_tokens + layer 0.
    for (const [name, t] of sharded.tensors) {
      const inFirst = name === "model.embed_tokens.weight" || name.startsWith("model.layers.0.");
      assert.equal(path.basename(t.file), `model-0000${inFirst ? 1 : 2}-of-00002.safetensors`, name);
    }
  });
}

test("hand-worked headers: the byte layouts from the safetensors library's own tests", () => {
  const dir = scratchDir();
  const data = Buffer.from(new Float32Array([0, 1, 2, 3, 4, 5]).buffer);
  // {"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}} is 64 bytes: no padding needed.
  writeSafetensors(
    path.join(dir, "a.safetensors"),
    [{ name: "attn.0", dtype: "F32", shape: [1, 2, 3], data }],
    null,
  );
  const header64 = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
  assert.equal(header64.length, 64);
  assert.deepEqual(
    fs.readFileSync(path.join(dir, "a.safetensors")),
    Buffer.concat([Buffer.from([64, 0, 0, 0, 0, 0, 0, 0]), Buffer.from(header64), data]),
  );
  // "attn0" with shape [1,1,2,3]: 65 bytes of JSON, padded with 7 spaces to 72.
  writeSafetensors(
    path.join(dir, "b.safetensors"),
    [{ name: "attn0", dtype: "F32", shape: [1, 1, 2, 3], data }],
    null,
  );
  assert.deepEqual(
    fs.readFileSync(path.join(dir, "b.safetensors")),
    Buffer.concat([
      Buffer.from([72, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       '),
      data,
    ]),
  );
  // No tensors, metadata only: 35 bytes + 5 spaces.
  writeSafetensors(path.join(dir, "c.safetensors"), [], { framework: "pt" });
  assert.deepEqual(
    fs.readFileSync(path.join(dir, "c.safetensors")),
    Buffer.concat([
      Buffer.from([40, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from('{"__metadata__":{"framework":"pt"}}     '),
    ]),
  );
  fs.rmSync(dir, { recursive: true });
});

test("mixed dtypes: every tensor starts aligned to its element size, scalars and empty tensors round-trip", () => {
  const dir = scratchDir();
  const rand = prng(5);
  const dtypes = Object.keys(DTYPE_SIZE) as StDtype[];
  const tensors: TensorToWrite[] = [];
  for (let i = 0; i < 40; i++) {
    const dtype = dtypes[Math.floor(rand() * dtypes.length)]!;
    const shape = i === 0 ? [] : i === 1 ? [3, 0] : [1 + Math.floor(rand() * 5), 1 + Math.floor(rand() * 3)];
    const n = shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[dtype];
    tensors.push({
      name: `t${i}`,
      dtype,
      shape,
      data: Uint8Array.from({ length: n }, () => Math.floor(rand() * 256)),
    });
  }
  const file = path.join(dir, "mixed.safetensors");
  writeSafetensors(file, tensors);
  const bytes = fs.readFileSync(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  assert.equal(headerLen % 8, 0);
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString()) as Record<
    string,
    { dtype: StDtype; data_offsets: [number, number] }
  >;
  assert.equal(Object.keys(header)[0], "__metadata__");
  let end = 0;
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    assert.equal(info.data_offsets[0], end, `${name} is not consecutive`);
    assert.equal(info.data_offsets[0] % DTYPE_SIZE[info.dtype], 0, `${name} is misaligned`);
    end = info.data_offsets[1];
  }
  assert.equal(8 + headerLen + end, bytes.length);
  const back = readSafetensors(file).tensors;
  for (const t of tensors) {
    const u = back.get(t.name)!;
    assert.equal(u.dtype, t.dtype);
    assert.deepEqual(u.shape, t.shape);
    assert.deepEqual(new Uint8Array(u.data), t.data);
  }
  fs.rmSync(dir, { recursive: true });
});

test("integer-like tensor names keep the library's order (not JavaScript's key order)", () => {
  const dir = scratchDir();
  const one = new Uint8Array(4);
  writeSafetensors(path.join(dir, "n.safetensors"), [
    { name: "b", dtype: "F32", shape: [1], data: one },
    { name: "10", dtype: "F32", shape: [1], data: one },
    { name: "2", dtype: "F32", shape: [1], data: one },
  ]);
  const text = fs.readFileSync(path.join(dir, "n.safetensors")).toString("latin1");
  // Byte order of names: "10" < "2" < "b".
  assert.ok(text.indexOf('"10"') < text.indexOf('"2"') && text.indexOf('"2"') < text.indexOf('"b"'));
  assert.deepEqual(readSafetensors(path.join(dir, "n.safetensors")).tensors.get("2")!.shape, [1]);
  fs.rmSync(dir, { recursive: true });
});

test("writeModelWeights: shards with an index and reads back equal; a single file replaces stale shards", () => {
  const dir = scratchDir();
  const src = openModelWeights(path.join(FIXTURES, "qwen3"));
  const all = [...src.tensors.values()];
  const totalBytes = all.reduce((s, t) => s + t.data.length, 0);
  const written = writeModelWeights(dir, all, { maxShardBytes: 100_000 });
  const index = JSON.parse(fs.readFileSync(path.join(dir, "model.safetensors.index.json"), "utf8"));
  assert.equal(index.metadata.total_size, totalBytes);
  const shardNames = written.filter((f) => f !== "model.safetensors.index.json");
  assert.ok(shardNames.length > 2);
  shardNames.forEach((f, i) =>
    assert.equal(
      f,
      `model-${String(i + 1).padStart(5, "0")}-of-${String(shardNames.length).padStart(5, "0")}.safetensors`,
    ),
  );
  for (const f of shardNames) {
    const st = readSafetensors(path.join(dir, f));
    const bytes = [...st.tensors.values()].reduce((s, t) => s + t.data.length, 0);
    // Over the limit only when one tensor alone is (the 512x64 embedding is 131072 bytes).
    assert.ok(bytes <= 100_000 || st.tensors.size === 1, `${f} holds ${bytes} bytes`);
  }
  assert.deepEqual(Object.keys(index.weight_map), [...src.tensors.keys()].sort());
  assertSameTensors(openModelWeights(dir).tensors, src.tensors);

  writeModelWeights(dir, all);
  assert.deepEqual(fs.readdirSync(dir).sort(), ["model.safetensors"]);
  assert.ok(
    fs
      .readFileSync(path.join(dir, "model.safetensors"))
      .equals(fs.readFileSync(path.join(FIXTURES, "qwen3", "model.safetensors"))),
  );
  fs.rmSync(dir, { recursive: true });
});

test("writer rejects inconsistent tensors", () => {
  const dir = scratchDir();
  const f = path.join(dir, "x.safetensors");
  assertInputError(
    () => writeSafetensors(f, [{ name: "a", dtype: "F32", shape: [2], data: new Uint8Array(7) }]),
    f,
    '"a"',
    "8",
  );
  assertInputError(
    () =>
      writeSafetensors(f, [
        { name: "a", dtype: "U8", shape: [1], data: new Uint8Array(1) },
        { name: "a", dtype: "U8", shape: [1], data: new Uint8Array(1) },
      ]),
    "twice",
  );
  assert.equal(fs.existsSync(f), false);
  fs.rmSync(dir, { recursive: true });
});

// ---------------------------------------------------------------------------------------------------------
// Malformed input

const GOOD_HEADER = {
  __metadata__: { format: "pt" },
  a: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] },
  b: { dtype: "I8", shape: [4], data_offsets: [16, 20] },
};

test("the hand-assembled good image parses (so the malformed variants below fail for their own reason)", () => {
  const st = parseSafetensors(rawImage(GOOD_HEADER, new Uint8Array(20).fill(7)), "good.safetensors");
  assert.deepEqual(st.tensors.get("a")!.shape, [2, 2]);
  assert.equal(st.tensors.get("b")!.data.length, 4);
});

test("malformed files give an InputError naming the file (and the tensor)", () => {
  const dir = scratchDir();
  const data = new Uint8Array(20);
  const cases: [string, Buffer, (string | RegExp)[]][] = [
    ["truncated", Buffer.from([1, 0, 0]), ["shorter than the 8-byte"]],
    ["lying-length", rawImage(GOOD_HEADER, data, 5000n), ["runs past the end"]],
    ["huge-length", rawImage(GOOD_HEADER, data, 0xffffffffffffffffn), ["limit"]],
    ["not-json", rawImage("{not json}", data), ["not valid JSON"]],
    ["array-header", rawImage("[1,2]", data), ["not a JSON object"]],
    ["bad-utf8", Buffer.concat([rawImage("", new Uint8Array(0), 2n), Buffer.from([0xff, 0xfe])]), ["UTF-8"]],
    [
      "bad-dtype",
      rawImage({ a: { dtype: "Q4", shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4)),
      ['"a"', "Q4"],
    ],
    // a dtype of the format this tool does not read: said so (a quantized checkpoint?), not "not a valid file"
    [
      "fp8",
      rawImage({ a: { dtype: "F8_E4M3", shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4)),
      ['"a"', "is stored as F8_E4M3, which GoodVibe does not read", "unquantized release"],
    ],
    [
      "neg-shape",
      rawImage({ a: { dtype: "U8", shape: [-1], data_offsets: [0, 0] } }, data),
      ['"a"', "shape"],
    ],
    [
      "frac-shape",
      rawImage({ a: { dtype: "U8", shape: [1.5], data_offsets: [0, 1] } }, data),
      ['"a"', "shape"],
    ],
    [
      "bad-offsets",
      rawImage({ a: { dtype: "U8", shape: [1], data_offsets: [0] } }, data),
      ['"a"', "data_offsets"],
    ],
    [
      "reversed-offsets",
      rawImage({ a: { dtype: "U8", shape: [0], data_offsets: [4, 2] } }, data),
      ['"a"', "data_offsets"],
    ],
    [
      "wrong-span",
      rawImage({ a: { dtype: "F32", shape: [2, 2], data_offsets: [0, 12] } }, data),
      ['"a"', "needs 16"],
    ],
    [
      "overflow-shape",
      rawImage({ a: { dtype: "F32", shape: [2 ** 52, 2 ** 52], data_offsets: [0, 16] } }, data),
      ['"a"'],
    ],
    [
      "out-of-file",
      rawImage({ a: { dtype: "F32", shape: [8], data_offsets: [0, 32] } }, data),
      ['"a"', "past the data section"],
    ],
    [
      "overlap",
      rawImage(
        {
          a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
          b: { dtype: "F32", shape: [2], data_offsets: [8, 16] },
        },
        data,
      ),
      ['"a"', '"b"', "overlap"],
    ],
    ["bad-metadata", rawImage({ __metadata__: { format: 1 } }, data), ["__metadata__"]],
    ["entry-not-object", rawImage({ a: 3 }, data), ['"a"']],
  ];
  for (const [name, bytes, parts] of cases) {
    const file = path.join(dir, `${name}.safetensors`);
    fs.writeFileSync(file, bytes);
    assertInputError(() => readSafetensors(file), file, ...parts);
  }
  assertInputError(() => readSafetensors(path.join(dir, "missing.safetensors")), "missing.safetensors");
  fs.rmSync(dir, { recursive: true });
});

test("fuzz: seeded mutations of a valid file only ever give InputError", () => {
  const base = fs.readFileSync(path.join(FIXTURES, "qwen2", "model.safetensors"));
  const headerEnd = 8 + Number(base.readBigUInt64LE(0));
  // Keep the data small so a few hundred parses stay quick; the header still describes 26 tensors.
  const seedImage = base.subarray(0, headerEnd + 4096);
  const rand = prng(20240611);
  const pick = (n: number): number => Math.floor(rand() * n);
  const interesting = [
    '"',
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "-1",
    "1e300",
    "null",
    "9007199254740993",
    "\\u0000",
    "F64",
    "BOOL",
  ];
  let parsed = 0;
  for (let iter = 0; iter < 400; iter++) {
    const img = Buffer.from(seedImage);
    let bytes: Buffer = img;
    const kind = pick(6);
    if (kind === 0) {
      for (let k = 0; k < 1 + pick(8); k++) img[pick(Math.min(img.length, headerEnd))] = pick(256);
    } else if (kind === 1) {
      bytes = img.subarray(0, pick(img.length));
    } else if (kind === 2) {
      img.writeBigUInt64LE(BigInt(pick(2 ** 31)) * BigInt(1 + pick(3)), 0);
    } else if (kind === 3) {
      const at = 8 + pick(headerEnd - 8);
      const word = Buffer.from(interesting[pick(interesting.length)]!);
      bytes = Buffer.concat([img.subarray(0, at), word, img.subarray(at + pick(4))]);
    } else if (kind === 4) {
      // Rewrite a number in the header to something else, keeping the JSON well-formed more often.
      const text = img.subarray(8, headerEnd).toString("latin1");
      const nums = [...text.matchAll(/\d+/g)];
      const m = nums[pick(nums.length)]!;
      const replacement = ["0", "1", "4", "131072", "99999999999", "-4", "2.5"][pick(7)]!;
      const header = text.slice(0, m.index) + replacement + text.slice(m.index! + m[0].length);
      bytes = rawImage(header, img.subarray(headerEnd));
    } else {
      img.writeBigUInt64LE(BigInt(headerEnd - 8 - pick(16)), 0);
    }
    try {
      const st = parseSafetensors(bytes, "fuzz.safetensors");
      parsed++;
      for (const t of st.tensors.values())
        assert.ok(t.data.byteOffset >= bytes.byteOffset && t.data.length <= bytes.length);
    } catch (e) {
      if (!(e instanceof InputError))
        assert.fail(`iteration ${iter} (mutation ${kind}) threw ${e instanceof Error ? e.stack : String(e)}`);
      assert.ok(e.message.includes("fuzz.safetensors"));
    }
  }
  assert.ok(parsed < 400, "no mutation was rejected: the fuzz does not exercise validation");
});

// ---------------------------------------------------------------------------------------------------------
// Model folders

function copyShardedFixture(dir: string): void {
  for (const f of fs.readdirSync(path.join(FIXTURES, "llama", "sharded"))) {
    fs.copyFileSync(path.join(FIXTURES, "llama", "sharded", f), path.join(dir, f));
  }
}

function editIndex(dir: string, edit: (weightMap: Record<string, string>) => void): string {
  const file = path.join(dir, "model.safetensors.index.json");
  const index = JSON.parse(fs.readFileSync(file, "utf8"));
  edit(index.weight_map);
  fs.writeFileSync(file, JSON.stringify(index));
  return file;
}

test("sharded folders: shard paths that escape the folder as written are refused", () => {
  const root = scratchDir();
  const outside = path.join(root, "outside.safetensors");
  fs.copyFileSync(path.join(FIXTURES, "llama", "sharded", "model-00002-of-00002.safetensors"), outside);
  const bad: [string, string | null][] = [
    ["../outside.safetensors", ".."],
    [outside, "absolute"],
    ["sub/../../outside.safetensors", ".."],
    ["nope.safetensors", "does not exist"],
    ["sub", "not a regular file"],
  ];
  for (const [k, [shard, why]] of bad.entries()) {
    const dir = path.join(root, `m${k}`);
    fs.mkdirSync(dir);
    copyShardedFixture(dir);
    fs.mkdirSync(path.join(dir, "sub"));
    const index = editIndex(dir, (wm) => {
      for (const name of Object.keys(wm))
        if (wm[name] === "model-00002-of-00002.safetensors") wm[name] = shard;
    });
    assertInputError(() => openModelWeights(dir), index, shard, why!);
  }
  fs.rmSync(root, { recursive: true });
});

test("sharded folders: a symlink that stays inside the folder is fine", () => {
  const dir = scratchDir();
  copyShardedFixture(dir);
  fs.mkdirSync(path.join(dir, "blobs"));
  fs.renameSync(path.join(dir, "model-00002-of-00002.safetensors"), path.join(dir, "blobs", "x"));
  fs.symlinkSync(path.join(dir, "blobs", "x"), path.join(dir, "model-00002-of-00002.safetensors"));
  assertSameTensors(openModelWeights(dir).tensors, openModelWeights(path.join(FIXTURES, "llama")).tensors);
  fs.rmSync(dir, { recursive: true });
});

const sha256Hex = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

test("the Hugging Face cache's layout: every file of snapshots/<rev>/ a symlink to ../../blobs/<sha256>, outside the folder named, sharded or not (transformers follows them; a sharded one was refused)", () => {
  const root = scratchDir();
  for (const [name, from] of [
    ["sharded", path.join(FIXTURES, "llama", "sharded")],
    ["single", path.join(FIXTURES, "llama")],
  ] as const) {
    const repo = path.join(root, `models--org--${name}`);
    const snapshot = path.join(repo, "snapshots", "0123abcd");
    fs.mkdirSync(path.join(repo, "blobs"), { recursive: true });
    fs.mkdirSync(snapshot, { recursive: true });
    for (const f of fs.readdirSync(from)) {
      if (!fs.statSync(path.join(from, f)).isFile()) continue;
      const blob = path.join(repo, "blobs", sha256Hex(fs.readFileSync(path.join(from, f))));
      fs.copyFileSync(path.join(from, f), blob);
      fs.symlinkSync(path.relative(snapshot, blob), path.join(snapshot, f)); // as huggingface_hub links them
    }
    assertSameTensors(
      openModelWeights(snapshot).tensors,
      openModelWeights(path.join(FIXTURES, "llama")).tensors,
    );
  }
  fs.rmSync(root, { recursive: true });
});

test("sharded folders: missing, unlisted and duplicated tensors are refused", () => {
  const root = scratchDir();
  let dir = path.join(root, "missing");
  fs.mkdirSync(dir);
  copyShardedFixture(dir);
  let index = editIndex(dir, (wm) => (wm["model.extra.weight"] = "model-00001-of-00002.safetensors"));
  assertInputError(() => openModelWeights(dir), index, "model.extra.weight", "does not hold it");

  dir = path.join(root, "unlisted");
  fs.mkdirSync(dir);
  copyShardedFixture(dir);
  index = editIndex(dir, (wm) => delete wm["model.norm.weight"]);
  assertInputError(() => openModelWeights(dir), index, "model.norm.weight");

  dir = path.join(root, "dup");
  fs.mkdirSync(dir);
  copyShardedFixture(dir);
  // Put the embedding into shard 2 as well.
  const s1 = readSafetensors(path.join(dir, "model-00001-of-00002.safetensors"));
  const s2 = readSafetensors(path.join(dir, "model-00002-of-00002.safetensors"));
  const embed = s1.tensors.get("model.embed_tokens.weight")!;
  writeSafetensors(path.join(dir, "model-00002-of-00002.safetensors"), [
    ...[...s2.tensors.values()].map((t) => ({ ...t, data: Buffer.from(t.data) })),
    { ...embed, data: Buffer.from(embed.data) },
  ]);
  assertInputError(() => openModelWeights(dir), "model.embed_tokens.weight", /twice|does not assign/);

  dir = path.join(root, "badjson");
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), '{"weight_map": [1]}');
  assertInputError(() => openModelWeights(dir), "model.safetensors.index.json", "weight_map");
  fs.rmSync(root, { recursive: true });
});

test("pickle-only folders are refused with a conversion recipe; empty folders say what is expected", () => {
  const dir = scratchDir();
  fs.writeFileSync(path.join(dir, "pytorch_model.bin"), "not really a pickle");
  fs.writeFileSync(path.join(dir, "config.json"), "{}");
  assertInputError(
    () => openModelWeights(dir),
    dir,
    "pytorch_model.bin",
    "pickle",
    "safe_serialization=True",
    "save_file",
  );
  fs.rmSync(path.join(dir, "pytorch_model.bin"));
  assertInputError(() => openModelWeights(dir), dir, "model.safetensors");
  assertInputError(() => openModelWeights(path.join(dir, "absent")), "absent");
  fs.rmSync(dir, { recursive: true });
});
