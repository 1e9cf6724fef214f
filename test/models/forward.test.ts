/**
 * The four families against PyTorch references (test/fixtures/<family>/cases.json.gz, see its README):
 * full logits, padded batches, KV-cache decoding, greedy generation, bf16 and sharded loading.
 */
import { readFixtureJson } from "../fixture-json.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { onBothDecoderPaths } from "./decoder-paths.js";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, generate, KVCache } from "../../src/models/index.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { type Nested, maxAbsDiff, flat } from "../numeric.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");
const FAMILIES = ["llama", "qwen2", "qwen3", "gemma3"] as const;

function ids(rows: number[][]): Tensor {
  return Tensor.fromArray(rows.flat(), [rows.length, rows[0].length], "int64");
}

onBothDecoderPaths(() => {
  for (const family of FAMILIES) {
    const dir = path.join(FIX, family);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const cases = readFixtureJson(path.join(dir, "cases.json.gz")) as any;

    test(`${family}: batch logits match PyTorch within 1e-4`, () => {
      const model = loadModel(dir);
      const logits = noGrad(() => model.forward(ids(cases.batch.input_ids)));
      assert.deepEqual(logits.shape, [2, 12, 512]);
      const d = maxAbsDiff(logits.toFloat32Array(), flat(cases.batch.logits));
      assert.ok(d < 1e-4, `max abs diff ${d}`);
    });

    test(`${family}: left-padded batch matches at real positions`, () => {
      const model = loadModel(dir);
      const lp = cases.left_padded;
      const logits = noGrad(() =>
        model.forward(ids(lp.input_ids), {
          attentionMask: ids(lp.attention_mask),
          positionIds: ids(lp.position_ids),
        }),
      );
      const all = logits.toFloat32Array();
      for (let b = 0; b < 2; b++) {
        const got: number[] = [];
        for (const p of lp.real_positions[b] as number[])
          got.push(...all.subarray((b * 12 + p) * 512, (b * 12 + p + 1) * 512));
        const d = maxAbsDiff(got, flat(lp.logits_at_real_positions[b]));
        assert.ok(d < 1e-4, `seq ${b}: max abs diff ${d}`);
      }
      // the default position ids (cumsum of the mask) are the same as the given ones
      const byDefault = noGrad(() =>
        model.forward(ids(lp.input_ids), { attentionMask: ids(lp.attention_mask) }),
      );
      const real0 = (lp.real_positions[0] as number[])[0];
      const d2 = maxAbsDiff(
        byDefault.toFloat32Array().subarray(real0 * 512, 12 * 512),
        all.subarray(real0 * 512, 12 * 512),
      );
      assert.ok(d2 === 0, `default position ids differ by ${d2}`);
    });

    test(`${family}: KV-cache incremental decoding matches the reference`, () => {
      const model = loadModel(dir);
      const inc = cases.incremental_decode;
      const tokens = inc.input_ids as number[];
      const cache = new KVCache(model.cfg.numLayers);
      const rows: number[] = [];
      noGrad(() => {
        const pre = model.forward(ids([tokens.slice(0, inc.prefill_len)]), { cache });
        rows.push(...pre.toFloat32Array().subarray((inc.prefill_len - 1) * 512));
        for (let t = inc.prefill_len; t < tokens.length; t++) {
          rows.push(...model.forward(ids([[tokens[t]]]), { cache }).toFloat32Array());
        }
      });
      const d = maxAbsDiff(rows, flat(inc.logits_positions_4_to_12));
      assert.ok(d < 1e-4, `max abs diff ${d}`);
    });

    test(`${family}: greedy generation gives the reference tokens and step logits`, () => {
      const model = loadModel(dir);
      const g = cases.greedy;
      const steps: number[] = [];
      const [out] = generate(model, [g.prompt_ids], {
        maxNewTokens: g.max_new_tokens,
        onStepLogits: (l) => steps.push(...l.toFloat32Array()),
      });
      assert.deepEqual(out, g.new_token_ids);
      const d = maxAbsDiff(steps, flat(g.step_logits));
      assert.ok(d < 1e-4, `max abs diff ${d}`);
    });

    test(`${family}: bf16 checkpoint widened to f32 matches; bf16 compute is close`, () => {
      const bfDir = path.join(dir, "model-bf16");
      const wide = loadModel(bfDir, { dtype: "float32" });
      const x = ids(cases.batch.input_ids);
      const d = maxAbsDiff(
        noGrad(() => wide.forward(x)).toFloat32Array(),
        flat(cases.bf16.logits_bf16_weights_f32_compute),
      );
      assert.ok(d < 1e-4, `f32 compute of bf16 weights: ${d}`);
      const bf = loadModel(bfDir);
      assert.equal(bf.dtype, "bfloat16");
      const got = noGrad(() => bf.forward(x)).toFloat32Array();
      const ref = flat(cases.bf16.logits_bf16_weights_f32_compute);
      // bf16 arithmetic: a few tenths at worst (fixture README), and the argmax mostly agrees
      const dd = maxAbsDiff(got, ref);
      assert.ok(dd < 0.6, `bf16 compute vs f32 compute: ${dd}`);
      let agree = 0;
      for (let r = 0; r < 24; r++) {
        const a = got.subarray(r * 512, (r + 1) * 512);
        const b = ref.slice(r * 512, (r + 1) * 512);
        if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) agree++;
      }
      assert.ok(agree >= 20, `argmax agreement ${agree}/24`);
    });

    test(`${family}: sharded checkpoint loads to the same logits`, () => {
      const a = noGrad(() => loadModel(dir).forward(ids(cases.batch.input_ids))).toFloat32Array();
      const b = noGrad(() =>
        loadModel(path.join(dir, "sharded")).forward(ids(cases.batch.input_ids)),
      ).toFloat32Array();
      assert.equal(maxAbsDiff(a, b), 0);
    });
  }
});

test("gemma3: the sliding window matters (positions >= 6 differ when it is ignored)", () => {
  const dir = path.join(FIX, "gemma3");
  const cases = readFixtureJson(path.join(dir, "cases.json.gz"));
  const model = loadModel(dir);
  const full = loadModel(dir);
  // a window longer than the sequence: sliding layers keep their local RoPE but see every earlier token
  (full.cfg as { slidingWindow: number }).slidingWindow = 1000;
  const x = ids(cases.batch.input_ids);
  const a = noGrad(() => model.forward(x)).toFloat32Array();
  const b = noGrad(() => full.forward(x)).toFloat32Array();
  const late = maxAbsDiff(a.subarray(6 * 512, 12 * 512), b.subarray(6 * 512, 12 * 512));
  const early = maxAbsDiff(a.subarray(0, 6 * 512), b.subarray(0, 6 * 512));
  assert.equal(early, 0);
  assert.ok(late > 0.1, `late positions differ by only ${late}`);
});

test("token ids out of the vocabulary are refused with a clear error", () => {
  const model = loadModel(path.join(FIX, "llama"));
  assert.throws(() => model.forward(ids([[1, 2, 999]])), /token id out of range \[0, 512\): saw 999/);
});
