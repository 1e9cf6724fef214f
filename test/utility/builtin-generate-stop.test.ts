/**
 * The built-in engine's greedy answers for GSM8K and HumanEval (recipes/evaluate.ts BuiltinUtilityModel.generate)
 * end at their first stop sequence instead of running to maxNewTokens and being cut after: the same text as the
 * whole answer cut at the stop (the reference), from no more decoding steps than the tokens up to the stop.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { generateAsync } from "../../src/models/generate.js";
import { BuiltinUtilityModel } from "../../src/recipes/evaluate.js";
import { cutAtStop } from "../../src/eval/utility/model.js";

const made = makeTinyChatModel({ seed: 11 });
after(() => fs.rmSync(made.dir, { recursive: true, force: true }));

test("a greedy utility answer stops at its stop sequence: the text of the whole answer cut there, fewer steps", async () => {
  const backend = await BuiltinBackend.load(made.dir);
  const tok = backend.tokenizer!;
  const model = backend.model;
  const dec = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true });
  const MAX = 40;
  const prompts = ["def f(x):", "int main("];
  // the reference: each whole answer (end-of-sequence token included, as the engine returns it)
  const full: number[][] = [];
  for (const p of prompts)
    full.push(
      (
        await generateAsync(model, [tok.encode(p, { addSpecialTokens: true })], {
          maxNewTokens: MAX,
          eosTokenIds: tok.eosTokenIds,
        })
      )[0]!,
    );
  const texts = full.map(dec);
  // a stop across a token boundary in the middle of the first answer, first occurring there
  let stop = "";
  for (let j = 12; j < full[0]!.length - 4 && !stop; j++) {
    const at = dec(full[0]!.slice(0, j)).length;
    const cand = texts[0]!.slice(at - 2, at + 2);
    if (cand.length === 4 && !cand.includes("\uFFFD") && texts[0]!.indexOf(cand) === at - 2) stop = cand;
  }
  assert.ok(stop, `no stop found in ${JSON.stringify(texts[0])}`);
  const stops = [stop, "\nQuestion:"];
  // steps: the first k whose whole characters hold a stop, else the whole answer
  const steps = full.map((ids) => {
    for (let k = 1; k <= ids.length; k++) {
      const t = dec(ids.slice(0, k));
      if (stops.some((s) => t.includes(s)) && !t.endsWith("\uFFFD")) return k;
    }
    return ids.length;
  });
  assert.ok(steps[0]! < full[0]!.length);

  let calls = 0;
  const hidden = model.hidden.bind(model);
  (model as { hidden: typeof model.hidden }).hidden = (...args: Parameters<typeof model.hidden>) => {
    calls++;
    return hidden(...args);
  };
  try {
    const um = new BuiltinUtilityModel(model, tok);
    const got = await um.generate(prompts, { maxNewTokens: MAX, stop: stops });
    assert.deepEqual(
      got,
      texts.map((t) => cutAtStop(t, stops)),
    );
    assert.equal(
      calls,
      steps[0]! + steps[1]!,
      `decoding steps (whole answers: ${full.map((f) => f.length)})`,
    );
  } finally {
    (model as { hidden: typeof model.hidden }).hidden = hidden;
  }
});
