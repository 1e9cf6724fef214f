/**
 * Log-likelihood scoring cuts a request to the model's window as lm-evaluation-harness does
 * (HFLM._loglikelihood_tokens: `inp = (context_enc + continuation_enc)[-(max_length + 1):][:-1]`, the continuation
 * scored by the logits at its last len(continuation) positions, max_length the model's max_position_embeddings).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { BuiltinUtilityModel } from "../../src/recipes/evaluate.js";
import { encodeLoglikelihoodPair, loglikelihoodWindow } from "../../src/eval/utility/model.js";
import { Tensor, noGrad, tidy } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";

const made = makeTinyChatModel({ seed: 11 });
after(() => fs.rmSync(made.dir, { recursive: true, force: true }));

test("loglikelihoodWindow is the harness's slice", () => {
  const ctx = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  // fits: all but the last token, the continuation scored from the context's last position on
  assert.deepEqual(loglikelihoodWindow(ctx, [11, 12], 100), { input: ctx.concat(11), from: 9 });
  // (ctx + cont)[-(5 + 1):][:-1] = [7, 8, 9, 10, 11]; the logits at positions 3, 4 (after 10, 11) score 11, 12
  assert.deepEqual(loglikelihoodWindow(ctx, [11, 12], 5), { input: [7, 8, 9, 10, 11], from: 3 });
  // exactly the window: nothing lost
  assert.deepEqual(loglikelihoodWindow([1, 2, 3], [4], 3), { input: [1, 2, 3], from: 2 });
  assert.throws(() => loglikelihoodWindow(ctx, [1, 2, 3, 4, 5, 6], 5), InputError);
});

test("a request longer than the model's context is scored on its last max_length tokens, as the harness does", async () => {
  const backend = await BuiltinBackend.load(made.dir);
  const model = backend.model;
  const tok = backend.tokenizer!;
  const window = model.cfg.maxPositionEmbeddings;
  // a few-shot context longer than the window
  let context = "";
  while (tok.encode(context, { addSpecialTokens: true }).length < window + 300)
    context += "Question: what does def f(x): return x * 2 give for 21?\nAnswer: 42\n\n";
  context += "Question: and for 5?\nAnswer:";
  const continuation = " 10";
  const { context: ctx, continuation: cont } = encodeLoglikelihoodPair(tok, context, continuation);
  assert.ok(ctx.length + cont.length > window + 1);

  // the reference, computed here from the harness's code: its input and the logits it reads
  const inp = [...ctx, ...cont].slice(-(window + 1)).slice(0, -1);
  assert.equal(inp.length, window);
  const want = noGrad(() =>
    tidy(() => {
      const logits = model.forward(Tensor.fromArray(inp, [1, inp.length], "int64"));
      const lp = logits
        .narrow(1, inp.length - cont.length, cont.length)
        .logSoftmax(-1)
        .squeeze(0);
      return lp
        .gather(1, Tensor.fromArray(cont, [cont.length, 1], "int64"))
        .sum()
        .item();
    }),
  );
  const [got] = await new BuiltinUtilityModel(model, tok).loglikelihood([{ context, continuation }]);
  assert.ok(Number.isFinite(got!.logprob));
  assert.ok(Math.abs(got!.logprob - want) < 1e-4, `${got!.logprob} vs the harness's ${want}`);

  // a request that fits is unchanged: the whole pair
  const short = await new BuiltinUtilityModel(model, tok).loglikelihood([
    { context: "Question: and for 5?\nAnswer:", continuation },
  ]);
  const s = encodeLoglikelihoodPair(tok, "Question: and for 5?\nAnswer:", continuation);
  const all = [...s.context, ...s.continuation];
  const ref = noGrad(() =>
    tidy(() =>
      model
        .forward(Tensor.fromArray(all, [1, all.length], "int64"))
        .narrow(1, s.context.length - 1, s.continuation.length)
        .logSoftmax(-1)
        .squeeze(0)
        .gather(1, Tensor.fromArray(s.continuation, [s.continuation.length, 1], "int64"))
        .sum()
        .item(),
    ),
  );
  assert.ok(Math.abs(short[0]!.logprob - ref) < 1e-5);
});
