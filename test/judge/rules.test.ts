import { test } from "node:test";
import assert from "node:assert/strict";
import { judgeCode, listRules } from "../../src/eval/judge/rules/index.js";
import type { SafetyLanguage } from "../../src/data/languages.js";

import { cppCases } from "./cases/cpp.js";
import { javaCases } from "./cases/java.js";
import { swiftCases } from "./cases/swift.js";
import { goCases } from "./cases/go.js";
import type { Case } from "./cases/case.js";

const cases: Case[] = [...cppCases, ...javaCases, ...swiftCases, ...goCases];

const langOf = (ruleId: string) => ruleId.split("/")[0] as SafetyLanguage;

test("every rule has its own unsafe and safe snippets", () => {
  const covered = new Set(cases.map((c) => c.rule));
  for (const r of listRules()) assert.ok(covered.has(r.id), `no test case for ${r.id}`);
  assert.equal(covered.size, cases.length, "duplicate rule in the case table");
  for (const c of cases) {
    assert.ok(
      listRules().some((r) => r.id === c.rule),
      `case for unknown rule ${c.rule}`,
    );
    assert.ok(c.bad.length > 0 && c.good.length > 0, `${c.rule}: needs unsafe and safe snippets`);
  }
});

for (const c of cases) {
  test(`${c.rule}: fires on its unsafe snippets (on the marked line), not on the safe ones`, () => {
    const rule = listRules().find((r) => r.id === c.rule)!;
    for (const bad of c.bad) {
      const found = judgeCode(bad, langOf(c.rule), { minSeverity: "low" }).findings.filter(
        (f) => f.ruleId === c.rule,
      );
      assert.ok(found.length > 0, `${c.rule} did not fire on:\n${bad}`);
      const lines = bad.split("\n");
      const marked = lines.findIndex((l) => /\/\/ <-/.test(l));
      if (marked >= 0) {
        assert.equal(found[0]!.line, marked + 1, `first finding: ${JSON.stringify(found[0])}\n${bad}`);
        assert.equal(found[0]!.snippet, lines[marked]!.trim());
      }
      assert.equal(found[0]!.cwe, rule.cwe);
      assert.equal(found[0]!.severity, rule.severity);
    }
    for (const good of c.good) {
      const found = judgeCode(good, langOf(c.rule), { minSeverity: "low" }).findings.filter(
        (f) => f.ruleId === c.rule,
      );
      assert.deepEqual(found, [], `${c.rule} fired on the safe snippet:\n${good}`);
    }
  });
}

test("rule metadata: ids are language-prefixed, CWE ids well formed, the issue's classes covered", () => {
  for (const r of listRules()) {
    assert.match(r.id, new RegExp(`^${r.language}/[a-z0-9-]+$`));
    assert.match(r.cwe, /^CWE-\d+$/);
    assert.ok(["high", "medium", "low"].includes(r.severity));
    assert.ok(r.title.length > 10, r.id);
  }
  const cwes = (lang: SafetyLanguage) => new Set(listRules(lang).map((r) => r.cwe));
  // Injection sinks, weak crypto/randomness, secrets, and each language's own memory/error classes.
  const required: Record<SafetyLanguage, string[]> = {
    cpp: [
      "CWE-120",
      "CWE-787",
      "CWE-416",
      "CWE-190",
      "CWE-134",
      "CWE-78",
      "CWE-89",
      "CWE-338",
      "CWE-327",
      "CWE-328",
      "CWE-798",
      "CWE-321",
      "CWE-329",
      "CWE-401",
    ],
    java: [
      "CWE-89",
      "CWE-78",
      "CWE-22",
      "CWE-502",
      "CWE-470",
      "CWE-134",
      "CWE-611",
      "CWE-601",
      "CWE-79",
      "CWE-327",
      "CWE-330",
      "CWE-295",
      "CWE-798",
      "CWE-321",
      "CWE-329",
      "CWE-476",
    ],
    swift: [
      "CWE-476",
      "CWE-787",
      "CWE-416",
      "CWE-134",
      "CWE-78",
      "CWE-89",
      "CWE-22",
      "CWE-502",
      "CWE-327",
      "CWE-338",
      "CWE-295",
      "CWE-798",
      "CWE-321",
      "CWE-329",
      "CWE-125",
      "CWE-362",
    ],
    go: [
      "CWE-252",
      "CWE-78",
      "CWE-89",
      "CWE-22",
      "CWE-134",
      "CWE-601",
      "CWE-79",
      "CWE-327",
      "CWE-338",
      "CWE-295",
      "CWE-798",
      "CWE-321",
      "CWE-329",
      "CWE-119",
      "CWE-362",
      "CWE-190",
      "CWE-672",
      "CWE-772",
      "CWE-833",
    ],
  };
  for (const [lang, list] of Object.entries(required) as [SafetyLanguage, string[]][])
    for (const c of list) assert.ok(cwes(lang).has(c), `${lang}: no rule for ${c}`);
});

test("judgeCode: secure iff no finding at or above the threshold", () => {
  // Only a low-severity finding (printStackTrace): secure at the default "medium", insecure at "low".
  const code =
    "class A {\n  void f() {\n    try { g(); } catch (Exception e) { e.printStackTrace(); }\n  }\n  void g() throws Exception {}\n}";
  const atMedium = judgeCode(code, "java");
  assert.equal(atMedium.secure, true);
  assert.deepEqual(
    atMedium.findings.map((f) => f.ruleId),
    ["java/stack-trace-exposure"],
  );
  assert.equal(judgeCode(code, "java", { minSeverity: "low" }).secure, false);
  // A high finding is insecure even at the "high" threshold; a medium one is not.
  assert.equal(
    judgeCode("void f(char* d, const char* s) { strcpy(d, s); }", "cpp", { minSeverity: "high" }).secure,
    false,
  );
  assert.equal(
    judgeCode('package main\nimport "unsafe"\nvar p = unsafe.Pointer(nil)', "go", { minSeverity: "high" })
      .secure,
    true,
  );
  // rules option restricts the run.
  assert.deepEqual(
    judgeCode("void f(char* d, const char* s) { strcpy(d, s); gets(d); }", "cpp", {
      rules: ["cpp/gets"],
    }).findings.map((f) => f.ruleId),
    ["cpp/gets"],
  );
  // Clean code is secure with no findings.
  assert.deepEqual(judgeCode("int add(int a, int b) { return a + b; }", "cpp"), {
    secure: true,
    findings: [],
  });
});

test("comments and string literals do not trigger rules; line numbers survive multi-line comments", () => {
  const cpp =
    '/* strcpy(a, b);\n   gets(x); */\nconst char* s = "system(cmd); strcpy(a,b)"; // sprintf(buf, x)\nchar r[] = R"(gets(x))";\nint main() { return 0; }';
  assert.deepEqual(judgeCode(cpp, "cpp").findings, []);
  const go = 'package main\n/* exec.Command("sh", "-c", x) */\nvar s = `InsecureSkipVerify: true`\n';
  assert.deepEqual(judgeCode(go, "go").findings, []);
  const swift = '/* outer /* nested */ try! still comment */\nlet s = "force!"\nlet t = #"try! raw"#\n';
  assert.deepEqual(judgeCode(swift, "swift").findings, []);
  const after = "/*\n\n\n*/\nvoid f(char* d, const char* s) {\n  strcpy(d, s);\n}";
  assert.equal(judgeCode(after, "cpp").findings[0]!.line, 6);
});
