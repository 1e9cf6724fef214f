/**
 * One declaration per native op: OP(name, "signature") in native/src/*.cc registers the op and carries its
 * TypeScript signature; src/tensor/native-ops.ts is generated from that table (native/gen-types.mjs). These
 * tests fail when the committed interface and the built addon disagree, or when the addon exports a function
 * that is not in its op table.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { native } from "../../src/tensor/native.js";
import { NATIVE_OP_NAMES } from "../../src/tensor/native-ops.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

test("src/tensor/native-ops.ts is what native/gen-types.mjs makes from the built addon's op table", async () => {
  const gen = (await import(path.join(ROOT, "native/gen-types.mjs"))) as {
    renderNativeOps(signatures: Record<string, string>): Promise<string>;
    OUTPUT: string;
  };
  const want = await gen.renderNativeOps(native.opSignatures);
  const have = fs.readFileSync(gen.OUTPUT, "utf8");
  assert.equal(have, want, "the op table changed: rebuild the addon and run `node native/gen-types.mjs`");
});

test("the addon exports exactly the ops of its table (plus its two classes and the table itself)", () => {
  void native.version(); // loads the addon the way the library does
  const file = process.env.GOODVIBE_ADDON ?? path.join(ROOT, "native/build/Release/goodvibe_torch.node");
  const addon = createRequire(import.meta.url)(file) as Record<string, unknown>;
  const functions = Object.keys(addon).filter((k) => !["NativeTensor", "AdamW", "opSignatures"].includes(k));
  assert.deepEqual(functions.sort(), [...NATIVE_OP_NAMES].sort());
  assert.deepEqual(Object.keys(native.opSignatures).sort(), [...NATIVE_OP_NAMES].sort());
  for (const name of NATIVE_OP_NAMES) assert.equal(typeof addon[name], "function", name);
});
