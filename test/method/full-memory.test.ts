/**
 * Full fine-tuning's up-front memory check (method/full.ts, flops.ts fullTrainingNeedBytes) counts each byte once:
 * weights the process already holds (converted from the checkpoint's dtype, or copied side by side into a
 * LinearGroup at load) are out of MemAvailable already, so only the state, the measured tenth and the weights still
 * mapped from the checkpoint (page cache, counted as free) are asked for. The free memory is a faked reading; the
 * reference is arithmetic on config.json's shapes: P parameters, W = P x bytes of the compute dtype, state 14 P
 * (mixed precision) or 12 P (float32), need = 1.1 (W + S) less the weights held.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { FIXTURES, makeTinyChatModel } from "../evalcore/make-model.js";
import { loadModel } from "../../src/models/load.js";
import { attachFull } from "../../src/method/full.js";
import { ResourceError } from "../../src/errors.js";

// a float32 checkpoint (the tiny chat model) and a bfloat16 one (the Llama fixture's)
const made = makeTinyChatModel({ hidden: 64, layers: 2 });
after(() => fs.rmSync(made.dir, { recursive: true, force: true }));
const F32_DIR = made.dir;
const BF16_DIR = path.join(FIXTURES, "llama/model-bf16");

/** Parameters, and those of q/k/v and gate/up (copied side by side at load in any dtype), from config.json. */
function shapes(dir: string): { P: number; grouped: number } {
  const c = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  const n = (k: string) => c[k] as number;
  const [H, I, L, V] = [n("hidden_size"), n("intermediate_size"), n("num_hidden_layers"), n("vocab_size")];
  assert.equal(c.tie_word_embeddings, false);
  const D = n("head_dim");
  const qkv = H * D * (n("num_attention_heads") + 2 * n("num_key_value_heads"));
  const gateUp = 2 * H * I;
  const perLayer = qkv + n("num_attention_heads") * D * H + gateUp + I * H + 2 * H;
  // the embedding and lm_head, the layers, the final norm
  return { P: 2 * V * H + L * perLayer + H, grouped: L * (qkv + gateUp) };
}

/** attachFull's refusal at `available` bytes of free memory, or null where it accepts. */
function check(dir: string, dtype: "float32" | "bfloat16", available: number): string | null {
  const model = loadModel(dir, { dtype });
  try {
    attachFull(model, { availableMemoryBytes: available }).detach();
    return null;
  } catch (e) {
    if (!(e instanceof ResourceError)) throw e;
    return e.message;
  } finally {
    model.frozenDx.release();
  }
}

/** The check passes at `need` free bytes and refuses one byte fewer; the refusal's text. */
function assertNeed(dir: string, dtype: "float32" | "bfloat16", need: number): string {
  assert.equal(check(dir, dtype, need), null, `${dtype}: refused with ${need} bytes free`);
  const refused = check(dir, dtype, need - 1);
  assert.ok(refused !== null, `${dtype}: accepted with ${need - 1} bytes free`);
  assert.match(refused, /needs about .* of memory; only .* is available/);
  return refused;
}

test("float32 from a bfloat16 checkpoint (judge train --method full): the state and the tenth, 13.6 bytes per parameter", () => {
  const { P } = shapes(BF16_DIR);
  // 1.1 x (4 + 12) P less the 4 P of float32 weights the load made (17.6 P before)
  const msg = assertNeed(BF16_DIR, "float32", Math.ceil(1.1 * 16 * P - 4 * P));
  assert.match(msg, /less the .* of weights already in memory/);
});

test("bfloat16 from a float32 checkpoint: every weight converted, 15.6 bytes per parameter", () => {
  const { P } = shapes(F32_DIR);
  assertNeed(F32_DIR, "bfloat16", Math.ceil(1.1 * 16 * P - 2 * P));
});

test("the checkpoint's own dtype: the mapped weights count, the grouped copies do not", () => {
  for (const [dir, dtype, bytes] of [
    [F32_DIR, "float32", 4],
    [BF16_DIR, "bfloat16", 2],
  ] as const) {
    const { P, grouped } = shapes(dir);
    assertNeed(dir, dtype, Math.ceil(1.1 * 16 * P - bytes * grouped));
  }
});
