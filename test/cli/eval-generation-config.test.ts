/**
 * eval applies the model folder's repetition_penalty (generation_config.json) as transformers' generate() does,
 * and its answer cache (--cache) follows: answers made without the penalty (--no-generation-config, the engine's
 * behaviour before it applied one) are not reused for a run that applies it, and are reused by one that does not;
 * a folder without a penalty keeps its answers whatever the setting. The reference is a run into an empty cache.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { balancedPairs, makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 2 });
after(() => fx.cleanup());

const PROMPTS = 3;
const heldOut = path.join(fx.work, "held.jsonl");
writeCorpusJsonl(heldOut, balancedPairs(fx.model.pairs, 1));
const model = fx.model.dir;

interface EvalOut {
  security: unknown;
  generationConfig: { applied: boolean; repetitionPenalty: Record<string, number | null> };
  caveats?: string[];
}

async function evalJson(cacheDir: string, ...extra: string[]): Promise<EvalOut> {
  const r = await runCli([
    ...["eval", "-m", model, "-d", heldOut, "--cache", cacheDir, ...extra],
    ...["--prompts", String(PROMPTS), "--max-new-tokens", "12", "--preference-pairs", "2", "--json"],
  ]);
  assert.equal(r.code, 0, showRun(r));
  return JSON.parse(r.stdout) as EvalOut;
}

/** The answers in a cache folder (one line each; a reused answer adds none). */
function cachedAnswers(cache: string): number {
  return fs
    .readdirSync(cache)
    .filter((f) => f.startsWith("safety-"))
    .flatMap((f) => fs.readFileSync(path.join(cache, f), "utf8").split("\n"))
    .filter((l) => l.endsWith("}")).length;
}

/** The answers in a cache folder by prompt id, in the order written (the last for an id wins). */
function answersById(cache: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of fs.readdirSync(cache).filter((f) => f.startsWith("safety-")))
    for (const l of fs.readFileSync(path.join(cache, f), "utf8").split("\n"))
      if (l.endsWith("}")) {
        const r = JSON.parse(l) as { id: string; answer: string };
        out.set(r.id, r.answer);
      }
  return out;
}

let fresh = 0;
const emptyCache = () => path.join(fx.work, `fresh-${fresh++}`);

test("a folder without a repetition penalty: the same answers and keys with the setting on or off", async () => {
  const cache = emptyCache();
  const off = await evalJson(cache, "--no-generation-config");
  assert.equal(cachedAnswers(cache), PROMPTS);
  const on = await evalJson(cache);
  assert.equal(cachedAnswers(cache), PROMPTS, "every answer reused");
  assert.deepEqual(on.security, off.security);
  assert.deepEqual(on.generationConfig, { applied: true, repetitionPenalty: { model: null } });
  assert.deepEqual(off.generationConfig, { applied: false, repetitionPenalty: { model: null } });
});

test("a folder with one: answers without it are not reused once it applies, and are with it off", async () => {
  fs.writeFileSync(path.join(model, "generation_config.json"), JSON.stringify({ repetition_penalty: 3 }));
  const cache = emptyCache();
  const off = await evalJson(cache, "--no-generation-config");
  assert.equal(cachedAnswers(cache), PROMPTS);
  assert.match(off.caveats?.join("\n") ?? "", /repetition_penalty 3.*--no-generation-config/);
  const refCache = emptyCache();
  const ref = await evalJson(refCache);
  assert.notDeepEqual(
    answersById(refCache),
    answersById(cache),
    "the penalty must change the answers for this test to mean anything",
  );
  assert.deepEqual(ref.generationConfig, { applied: true, repetitionPenalty: { model: 3 } });
  assert.equal(ref.caveats, undefined, "nothing left unapplied");
  const on = await evalJson(cache);
  assert.equal(cachedAnswers(cache), 2 * PROMPTS, "answered again with the penalty");
  assert.deepEqual(answersById(cache), answersById(refCache));
  assert.deepEqual(on.security, ref.security);
  const offAgain = await evalJson(cache, "--no-generation-config");
  assert.equal(cachedAnswers(cache), 2 * PROMPTS, "the answers without it reused");
  assert.deepEqual(offAgain.security, off.security);
});

test("a folder with sampling fields (do_sample true): greedy answers as without them, and the output says transformers would sample", async () => {
  // Qwen2.5-Instruct's sampling fields, without its penalty: nothing of it changes a greedy answer
  fs.writeFileSync(
    path.join(model, "generation_config.json"),
    JSON.stringify({ do_sample: true, temperature: 0.7, top_p: 0.8, top_k: 20 }),
  );
  const cache = emptyCache();
  await evalJson(cache, "--no-generation-config");
  assert.equal(cachedAnswers(cache), PROMPTS);
  const r = await runCli([
    ...["eval", "-m", model, "-d", heldOut, "--cache", cache],
    ...["--prompts", String(PROMPTS), "--max-new-tokens", "12", "--preference-pairs", "2"],
  ]);
  assert.equal(r.code, 0, showRun(r));
  assert.equal(cachedAnswers(cache), PROMPTS, "every answer reused: the same keys, greedy");
  assert.match(
    r.stdout,
    /decoding: greedy, though the generation_config\.json of model \(temperature 0\.7, top_p 0\.8, top_k 20\) sets do_sample true/,
  );
});
