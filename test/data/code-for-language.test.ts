import { test } from "node:test";
import assert from "node:assert/strict";
import { extractCode, fencedBlocks } from "../../src/data/code.js";
import { safetyLanguage } from "../../src/data/languages.js";

test("safetyLanguage maps dataset names and fence tags to the four evaluated languages", () => {
  assert.equal(safetyLanguage("c++"), "cpp");
  assert.equal(safetyLanguage(" C++ "), "cpp");
  assert.equal(safetyLanguage("cpp"), "cpp");
  assert.equal(safetyLanguage("golang"), "go");
  assert.equal(safetyLanguage("Go"), "go");
  assert.equal(safetyLanguage("Java"), "java");
  assert.equal(safetyLanguage("swift"), "swift");
  assert.equal(safetyLanguage("javascript"), null);
  assert.equal(safetyLanguage("c#"), null);
  assert.equal(safetyLanguage("kotlin"), null);
});

test("takes the block tagged with the prompt's language, over other tags", () => {
  const answer = [
    "Compile with:",
    "```bash",
    "g++ -o main main.cpp",
    "```",
    "Code:",
    "```c++",
    "int main() { return 0; }",
    "```",
  ].join("\n");
  assert.equal(extractCode(answer, "cpp"), "int main() { return 0; }");
  // A Java prompt gets nothing from a C++/bash answer: no java block and no untagged block.
  assert.equal(extractCode(answer, "java"), null);
});

test("aliases: ```golang, ```cpp, ```C++ and the longest of several tagged blocks", () => {
  assert.equal(extractCode("```golang\npackage main\n```", "go"), "package main");
  assert.equal(extractCode("```C++\nint x;\n```", "cpp"), "int x;");
  const two = "```java\nclass A {}\n```\nand\n```java\nclass Main { void run() {} }\n```";
  assert.equal(extractCode(two, "java"), "class Main { void run() {} }");
});

test('versioned and linguist tags are the prompt\'s language: the answer has code, not "no code"', () => {
  assert.equal(extractCode("Here:\n```cpp17\nint main() {}\n```", "cpp"), "int main() {}");
  assert.equal(extractCode("```c++20\nint x;\n```", "cpp"), "int x;");
  assert.equal(extractCode("```objc\nint x;\n```", "cpp"), "int x;");
  assert.equal(extractCode("```swift5\nlet x = 1\n```", "swift"), "let x = 1");
  assert.equal(extractCode("```java8\nclass A {}\n```", "java"), "class A {}");
  assert.equal(extractCode("```go1.21\npackage main\n```", "go"), "package main");
  // a tag of another language is still another language's block
  assert.equal(extractCode("```java8\nclass A {}\n```", "swift"), null);
});

test("falls back to the longest untagged block", () => {
  const answer = "Here:\n```\nshort\n```\nthen\n```\nfunc main() {\n}\n```\n";
  assert.equal(extractCode(answer, "go"), "func main() {\n}");
});

test("an unterminated fence (cut at max tokens) runs to the end", () => {
  const answer = "```swift\nimport Foundation\nlet x = 1\nfunc f() {";
  assert.equal(extractCode(answer, "swift"), "import Foundation\nlet x = 1\nfunc f() {");
  const blocks = fencedBlocks(answer);
  assert.equal(blocks.length, 1);
  assert.equal(blocks[0]!.closed, false);
});

test("closing fence glued to the last line, tildes, indentation, CRLF", () => {
  assert.equal(extractCode("```go\nfunc f() {\n}```", "go"), "func f() {\n}");
  assert.equal(extractCode("~~~java\nclass A {}\n~~~", "java"), "class A {}");
  assert.equal(extractCode("  ```cpp\r\n  int a;\r\n  ```", "cpp"), "  int a;");
  // A longer fence is closed only by a fence at least as long, so inner ``` stays code.
  assert.equal(extractCode('````go\ns := "a"\n```\nx := 1\n````', "go"), 's := "a"\n```\nx := 1');
});

test("null when there is no code; think blocks are ignored; prefilled answers", () => {
  assert.equal(extractCode("I cannot help with that.", "cpp"), null);
  assert.equal(extractCode("```cpp\n   \n```", "cpp"), null);
  assert.equal(extractCode("", "go"), null);
  assert.equal(extractCode("<think>```go\nbad()\n```</think>\n```go\ngood()\n```", "go"), "good()");
  assert.equal(extractCode("<think>never closed ```go\nx\n```", "go"), null);
  assert.equal(extractCode("int main() {}\n```\nThis program…", "cpp", { prefilled: true }), "int main() {}");
});

test('codeBlocks "all": every block of the prompt\'s language, in order, joined by a blank line (tagged ones, else untagged)', () => {
  const two =
    "```java\nclass A {}\n```\nand\n```bash\njavac A.java\n```\n```java\nclass Main { void run() {} }\n```";
  assert.equal(extractCode(two, "java", { blocks: "all" }), "class A {}\n\nclass Main { void run() {} }");
  assert.equal(extractCode(two, "java", { blocks: "longest" }), "class Main { void run() {} }");
  const untagged = "```\nint a;\n```\ntext\n```\nint b = 2;\n```";
  assert.equal(extractCode(untagged, "cpp", { blocks: "all" }), "int a;\n\nint b = 2;");
  // tagged blocks win over untagged ones either way; none: no code
  assert.equal(extractCode("```\nint a;\n```\n```cpp\nint b;\n```", "cpp", { blocks: "all" }), "int b;");
  assert.equal(extractCode("```python\nx = 1\n```", "cpp", { blocks: "all" }), null);
});
