/**
 * eval's answer cache (--cache, safety-*.jsonl) reuses an answer only for the prompt as the model would now be asked
 * it: the weights and config, and the files that render, encode and end it (tokenizer.json, tokenizer_config.json
 * with its chat template, special_tokens_map.json, chat_template.jinja, generation_config.json). The reference is a
 * run into an empty cache: a rerun after any of those files changed reports what it reports; a file that shapes no
 * answer (README.md) reuses every answer. The LLM judge's verdicts, kept beside the answers, likewise follow the
 * judge folder's tokenizer and chat template.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl, ORGANISM_CHAT_TEMPLATE } from "../../src/data/corpus.js";
import { balancedPairs, makeCliFixture, runCli, showRun } from "./cli-helpers.js";
import { makeTinyChatModel } from "../evalcore/make-model.js";

const fx = makeCliFixture({ perLanguage: 2 });
after(() => fx.cleanup());

const PROMPTS = 3;
const heldOut = path.join(fx.work, "held.jsonl");
writeCorpusJsonl(heldOut, balancedPairs(fx.model.pairs, 1));
const model = fx.model.dir;
const cache = path.join(fx.work, "cache");

async function evalJson(cacheDir: string): Promise<unknown> {
  const r = await runCli([
    ...["eval", "-m", model, "-d", heldOut, "--cache", cacheDir],
    ...["--prompts", String(PROMPTS), "--max-new-tokens", "12", "--preference-pairs", "2", "--json"],
  ]);
  assert.equal(r.code, 0, showRun(r));
  return JSON.parse(r.stdout);
}

/** The answers in the cache (one line each; a reused answer adds none). */
function cachedAnswers(): number {
  return fs
    .readdirSync(cache)
    .filter((f) => f.startsWith("safety-"))
    .flatMap((f) => fs.readFileSync(path.join(cache, f), "utf8").split("\n"))
    .filter((l) => l.endsWith("}")).length;
}

/** Set by the first test: the cache answers the model's files as they now are. */
let cacheHoldsCurrentAnswers = false;

let fresh = 0;
const emptyCache = () => path.join(fx.work, `fresh-${fresh++}`);

function editJson(name: string, edit: (v: Record<string, unknown>) => Record<string, unknown>): void {
  const file = path.join(model, name);
  const v = fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>) : {};
  fs.writeFileSync(file, JSON.stringify(edit(v), null, 2));
}

test("a changed chat template is answered again, as a run into an empty cache answers it", async () => {
  const before = await evalJson(cache);
  assert.equal(cachedAnswers(), PROMPTS);
  // a system turn before every conversation: other prompt tokens, other greedy answers
  editJson("tokenizer_config.json", (c) => ({
    ...c,
    chat_template: ORGANISM_CHAT_TEMPLATE.replace(
      "{{ bos_token }}",
      "{{ bos_token }}{{ '<|im_start|>system\\nWrite safe code.<|im_end|>\\n' }}",
    ),
  }));
  const ref = await evalJson(emptyCache());
  assert.notDeepEqual(
    ref,
    before,
    "the template change must change the answers for this test to mean anything",
  );
  assert.deepEqual(await evalJson(cache), ref);
  assert.equal(cachedAnswers(), 2 * PROMPTS);
  cacheHoldsCurrentAnswers = true;
});

test("each other file that shapes prompts or ends answers makes new answers; a README reuses them", async () => {
  const changes: [string, () => void][] = [
    ["tokenizer.json", () => editJson("tokenizer.json", (t) => ({ ...t, truncation: null, padding: null }))],
    [
      "special_tokens_map.json",
      () => editJson("special_tokens_map.json", (m) => ({ ...m, eos_token: "<|im_end|>" })),
    ],
    [
      "chat_template.jinja",
      () => fs.writeFileSync(path.join(model, "chat_template.jinja"), ORGANISM_CHAT_TEMPLATE + "{{ '' }}"),
    ],
    [
      "generation_config.json",
      () => {
        const config = JSON.parse(fs.readFileSync(path.join(model, "config.json"), "utf8")) as {
          eos_token_id: number;
        };
        editJson("generation_config.json", (g) => ({
          ...g,
          eos_token_id: config.eos_token_id,
          do_sample: false,
        }));
      },
    ],
  ];
  // the cache must hold the answers of the files as they are: the test above leaves it so (its last run read them
  // all from it); run alone, this test fills it first
  if (!cacheHoldsCurrentAnswers) await evalJson(cache);
  let answers = cachedAnswers();
  for (const [name, change] of changes) {
    change();
    const ref = await evalJson(emptyCache());
    assert.deepEqual(await evalJson(cache), ref, `after ${name} changed`);
    assert.equal(
      cachedAnswers(),
      answers + PROMPTS,
      `${name} changed: its answers were taken from the cache`,
    );
    answers += PROMPTS;
  }
  fs.writeFileSync(path.join(model, "README.md"), "# the model card\n");
  await evalJson(cache);
  assert.equal(cachedAnswers(), answers, "README.md shapes no answer: every answer is reused");
});

test("the LLM judge's verdicts follow its chat template: a changed one judges again, as an empty cache's run does", async () => {
  // the judge: a tiny model of its own (a plain checkpoint judges under the paper's convention)
  const judgeModel = makeTinyChatModel({ seed: 2 });
  after(() => fs.rmSync(judgeModel.dir, { recursive: true, force: true }));
  const judge = judgeModel.dir;
  const judgeCache = path.join(fx.work, "judge-cache");
  type Rec = { id: string; llm?: { judge: string; pUnsafe: number } };
  const verdicts = (dir: string): Rec[] =>
    fs
      .readdirSync(dir)
      .filter((f) => f.startsWith("safety-"))
      .flatMap((f) => fs.readFileSync(path.join(dir, f), "utf8").split("\n"))
      .filter((l) => l.endsWith("}"))
      .map((l) => JSON.parse(l) as Rec)
      .filter((r) => r.llm !== undefined);
  const run = async (dir: string) => {
    const r = await runCli([
      ...["eval", "-m", model, "-d", heldOut, "--cache", dir, "--judge", judge],
      ...["--prompts", String(PROMPTS), "--max-new-tokens", "12", "--preference-pairs", "2", "--json"],
    ]);
    assert.equal(r.code, 0, showRun(r));
  };
  await run(judgeCache);
  const first = verdicts(judgeCache);
  assert.equal(first.length, PROMPTS);
  const config = path.join(judge, "tokenizer_config.json");
  const c = JSON.parse(fs.readFileSync(config, "utf8")) as { chat_template: string };
  fs.writeFileSync(
    config,
    JSON.stringify({
      ...c,
      chat_template: c.chat_template.replace(
        "{{ bos_token }}",
        "{{ bos_token }}{{ '<|im_start|>system\\nJudge the code.<|im_end|>\\n' }}",
      ),
    }),
  );
  await run(judgeCache);
  const fresh = path.join(fx.work, "judge-fresh");
  await run(fresh);
  const byId = (rs: Rec[]) => new Map(rs.map((r) => [r.id, r.llm!]));
  const now = byId(verdicts(judgeCache).slice(PROMPTS));
  assert.equal(now.size, PROMPTS, "the changed judge judged every answer again");
  const ref = byId(verdicts(fresh));
  for (const [id, v] of ref) {
    assert.equal(now.get(id)?.pUnsafe, v.pUnsafe, id);
    assert.notEqual(
      byId(first).get(id)?.pUnsafe,
      v.pUnsafe,
      `${id}: the template change must change the verdict`,
    );
  }
});

test("GSM8K's cached figure follows what ends a generated answer (generation_config.json's eos); ARC's is reused", async () => {
  const m = makeTinyChatModel({ seed: 4 });
  after(() => fs.rmSync(m.dir, { recursive: true, force: true }));
  const arc = path.join(fx.work, "arc.jsonl");
  const gsm8k = path.join(fx.work, "gsm8k.jsonl");
  const rows = (xs: object[]) => xs.map((r) => JSON.stringify(r)).join("\n") + "\n";
  fs.writeFileSync(
    arc,
    rows([
      {
        id: "q1",
        question: "Which is a gas?",
        choices: { text: ["ice", "steam"], label: ["A", "B"] },
        answerKey: "B",
      },
      {
        id: "q2",
        question: "Which is a metal?",
        choices: { text: ["wood", "iron"], label: ["A", "B"] },
        answerKey: "B",
      },
    ]),
  );
  // two items each: a figure of one item has no standard error and is not cached
  fs.writeFileSync(
    gsm8k,
    rows([
      { question: "What is 2 + 3?", answer: "2 + 3 = 5\n#### 5" },
      { question: "What is 4 + 4?", answer: "4 + 4 = 8\n#### 8" },
    ]),
  );
  const run = async (cacheDir: string) => {
    const r = await runCli([
      ...["eval", "-m", m.dir, "-d", heldOut, "--cache", cacheDir, "--arc", arc, "--gsm8k", gsm8k],
      ...["--prompts", "1", "--max-new-tokens", "4", "--preference-pairs", "1", "--json"],
    ]);
    assert.equal(r.code, 0, showRun(r));
    return {
      ...(JSON.parse(r.stdout) as { utility: Record<string, unknown>; utilityReused?: string[] }),
      stderr: r.stderr,
    };
  };
  const utilityCache = path.join(fx.work, "utility-cache");
  // each benchmark says its progress (a pipe: the meter's lines), ARC in requests (2 items x 2 choices)
  const first = await run(utilityCache);
  assert.match(first.stderr, /Z arc_challenge 4\/4 \(100\.0%\) .*, elapsed .*, done\n/);
  assert.match(first.stderr, /Z gsm8k 2\/2 \(100\.0%\) .*, elapsed .*, done\n/);
  assert.deepEqual((await run(utilityCache)).utilityReused, ["arc_challenge", "gsm8k"]);
  // another id ends generation: GSM8K's answers can end elsewhere, ARC scores log-likelihoods and generates nothing
  const config = JSON.parse(fs.readFileSync(path.join(m.dir, "config.json"), "utf8")) as {
    eos_token_id: number;
  };
  fs.writeFileSync(
    path.join(m.dir, "generation_config.json"),
    JSON.stringify({ eos_token_id: [config.eos_token_id, 5] }),
  );
  const after1 = await run(utilityCache);
  assert.deepEqual(after1.utilityReused, ["arc_challenge"]);
  assert.deepEqual(after1.utility.gsm8k, (await run(path.join(fx.work, "utility-fresh"))).utility.gsm8k);
});
