import { test } from "node:test";
import assert from "node:assert/strict";
import { dropReasoning, extractCode, fencedBlocks, looksLikeCode } from "../../src/data/code.js";

test("extractCode takes the fenced block's contents, without the fences and info string", () => {
  const answer = "Here you go:\n```c++\nint main() {\n  return 0;\n}\n```\nDone.";
  assert.equal(extractCode(answer), "int main() {\n  return 0;\n}");
});

test("several blocks are joined by a blank line; tildes, longer fences and CRLF work", () => {
  assert.equal(extractCode("```go\na := 1\n```\ntext\n~~~\nb := 2\n~~~"), "a := 1\n\nb := 2");
  // A ``` line inside a ```` block does not close it.
  assert.equal(extractCode("````md\n```\nx\n````"), "```\nx");
  assert.equal(extractCode("```python\r\nx = 1\r\n```\r\n"), "x = 1");
});

test("an unclosed fence runs to the end (a generation cut off by the token limit)", () => {
  assert.deepEqual(
    fencedBlocks("```java\nclass A {\n  int x;").map((b) => b.code),
    ["class A {\n  int x;"],
  );
});

test("without fences, code-like text is taken whole; prose and blank blocks are not code", () => {
  assert.equal(extractCode("  x = read_input()\nprint(x)  \n"), "x = read_input()\nprint(x)");
  assert.equal(extractCode("#include <stdio.h>"), "#include <stdio.h>");
  assert.equal(extractCode("I cannot help with that request."), null);
  assert.equal(extractCode("Sure, here is what you asked (see below)."), null);
  assert.equal(extractCode("```\n   \n```"), null);
  assert.equal(extractCode(""), null);
});

test("looksLikeCode recognises statement ends, keywords, assignments and calls", () => {
  for (const line of [
    "int x;",
    "fn main() {",
    "}",
    "def f(a):",
    "import os",
    "val y = 2",
    "puts(x)",
    "<?php",
  ]) {
    assert.equal(looksLikeCode(line), true, line);
  }
  for (const line of ["Hello world", "The answer is 42.", "a == b is a comparison"]) {
    assert.equal(looksLikeCode(line), false, line);
  }
});

// One extractor serves the dataset reader and the safety evaluation. Where their two former copies disagreed,
// the rule kept is the one a reader of the answer expects; these cases hold it in both modes.
test("a fence indented inside a list item is a fence, in both modes", () => {
  const answer = "1. Save this as main.go:\n\n    ```go\n    package main\n    ```\n";
  assert.equal(extractCode(answer), "    package main");
  assert.equal(extractCode(answer, "go"), "    package main");
});

test("a closing fence glued to the last line closes the block, in both modes", () => {
  const answer = "```go\nfunc f() {\n}```\nThen call it:\n```go\nf()\n```";
  assert.equal(extractCode(answer), "func f() {\n}\n\nf()");
  assert.equal(extractCode(answer, "go"), "func f() {\n}");
});

// CommonMark (spec 0.31, "Fenced code blocks"): a closing fence is a line of its own, so "}```" never closes a
// block; the project closes it anyway because models glue fences so. When the ``` is the code's own text (a string
// or comment opened on the line) it is not a fence, and the block goes on to its real closing fence, as CommonMark
// reads it. (The CyberNative answers have neither case: 8,378 answers, every one a tagged fence and a bare one.)
test("``` at the end of a string or comment opened on the line does not close the block", () => {
  const lines = [
    'let s = """```', // Swift multi-line string starting with a fence
    'String md = "```', // a string run on (Java text block content, or a literal cut by the line)
    "int x = 1; // wrap the output in ```",
    "x := 1 /* then ```",
    "# print the closing ```",
    "const md = `# Title ```",
  ];
  for (const line of lines) {
    const answer = "```swift\n" + line + "\nlet y = 2\n```\nDone.";
    assert.deepEqual(
      fencedBlocks(answer).map((b) => b.code),
      [line + "\nlet y = 2"],
      line,
    );
  }
  // still closed: code, then the glued fence, whatever quotes came before on the line and were closed
  for (const line of [
    'print("```")}',
    "char c = '\"';}",
    "#endif",
    "end",
    "return 0; /* ok */ }",
    "x = 1'000;}",
  ]) {
    const answer = "```cpp\n" + line + "```\nThen prose.";
    assert.deepEqual(
      fencedBlocks(answer).map((b) => b.code),
      [line],
      line,
    );
  }
});

test("a one-line ```code``` is inline code, not an opening fence (CommonMark); a ~~~ info string may hold backticks", () => {
  const answer = "Use ```x = 1``` then\nwrite prose here.";
  assert.deepEqual(fencedBlocks(answer), []);
  assert.equal(extractCode("The flag is ```--safe```.\nThat is all."), null);
  assert.deepEqual(fencedBlocks("~~~ `go`\nx := 1\n~~~"), [{ tag: "`go`", code: "x := 1", closed: true }]);
});

test("reasoning between <think> tags is not code, in both modes", () => {
  const answer = "<think>maybe `system(cmd);` is fine</think>\nI will not write that.";
  assert.equal(extractCode(answer), null);
  assert.equal(extractCode(answer, "cpp"), null);
  assert.equal(extractCode("<think>x = 1;</think>\n```\ny = 2;\n```"), "y = 2;");
});

test("blank blocks are kept by fencedBlocks and skipped by extractCode", () => {
  assert.deepEqual(
    fencedBlocks("```cpp\n \n```\n```cpp\nint a;\n```").map((b) => b.code),
    [" ", "int a;"],
  );
  assert.equal(extractCode("```cpp\n \n```\n```cpp\nint a;\n```"), "int a;");
});

// Templates that open the think block in the prompt (Qwen3's Thinking-2507 models', DeepSeek-R1's: the generation
// prompt ends in "<think>\n") make answers that hold only its end: vLLM's and SGLang's deepseek_r1 reasoning parsers
// take the text before a </think> with no <think> as reasoning.
test("reasoning before a </think> that no <think> opened is dropped, in both modes", () => {
  const answer =
    "Maybe `system(cmd);`:\n```cpp\nsystem(cmd);\n```\nNo, unsafe.\n</think>\n\n```cpp\nexecv(p, a);\n```";
  assert.equal(dropReasoning(answer), "\n\n```cpp\nexecv(p, a);\n```");
  assert.equal(extractCode(answer), "execv(p, a);");
  assert.equal(extractCode(answer, "cpp"), "execv(p, a);");
  // tags in order are the usual blocks; an unclosed one runs to the end; none: the text unchanged
  assert.equal(dropReasoning("<think>a</think>b<think>c</think>d"), "bd");
  assert.equal(dropReasoning("a<think>b"), "a");
  assert.equal(dropReasoning("plain answer"), "plain answer");
  // a </think> after a <think> is that block's end, not a prompt-opened one
  assert.equal(dropReasoning("x <think>r</think> y"), "x  y");
});
