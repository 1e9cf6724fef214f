/**
 * checkDeltaFits on a delta whose tensors do not fit the model although its recorded shape does (an edited or cut
 * file): refused naming the file, the module and what is wrong, before a fold or an export uses it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../scratch.js";
import { loadModel } from "../../src/models/index.js";
import { attachGoodVibe } from "../../src/method/goodvibe/model.js";
import { checkDeltaFits, readGoodVibeDelta, writeGoodVibeDelta } from "../../src/method/goodvibe/delta.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";
import { InputError } from "../../src/errors.js";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const MOD = "model.layers.0.self_attn.q_proj";

test("a delta whose rows or U do not fit the module is refused naming the file and the module", () => {
  const model = loadModel(path.join(FIX, "qwen2"));
  const layer = model.linear(MOD);
  const sel = new Map<string, RowSelection>([[MOD, { rows: [1, 4, 7], clusters: [0, 1, 0], nClusters: 2 }]]);
  const dir = scratchDir("gv-delta-fits-");
  const good = path.join(dir, "good.safetensors");
  writeGoodVibeDelta(good, model, sel, attachGoodVibe(loadModel(path.join(FIX, "qwen2")), sel));
  checkDeltaFits(model, readGoodVibeDelta(good), good); // the written delta fits
  const src = readSafetensors(good);
  const edited = (name: string, edit: Record<string, { shape: number[]; data: Uint8Array }>) => {
    const file = path.join(dir, name);
    writeSafetensors(
      file,
      [...src.tensors.values()].map((t) => ({
        name: t.name,
        dtype: t.dtype,
        shape: edit[t.name]?.shape ?? t.shape,
        data: edit[t.name]?.data ?? t.data,
      })),
      src.metadata,
    );
    return file;
  };
  const i64 = (v: number[]) => new Uint8Array(BigInt64Array.from(v.map(BigInt)).buffer);
  const cases: [string, Record<string, { shape: number[]; data: Uint8Array }>, RegExp][] = [
    ["dup.safetensors", { [`${MOD}.rows`]: { shape: [3], data: i64([1, 4, 1]) } }, /rows holds row 1 twice/],
    [
      "range.safetensors",
      { [`${MOD}.rows`]: { shape: [3], data: i64([1, 4, layer.outFeatures]) } },
      new RegExp(`rows holds ${layer.outFeatures}, outside the module's ${layer.outFeatures} rows`),
    ],
    [
      "width.safetensors",
      {
        [`${MOD}.U`]: {
          shape: [2, layer.inFeatures - 1],
          data: new Uint8Array(new Float32Array(2 * (layer.inFeatures - 1)).buffer),
        },
      },
      new RegExp(
        `U has shape \\[2,${layer.inFeatures - 1}\\]: its rows must have the module's input width ${layer.inFeatures}`,
      ),
    ],
  ];
  for (const [name, edit, want] of cases) {
    const file = edited(name, edit);
    assert.throws(
      () => checkDeltaFits(model, readGoodVibeDelta(file), file),
      (e: Error) =>
        e instanceof InputError && e.message.startsWith(`${file}: ${MOD}`) && want.test(e.message),
      name,
    );
  }
});
