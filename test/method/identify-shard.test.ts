/**
 * Sharded identification: exact sums that do not depend on the order of additions (against a BigInt reference),
 * and n shards merged in any order giving the neuron map of one run bit for bit (against identify() itself and
 * against a BigInt sum of the shards' partials); refusals of sets that cannot merge.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { loadModel } from "../../src/models/index.js";
import {
  identify,
  planBatches,
  type IdentifyOptions,
  type IdentifySample,
} from "../../src/method/goodvibe/identify.js";
import { identifyShard, mergeIdentifyShards } from "../../src/method/goodvibe/identify-shard.js";
import type { NeuronMap } from "../../src/method/goodvibe/neuron-map.js";
import { parseShard } from "../../src/util/shard.js";
import { readSafetensors } from "../../src/io/safetensors.js";
import { ExactSums } from "../../src/util/exact-sum.js";
import { setF32Products } from "../../src/tensor/index.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const work = scratchDir("gv-identify-shard-");
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** A deterministic generator (LCG), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

function shuffled<T>(xs: readonly T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** x as an exact integer count of 2^-1074 (the smallest subnormal): every finite float64 is one. */
function units(x: number): bigint {
  const v = new DataView(new ArrayBuffer(8));
  v.setFloat64(0, x);
  const bits = v.getBigUint64(0);
  const exp = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  const mag = exp === 0 ? frac : (frac | (1n << 52n)) << BigInt(exp - 1);
  return bits >> 63n ? -mag : mag;
}

/** Σ xs exactly in BigInt, rounded once to the nearest float64 (ties to even): the independent reference. */
function exactReference(xs: readonly number[]): number {
  let acc = 0n;
  for (const x of xs) acc += units(x);
  const neg = acc < 0n;
  let m = neg ? -acc : acc;
  let shift = 0;
  const len = m.toString(2).length;
  if (len > 53) {
    shift = len - 53;
    const rest = m & ((1n << BigInt(shift)) - 1n);
    const half = 1n << BigInt(shift - 1);
    m >>= BigInt(shift);
    if (rest > half || (rest === half && (m & 1n) === 1n)) m += 1n;
  }
  // m < 2^54 is exact as a Number; the power of two scales exactly while the result is normal
  const r = Number(m) * 2 ** (shift - 537) * 2 ** -537;
  return neg ? -r : r;
}

test("ExactSums: the correctly rounded exact sum, whatever the order and grouping", () => {
  const rand = rng(7);
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + Math.floor(rand() * 60);
    // magnitudes over 12 decades, with cancellation-free positive values like importances, and some negatives
    const xs = Array.from({ length: n }, () => (rand() < 0.1 ? -1 : 1) * 10 ** (rand() * 12 - 9) * rand());
    const want = exactReference(xs);
    const orders = [xs, [...xs].reverse(), shuffled(xs, rand)];
    for (const order of orders) {
      const s = new ExactSums(1, 1);
      for (const x of order) s.add(0, x);
      assert.equal(s.value(0), want, `trial ${trial}`);
    }
    // split into parts summed apart, then merged (as shards are)
    const cut = Math.floor(rand() * n);
    const a = new ExactSums(1);
    const b = new ExactSums(1);
    xs.forEach((x, i) => (i < cut ? a : b).add(0, x));
    b.addAll(a);
    assert.equal(b.value(0), want);
    // saved and read back (identify-state, shard files)
    const { width, data } = b.partials();
    assert.equal(ExactSums.fromPartials(1, width, data).value(0), want);
  }
  // where plain float64 addition depends on the order: 1 + 2^-53 + 2^-53 vs 2^-53 + 2^-53 + 1
  const s = new ExactSums(2);
  for (const x of [1, 2 ** -53, 2 ** -53]) s.add(0, x);
  for (const x of [2 ** -53, 2 ** -53, 1]) s.add(1, x);
  assert.equal(s.value(0), 1 + 2 ** -52);
  assert.equal(s.value(1), 1 + 2 ** -52);
  assert.notEqual(1 + 2 ** -53 + 2 ** -53, 2 ** -53 + 2 ** -53 + 1, "plain addition is order-dependent here");
  assert.throws(() => s.add(0, NaN), /non-finite/);
});

test("--shard i/n is parsed strictly", () => {
  assert.deepEqual(parseShard("3/8"), { index: 3, count: 8 });
  for (const bad of ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3", "-1/2"])
    assert.throws(() => parseShard(bad), /expected i\/n/, bad);
});

const withoutWall = (m: NeuronMap) => ({ ...m, wallSeconds: 0 });

for (const mode of ["gradient", "activation"] as const) {
  test(`${mode}: n shards merged in any order are one run's neuron map, bit for bit`, async () => {
    const dir = path.join(FIX, "qwen3");
    const model = loadModel(dir);
    const rand = rng(11);
    const samples: IdentifySample[] = Array.from({ length: 17 }, (_, i) => ({
      id: `r${i}`,
      inputIds: Array.from({ length: 3 + Math.floor(rand() * 40) }, () =>
        Math.floor(rand() * model.cfg.vocabSize),
      ),
      label: (i % 2) as 0 | 1,
    }));
    const opts: IdentifyOptions = {
      labelTokenIds: [48, 49],
      topK: 6,
      mode,
      batchSize: 3,
      batchTokens: 90,
      gradientCheckpointing: false,
      profileSamples: 11,
      checkpointEvery: 0,
      source: { model: "fixture", data: "fixture", prompt: "fixture", labels: { unsafe: "1", safe: "0" } },
    };
    const batches = planBatches(
      samples.map((s) => s.inputIds.length),
      3,
      90,
    ).length;
    assert.ok(batches >= 6, `${batches} batches`);
    const one = await identify(model, samples, opts);
    const single = path.join(work, `${mode}-1of1`);
    await identifyShard(model, samples, opts, { index: 1, count: 1 }, single);
    assert.deepEqual(withoutWall(mergeIdentifyShards([single])), withoutWall(one));

    // more shards than batches: some shards are empty, and still merge
    for (const n of [2, 3, batches + 2]) {
      const dirs: string[] = [];
      for (let i = 1; i <= n; i++) {
        const d = path.join(work, `${mode}-${i}of${n}`);
        const info = await identifyShard(model, samples, opts, { index: i, count: n }, d);
        assert.equal(info.shard.index, i);
        dirs.push(d);
      }
      const merged = mergeIdentifyShards(shuffled(dirs, rand));
      assert.deepEqual(withoutWall(merged), withoutWall(one), `${n} shards`);
      assert.ok(merged.modules[Object.keys(merged.modules)[0]!]!.profiles!.length === 6);

      // the float64 sums: the one-shard run's sum/<module> equal the BigInt sum of the n shards' partials
      const parts = dirs.map((d) => readSafetensors(path.join(d, "sums.safetensors")));
      const whole = readSafetensors(path.join(single, "sums.safetensors"));
      for (const name of Object.keys(one.modules)) {
        const want = new Float64Array(new Uint8Array(whole.tensors.get(`sum/${name}`)!.data).buffer);
        for (let j = 0; j < want.length; j += 7) {
          const addends: number[] = [];
          for (const p of parts) {
            const rec = p.tensors.get(`partials/${name}`)!;
            const w = rec.shape[1]!;
            const data = new Float64Array(new Uint8Array(rec.data).buffer);
            for (let k = 0; k < w; k++) addends.push(data[j * w + k]!);
          }
          assert.equal(exactReference(addends), want[j], `${name}[${j}] over ${n} shards`);
        }
      }
    }

    // what cannot merge
    const two = [1, 2].map((i) => path.join(work, `${mode}-${i}of3`));
    assert.throws(() => mergeIdentifyShards(two), /1 of 3 shards missing \(3\)/);
    assert.throws(() => mergeIdentifyShards([...two, two[0]!]), /shard 1\/3 is given twice/);
    assert.throws(
      () => mergeIdentifyShards([path.join(work, `${mode}-1of2`), path.join(work, `${mode}-2of3`)]),
      /shard count differs/,
    );
    const other = path.join(work, `${mode}-other`);
    await identifyShard(
      model,
      samples.map((s, i) => (i === 0 ? { ...s, inputIds: [...s.inputIds, 5] } : s)),
      opts,
      { index: 3, count: 3 },
      other,
    );
    assert.throws(() => mergeIdentifyShards([...two, other]), /different runs \(data or settings differs\)/);
    const plan = path.join(work, `${mode}-plan`);
    await identifyShard(model, samples, { ...opts, batchSize: 2 }, { index: 3, count: 3 }, plan);
    assert.throws(() => mergeIdentifyShards([...two, plan]), /batch plan/);
    assert.throws(() => mergeIdentifyShards([work]), /not an identification shard/);
  });
}

test("a resumed shard ends bit for bit where an uninterrupted one ends", async () => {
  const dir = path.join(FIX, "llama");
  const model = loadModel(dir);
  const rand = rng(5);
  const samples: IdentifySample[] = Array.from({ length: 12 }, (_, i) => ({
    id: `s${i}`,
    inputIds: Array.from({ length: 2 + Math.floor(rand() * 30) }, () =>
      Math.floor(rand() * model.cfg.vocabSize),
    ),
    label: (i % 2) as 0 | 1,
  }));
  const opts: IdentifyOptions = {
    labelTokenIds: [48, 49],
    topK: 4,
    mode: "gradient",
    batchSize: 2,
    batchTokens: 0,
    gradientCheckpointing: false,
    profileSamples: 5,
    checkpointEvery: 1,
    source: { model: "fixture", data: "fixture", prompt: "fixture", labels: { unsafe: "1", safe: "0" } },
  };
  const shard = { index: 2, count: 2 };
  const ref = path.join(work, "resume-ref");
  await identifyShard(model, samples, opts, shard, ref);
  const runDir = fs.mkdtempSync(path.join(work, "run-"));
  const stop = new AbortController();
  const cut = path.join(work, "resume-cut");
  await assert.rejects(
    identifyShard(
      model,
      samples,
      { ...opts, runDir, signal: stop.signal, onProgress: (d) => void (d >= 2 && stop.abort()) },
      shard,
      cut,
    ),
    /interrupted after/,
  );
  assert.ok(!fs.existsSync(cut), "no shard folder before the shard is done");
  await identifyShard(model, samples, { ...opts, runDir }, shard, cut);
  const strip = (d: string) => {
    const j = JSON.parse(fs.readFileSync(path.join(d, "shard.json"), "utf8"));
    delete j.wallSeconds;
    return j;
  };
  assert.deepEqual(strip(cut), strip(ref));
  for (const f of ["sums.safetensors", "profiles.f32"])
    assert.ok(fs.readFileSync(path.join(cut, f)).equals(fs.readFileSync(path.join(ref, f))), f);
});

test("shards computed under two bf16 routes (machines of different CPUs) merge with a warning naming each shard's build; one route merges silently", async () => {
  const dir = path.join(FIX, "qwen3");
  const rand = rng(5);
  const model = loadModel(dir, { dtype: "bfloat16" });
  const samples: IdentifySample[] = Array.from({ length: 8 }, (_, i) => ({
    id: `b${i}`,
    inputIds: Array.from({ length: 4 + Math.floor(rand() * 20) }, () =>
      Math.floor(rand() * model.cfg.vocabSize),
    ),
    label: (i % 2) as 0 | 1,
  }));
  const opts: IdentifyOptions = {
    labelTokenIds: [48, 49],
    topK: 4,
    mode: "gradient",
    batchSize: 2,
    gradientCheckpointing: false,
    profileSamples: 0,
    checkpointEvery: 0,
    source: { model: "fixture", data: "fixture", prompt: "fixture", labels: { unsafe: "1", safe: "0" } },
  };
  const prev = setF32Products("on");
  try {
    const shard = async (i: number, name: string) => {
      const d = path.join(work, `route-${name}-${i}of3`);
      await identifyShard(model, samples, opts, { index: i, count: 3 }, d);
      return d;
    };
    const a = [await shard(1, "a"), await shard(2, "a"), await shard(3, "a")];
    const warned: string[] = [];
    mergeIdentifyShards(a, { warn: (m) => warned.push(m) });
    assert.equal(warned.length, 0, "one build made them all");
    setF32Products("off");
    const b2 = await shard(2, "b");
    const merged = mergeIdentifyShards([a[0]!, b2, a[2]!], { warn: (m) => warned.push(m) });
    assert.equal(warned.length, 1);
    assert.match(warned[0]!, /computed by 2 builds/);
    assert.match(
      warned[0]!,
      /shards 1, 3 by goodvibe [^;]*bf16 products: float32, rounded once\); shard 2 by goodvibe [^;]*bf16 products: libtorch's own\)/,
    );
    assert.match(warned[0]!, /differ in bf16 products/);
    assert.match(warned[0]!, /GOODVIBE_F32_PRODUCTS=1/);
    assert.equal(merged.source.samples, samples.length, "they still merge");
  } finally {
    setF32Products(prev);
  }
});
