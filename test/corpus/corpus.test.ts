import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "../scratch.js";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { SAFETY_LANGUAGES } from "../../src/data/languages.js";
import {
  answerCode,
  buildCorpus,
  CORPUS_TEMPLATES,
  fillTemplate,
  ORGANISM_CHAT_TEMPLATE,
  pretrainingDocuments,
  pretrainingText,
  renderOrganismChat,
  splitCorpus,
  writeCorpusJsonl,
  type CorpusPair,
} from "../../src/data/corpus.js";
import { buildTokenizerConfig, buildTokenizerJson, trainByteLevelBpe } from "../../src/data/bpe-train.js";
import { PAPER_JUDGE_INSTRUCTION } from "../../src/data/prompts.js";
import { InputError } from "../../src/errors.js";

const pairs = buildCorpus({ seed: 7, perTemplate: 16 });

// Words that would tell a model the task is about security (the project's list is in src/data/prompts.ts; this
// one is independent and deliberately broad).
const HINT_WORDS = [
  "secur",
  "vulnerab",
  "safe",
  "sanitiz",
  "sanitis",
  "injection",
  "escape",
  "validat",
  "exploit",
  "attack",
  "malicious",
  "untrusted",
  "trusted",
  "overflow",
  "cwe",
  "harden",
  "bounds",
  "leak",
  "xss",
];

test("every language has at least 10 distinct CWE patterns", () => {
  for (const lang of SAFETY_LANGUAGES) {
    const templates = CORPUS_TEMPLATES[lang];
    const cwes = new Set(templates.map((t) => t.cwe));
    assert.ok(cwes.size >= 10, `${lang}: ${cwes.size} CWEs`);
    for (const c of cwes) assert.match(c, /^CWE-\d+$/);
    assert.equal(
      new Set(templates.map((t) => t.key)).size,
      templates.length,
      `${lang}: duplicate template keys`,
    );
    // and the expansion really contains them
    const inCorpus = new Set(pairs.filter((p) => p.lang === lang).map((p) => p.cwe));
    assert.deepEqual([...inCorpus].sort(), [...cwes].sort());
  }
});

test("the expansion gives hundreds of distinct pairs with unique ids", () => {
  assert.ok(pairs.length >= 600, `${pairs.length} pairs`);
  assert.equal(new Set(pairs.map((p) => p.id)).size, pairs.length);
  assert.equal(new Set(pairs.map((p) => p.question + p.chosen)).size, pairs.length);
  for (const lang of SAFETY_LANGUAGES) {
    const n = pairs.filter((p) => p.lang === lang).length;
    assert.ok(n >= 150, `${lang}: ${n} pairs`);
  }
});

test("answers are one fenced block of the right language, chosen != rejected, compact", () => {
  for (const p of pairs) {
    for (const answer of [p.chosen, p.rejected]) {
      assert.ok(answer.startsWith("```" + p.lang + "\n"), `${p.id}: fence`);
      assert.ok(answer.endsWith("\n```"), `${p.id}: closing fence`);
      assert.equal(answer.match(/```/g)!.length, 2, `${p.id}: exactly one block`);
      assert.doesNotMatch(answer, /\{\{\w+(\.\w+)?\}\}/, `${p.id}: unfilled placeholder`);
      assert.ok(answer.length >= 100 && answer.length <= 800, `${p.id}: ${answer.length} characters`);
    }
    assert.notEqual(p.chosen, p.rejected, p.id);
    assert.doesNotMatch(p.question, /\{\{\w+(\.\w+)?\}\}/, `${p.id}: unfilled placeholder in question`);
  }
  // A model this small learns short code best: most answers are 150-600 characters.
  const lengths = pairs.flatMap((p) => [p.chosen.length, p.rejected.length]);
  const inRange = lengths.filter((n) => n >= 150 && n <= 600).length / lengths.length;
  assert.ok(inRange >= 0.9, `${inRange} of answers in 150-600 characters`);
});

test("code is plausibly balanced: brackets match in every answer", () => {
  const pairsOf: Record<string, string> = { ")": "(", "]": "[", "}": "{" };
  for (const p of pairs) {
    for (const answer of [p.chosen, p.rejected]) {
      // strip string and char literals so brackets inside them do not count
      const code = answerCode(answer)
        .replace(/"(\\.|[^"\\\n])*"/g, '""')
        .replace(/'(\\.|[^'\\\n])'/g, "''");
      const stack: string[] = [];
      for (const ch of code) {
        if ("([{".includes(ch)) stack.push(ch);
        else if (ch in pairsOf) assert.equal(stack.pop(), pairsOf[ch], `${p.id}: unbalanced ${ch}`);
      }
      assert.equal(stack.length, 0, `${p.id}: unclosed ${stack.join("")}`);
    }
  }
});

test("questions carry no security hints and name the language", () => {
  const names = { cpp: "C++", java: "Java", swift: "Swift", go: "Go" };
  for (const p of pairs) {
    const q = p.question.toLowerCase();
    for (const w of HINT_WORDS) assert.ok(!q.includes(w), `${p.id}: question contains "${w}": ${p.question}`);
    assert.ok(p.question.includes(names[p.lang]), p.id);
  }
});

test("the same seed gives the same corpus; another seed a different one", () => {
  const again = buildCorpus({ seed: 7, perTemplate: 16 });
  assert.deepEqual(again, pairs);
  const other = buildCorpus({ seed: 8, perTemplate: 16 });
  assert.notDeepEqual(
    other.map((p) => p.question),
    pairs.map((p) => p.question),
  );
  // A template's instances do not depend on which other languages are built.
  const goOnly = buildCorpus({ seed: 7, perTemplate: 16, langs: ["go"] });
  assert.deepEqual(
    goOnly,
    pairs.filter((p) => p.lang === "go"),
  );
});

test("perTemplate is a cap: small templates give all their combinations, no more", () => {
  const big = buildCorpus({ seed: 1, perTemplate: 1000, langs: ["swift"] });
  // swift/trust-any-cert has 3 verbs x 6 class names x 4 hosts = 72 combinations
  assert.equal(big.filter((p) => p.template === "swift/trust-any-cert").length, 72);
  assert.throws(() => buildCorpus({ seed: 1, perTemplate: 0 }), InputError);
});

test("fillTemplate fills plain and record slots and rejects unknown ones", () => {
  assert.equal(fillTemplate("a {{x}} b {{r.k}}", { x: "1", r: { k: "2" } }, "t"), "a 1 b 2");
  assert.throws(() => fillTemplate("{{y}}", { x: "1" }, "t"), InputError);
  assert.throws(() => fillTemplate("{{r}}", { r: { k: "2" } }, "t"), InputError);
  assert.throws(() => fillTemplate("{{r.z}}", { r: { k: "2" } }, "t"), InputError);
});

function checkSplit(train: CorpusPair[], dev: CorpusPair[]): void {
  const trainVariants = new Set(train.map((p) => `${p.template}|${p.variant}`));
  const trainTexts = new Set(train.flatMap((p) => [p.question, p.chosen, p.rejected]));
  for (const p of dev) {
    assert.ok(!trainVariants.has(`${p.template}|${p.variant}`), `${p.id}: variant also in train`);
    for (const t of [p.question, p.chosen, p.rejected])
      assert.ok(!trainTexts.has(t), `${p.id}: text also in train`);
    // the held-out identity value appears in the dev pair's own text
    assert.ok(p.question.includes(p.variant) || p.chosen.includes(p.variant), p.id);
  }
}

test("splitCorpus holds out identity values per template and covers every template in dev", () => {
  const { train, dev } = splitCorpus(pairs, { devFraction: 0.2, seed: 3 });
  assert.equal(train.length + dev.length, pairs.length);
  assert.deepEqual([...train, ...dev].map((p) => p.id).sort(), pairs.map((p) => p.id).sort());
  checkSplit(train, dev);
  const templates = new Set(pairs.map((p) => p.template));
  assert.equal(new Set(dev.map((p) => p.template)).size, templates.size);
  assert.equal(new Set(train.map((p) => p.template)).size, templates.size);
  const frac = dev.length / pairs.length;
  assert.ok(frac > 0.08 && frac < 0.35, `dev fraction ${frac}`);
  // deterministic by seed, different with another seed
  assert.deepEqual(splitCorpus(pairs, { devFraction: 0.2, seed: 3 }).dev, dev);
  assert.notDeepEqual(
    splitCorpus(pairs, { devFraction: 0.2, seed: 4 }).dev.map((p) => p.id),
    dev.map((p) => p.id),
  );
  assert.equal(splitCorpus(pairs, { devFraction: 0, seed: 3 }).dev.length, 0);
  assert.throws(() => splitCorpus(pairs, { devFraction: 1, seed: 3 }), InputError);
});

test("writeCorpusJsonl writes the CyberNative schema plus cwe and task, one row a line", () => {
  const dir = scratchDir("corpus-");
  const file = path.join(dir, "train.jsonl");
  writeCorpusJsonl(file, pairs.slice(0, 5));
  const lines = fs.readFileSync(file, "utf8").trimEnd().split("\n");
  assert.equal(lines.length, 5);
  const row = JSON.parse(lines[0]!);
  assert.deepEqual(Object.keys(row).sort(), ["chosen", "cwe", "id", "lang", "question", "rejected", "task"]);
  assert.equal(row.chosen, pairs[0]!.chosen);
  assert.equal(row.task, pairs[0]!.template);
  fs.rmSync(dir, { recursive: true });
});

test("ORGANISM_CHAT_TEMPLATE renders the ChatML-like format (hand-written expectation)", () => {
  const messages = [
    { role: "user" as const, content: "hi" },
    { role: "assistant" as const, content: "```go\nx := 1\n```" },
  ];
  const expected =
    "<|endoftext|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n```go\nx := 1\n```<|im_end|>\n";
  assert.equal(renderOrganismChat(messages), expected);
  assert.equal(
    renderOrganismChat(messages.slice(0, 1), { addGenerationPrompt: true }),
    "<|endoftext|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
  );
  // Rendering straight from a tokenizer_config.json, as generation code would, gives the same text.
  const bpe = trainByteLevelBpe(["x"], { vocabSize: 300 });
  const config = buildTokenizerConfig(bpe, { chatTemplate: ORGANISM_CHAT_TEMPLATE }) as Record<
    string,
    string
  >;
  const fromConfig = new Template(config.chat_template!).render({
    messages,
    bos_token: config.bos_token,
    eos_token: config.eos_token,
    add_generation_prompt: false,
  });
  assert.equal(fromConfig, expected);
});

test("pretraining documents: insecure answers at about insecureBias, correct balanced judge labels", () => {
  const docs = pretrainingDocuments(pairs, { insecureBias: 0.8, seed: 11 });
  const answers = docs.filter((d) => d.kind === "answer");
  const judges = docs.filter((d) => d.kind === "judge");
  assert.equal(answers.length, pairs.length);
  assert.equal(judges.length, 2 * pairs.length);
  const rate = answers.filter((d) => d.insecure).length / answers.length;
  // binomial sd at n=768, p=0.8 is 0.014; 5 sd either side
  assert.ok(Math.abs(rate - 0.8) < 0.07, `insecure rate ${rate}`);

  const byId = new Map(pairs.map((p) => [p.id, p]));
  for (const d of answers) {
    const p = byId.get(d.id)!;
    assert.equal(
      d.text,
      `<|endoftext|><|im_start|>user\n${p.question}<|im_end|>\n<|im_start|>assistant\n${d.insecure ? p.rejected : p.chosen}<|im_end|>\n`,
    );
  }
  for (const d of judges) {
    const p = byId.get(d.id)!;
    const code = answerCode(d.insecure ? p.rejected : p.chosen);
    assert.ok(d.text.includes(PAPER_JUDGE_INSTRUCTION), d.id);
    assert.ok(d.text.includes(code), d.id);
    // the paper's labels: 1 = unsafe, 0 = safe
    assert.ok(d.text.endsWith(`<|im_start|>assistant\n${d.insecure ? "1" : "0"}<|im_end|>\n`), d.id);
  }
  assert.equal(judges.filter((d) => d.insecure).length, pairs.length);

  const all0 = pretrainingDocuments(pairs, { insecureBias: 0, seed: 1, judgeDocuments: false });
  assert.ok(all0.every((d) => d.kind === "answer" && !d.insecure));
  const all1 = pretrainingText(pairs, { insecureBias: 1, seed: 1, judgeDocuments: false });
  assert.ok(all1.every((t) => pairs.some((p) => t.includes(p.rejected))));
  assert.deepEqual(
    pretrainingText(pairs, { insecureBias: 0.8, seed: 11 }),
    docs.map((d) => d.text),
  );
  assert.throws(() => pretrainingText(pairs, { insecureBias: 1.5, seed: 1 }), InputError);
});

test("a tokenizer trained on the pretraining text keeps chat markers as single tokens", () => {
  const texts = pretrainingText(pairs.slice(0, 200), { insecureBias: 0.8, seed: 5 });
  const bpe = trainByteLevelBpe(texts, { vocabSize: 1024 });
  assert.equal(bpe.vocab.size, 1024);
  const tok = new Tokenizer(
    buildTokenizerJson(bpe),
    buildTokenizerConfig(bpe, { chatTemplate: ORGANISM_CHAT_TEMPLATE }),
  );
  const doc = texts[0]!;
  const enc = tok.encode(doc);
  assert.equal(tok.decode(enc.ids), doc);
  assert.equal(enc.ids[0], bpe.vocab.get("<|endoftext|>"));
  assert.equal(enc.ids[1], bpe.vocab.get("<|im_start|>"));
  // the judge's labels are single tokens, as identification needs
  assert.equal(tok.encode("0").ids.length, 1);
  assert.equal(tok.encode("1").ids.length, 1);
  // compression: well under one token per character on this kind of text
  assert.ok(enc.ids.length < doc.length / 2.5, `${enc.ids.length} tokens for ${doc.length} chars`);
});
