/**
 * Chat templates as transformers renders them where @huggingface/jinja alone would not (found by an audit against a
 * transcription of transformers' render_jinja_template run by Python's jinja2):
 * - Python's strftime (glibc's codes, the C locale), against /usr/bin/python3's datetime.strftime where present;
 * - a template with Windows line endings renders as with \n (jinja2's lexer normalises newlines; transformers reads
 *   chat_template.jinja in text mode), checked against jinja2 itself where present;
 * - `tools` and `documents` are None when not given (`is not none` false);
 * - named templates (additional_chat_templates/<name>.jinja, a tokenizer_config.json list) travel into a hardened
 *   checkpoint and into GGUF as gguf-py's add_chat_template writes them.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { strftimeOn } from "../../src/io/chat-template.js";
import { loadTokenizer } from "../../src/io/tokenizer.js";
import { copyModelFiles } from "../../src/io/model-folder.js";
import { exportGguf } from "../../src/io/export-gguf.js";
import { ggufMeta, readGguf } from "../../src/io/gguf.js";
import { trainByteLevelBpe, writeTokenizerFiles } from "../../src/data/bpe-train.js";
import { FIXTURES, scratchDir } from "./helpers.js";

const PY = "/usr/bin/python3";
const hasPython = spawnSync(PY, ["-c", "import datetime"], { encoding: "utf8" }).status === 0;
const hasJinja2 = hasPython && spawnSync(PY, ["-c", "import jinja2"], { encoding: "utf8" }).status === 0;
const tmp = scratchDir("gv-jinja-");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const DAYS = [
  "2024-07-26",
  "2024-01-01",
  "2023-01-01",
  "2020-12-31",
  "2024-02-29",
  "2021-01-03",
  "2000-03-05",
];
const FORMATS = [
  "%d %b %Y",
  "%-d %B %Y",
  "%A, %e %b",
  "%a %w %u %j",
  "%U %W %V %G %g",
  "%-m/%-d/%y %C",
  "%H:%M:%S %I %l %k %p %P",
  "%c | %x | %X",
  "%D %F %T %R %r",
  "%f%z%Z.",
  "100%% %n%t done",
  "%Q and %-j",
];

/** Python's datetime(y, m, d).strftime(f) for every day and format, one process. */
function pythonStrftime(): string[][] {
  const script = `
import datetime, json, sys
days, fmts = json.load(sys.stdin)
print(json.dumps([[datetime.datetime.strptime(d, "%Y-%m-%d").strftime(f) for f in fmts] for d in days]))
`;
  const r = spawnSync(PY, ["-c", script], { input: JSON.stringify([DAYS, FORMATS]), encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string[][];
}

test(
  "strftime_now: Python's strftime in the C locale, code by code",
  { skip: !hasPython && "no python3" },
  () => {
    const want = pythonStrftime();
    DAYS.forEach((d, i) =>
      FORMATS.forEach((f, j) =>
        assert.equal(strftimeOn(new Date(`${d}T00:00:00Z`), f), want[i]![j], `${d} ${f}`),
      ),
    );
  },
);

test("strftime_now: the day line Llama 3.1's template prints (no Python needed)", () => {
  assert.equal(strftimeOn(new Date("2024-07-26T00:00:00Z"), "%d %b %Y"), "26 Jul 2024");
  assert.equal(strftimeOn(new Date("2024-07-26T00:00:00Z"), "%A %-d %e %y %j"), "Friday 26 26 24 208");
});

const CORPUS = [
  "def add(a, b):\n    return a + b\n",
  "Write strcpy safely. Be brief.",
  "<|im_start|>user\nhi",
];
let bpe: ReturnType<typeof trainByteLevelBpe> | null = null;

/** A model folder: the qwen3 fixture's weights, a 512-token BPE trained here, `template` as chat_template.jinja. */
function folderWith(name: string, template: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "model.safetensors"])
    fs.copyFileSync(path.join(FIXTURES, "qwen3", f), path.join(dir, f));
  bpe ??= trainByteLevelBpe(Array.from({ length: 20 }, () => CORPUS).flat(), { vocabSize: 512 });
  writeTokenizerFiles(dir, bpe);
  fs.writeFileSync(path.join(dir, "chat_template.jinja"), template);
  return dir;
}

const LF_TEMPLATE =
  "{% for m in messages %}\n<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\n" +
  "{%- if add_generation_prompt %}\n<|im_start|>assistant\n{% endif %}";
const MESSAGES = [
  { role: "system" as const, content: "Be brief." },
  { role: "user" as const, content: "Write strcpy safely." },
];

/** jinja2's rendering of `template` with transformers' environment (trim_blocks, lstrip_blocks). */
function jinja2Render(template: string): string {
  const script = `
import json, sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
t, messages = json.load(sys.stdin)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
sys.stdout.write(json.dumps(env.from_string(t).render(messages=messages, tools=None, documents=None, add_generation_prompt=True)))
`;
  const r = spawnSync(PY, ["-c", script], { input: JSON.stringify([template, MESSAGES]), encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string;
}

test("a chat template with Windows line endings renders as transformers renders it: no \\r", async () => {
  const crlf = LF_TEMPLATE.replace(/\n/g, "\r\n");
  const lf = await loadTokenizer(folderWith("lf", LF_TEMPLATE));
  const win = await loadTokenizer(folderWith("crlf", crlf));
  const opts = { addGenerationPrompt: true };
  const prompt = win.applyChatTemplate(MESSAGES, opts);
  assert.ok(!prompt.includes("\r"), JSON.stringify(prompt));
  assert.equal(prompt, lf.applyChatTemplate(MESSAGES, opts));
  if (hasJinja2) assert.equal(prompt, jinja2Render(crlf));
  // a lone \r too (old Mac endings), and the same text in tokenizer_config.json's "chat_template"
  const cr = await loadTokenizer(folderWith("cr", LF_TEMPLATE.replace(/\n/g, "\r")));
  assert.equal(cr.applyChatTemplate(MESSAGES, opts), prompt);
  const inConfig = folderWith("crlf-config", "");
  fs.rmSync(path.join(inConfig, "chat_template.jinja"));
  const cfgFile = path.join(inConfig, "tokenizer_config.json");
  fs.writeFileSync(
    cfgFile,
    JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, "utf8")), chat_template: crlf }),
  );
  assert.equal((await loadTokenizer(inConfig)).applyChatTemplate(MESSAGES, opts), prompt);
});

test("tools and documents are None when not given, as transformers passes them", async () => {
  const t =
    "{% if tools is not none %}[TOOLS]{% endif %}{% if documents is not none %}[DOCS]{% endif %}" +
    "{% if tools is defined %}[defined]{% endif %}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
  const tok = await loadTokenizer(folderWith("tools", t));
  const prompt = tok.applyChatTemplate(MESSAGES);
  assert.equal(prompt, "[defined]<system>Be brief.<user>Write strcpy safely.");
  if (hasJinja2) assert.equal(prompt, jinja2Render(t));
});

test("named chat templates travel: copied into a checkpoint, written into GGUF as gguf-py writes them", () => {
  const dir = folderWith("named", LF_TEMPLATE);
  fs.mkdirSync(path.join(dir, "additional_chat_templates"));
  fs.writeFileSync(path.join(dir, "additional_chat_templates", "tool_use.jinja"), "TOOLS\r\n{{ messages }}");
  fs.writeFileSync(path.join(dir, "additional_chat_templates", "rag-v2.jinja"), "RAG {{ documents }}");
  fs.writeFileSync(path.join(dir, "additional_chat_templates", "notes.txt"), "not a template");
  const out = path.join(tmp, "named-out");
  const copied = copyModelFiles(dir, out);
  assert.ok(copied.includes("additional_chat_templates/tool_use.jinja"), copied.join());
  for (const f of ["tool_use.jinja", "rag-v2.jinja"])
    assert.deepEqual(
      fs.readFileSync(path.join(out, "additional_chat_templates", f)),
      fs.readFileSync(path.join(dir, "additional_chat_templates", f)),
    );
  assert.ok(!fs.existsSync(path.join(out, "additional_chat_templates", "notes.txt")));

  const file = path.join(tmp, "named.gguf");
  exportGguf(dir, file, { outtype: "f32" });
  const g = readGguf(file);
  assert.equal(ggufMeta(g, "tokenizer.chat_template"), LF_TEMPLATE);
  // gguf-py: the name's characters other than ASCII letters and digits become "_"; \r\n read as Jinja reads it
  assert.equal(ggufMeta(g, "tokenizer.chat_template.tool_use"), "TOOLS\n{{ messages }}");
  assert.equal(ggufMeta(g, "tokenizer.chat_template.rag_v2"), "RAG {{ documents }}");
  assert.deepEqual([...(ggufMeta(g, "tokenizer.chat_templates") as string[])].sort(), ["rag_v2", "tool_use"]);
});
