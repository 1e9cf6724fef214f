/**
 * The built-in backend's text answers (BuiltinBackend.generateText, generateChat) end at their first stop string as
 * it is generated instead of running on to maxNewTokens and being cut after: the same text as the whole answer cut
 * at the stop (the reference), from no more decoding steps than the tokens up to the stop.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { makeTinyChatModel } from "../evalcore/make-model.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { generateAsync } from "../../src/models/generate.js";
import { cutAtStop } from "../../src/eval/utility/model.js";

const made = makeTinyChatModel({ seed: 11 });
after(() => fs.rmSync(made.dir, { recursive: true, force: true }));
const MAX = 40;

/** A stop of 4 characters across a token boundary in the middle of `ids`' text, first occurring there. */
function stopInside(ids: number[], dec: (ids: number[]) => string): string {
  const text = dec(ids);
  for (let j = 12; j < ids.length - 4; j++) {
    const at = dec(ids.slice(0, j)).length;
    const cand = text.slice(at - 2, at + 2);
    if (cand.length === 4 && !cand.includes("\uFFFD") && text.indexOf(cand) === at - 2) return cand;
  }
  throw new Error(`no stop found in ${JSON.stringify(text)}`);
}

/** The first k whose whole characters hold a stop, else all of `ids`: the steps a row ending at its stop takes. */
function stepsTo(ids: number[], stops: string[], dec: (ids: number[]) => string): number {
  for (let k = 1; k <= ids.length; k++) {
    const t = dec(ids.slice(0, k));
    if (stops.some((s) => t.includes(s)) && !t.endsWith("\uFFFD")) return k;
  }
  return ids.length;
}

async function countingSteps<T>(backend: BuiltinBackend, body: () => Promise<T>): Promise<[T, number]> {
  const model = backend.model;
  let calls = 0;
  const hidden = model.hidden.bind(model);
  (model as { hidden: typeof model.hidden }).hidden = (...args: Parameters<typeof model.hidden>) => {
    calls++;
    return hidden(...args);
  };
  try {
    return [await body(), calls];
  } finally {
    (model as { hidden: typeof model.hidden }).hidden = hidden;
  }
}

test("generateText: a greedy answer ends at its stop string, the whole answer's text cut there, in fewer steps", async () => {
  // no end-of-sequence token: the whole answer runs to MAX, so the steps saved are the stop's alone
  const loaded = await BuiltinBackend.load(made.dir);
  const backend = new BuiltinBackend(loaded.model, loaded.tokenizer, { eosTokenIds: [] });
  const tok = backend.tokenizer!;
  const dec = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true });
  const prompt = "def f(x):";
  const full = (
    await generateAsync(backend.model, [tok.encode(prompt, { addSpecialTokens: false })], {
      maxNewTokens: MAX,
    })
  )[0]!;
  assert.equal(full.length, MAX);
  const stops = [stopInside(full, dec), "\nQuestion:"];
  const want = cutAtStop(dec(full), stops);
  const steps = stepsTo(full, stops, dec);
  assert.ok(steps < MAX);
  const [got, calls] = await countingSteps(backend, () =>
    backend.generateText(prompt, { maxNewTokens: MAX, stop: stops }),
  );
  assert.equal(got, want);
  assert.equal(calls, steps, `decoding steps (whole answer: ${MAX})`);
  // without a stop nothing changes: the whole answer
  assert.equal(await backend.generateText(prompt, { maxNewTokens: MAX }), dec(full));
});

test("generateChat: each row of a batch ends at its stop string; the batch ends when its last row does", async () => {
  const loaded = await BuiltinBackend.load(made.dir);
  const backend = new BuiltinBackend(loaded.model, loaded.tokenizer, { eosTokenIds: [] });
  const tok = backend.tokenizer!;
  const dec = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true });
  const conversations = [
    [{ role: "user" as const, content: "write a loop" }],
    [{ role: "user" as const, content: "sort a list in C" }],
  ];
  const prompts = conversations.map((m) => backend.encodePrompt(backend.chatPrompt(m)));
  const full = await generateAsync(backend.model, prompts, {
    maxNewTokens: MAX,
    padTokenId: backend.padTokenId,
  });
  const stops = full.map((ids) => stopInside(ids, dec));
  const want = full.map((ids) => cutAtStop(dec(ids), stops));
  const steps = Math.max(...full.map((ids) => stepsTo(ids, stops, dec)));
  assert.ok(steps < MAX, "both rows hold the stop before MAX");
  const [got, calls] = await countingSteps(backend, () =>
    backend.generateChat(conversations, { maxNewTokens: MAX, stop: stops, batchSize: 2 }),
  );
  assert.deepEqual(got, want);
  assert.equal(calls, steps);
});
