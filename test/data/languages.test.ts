import { test } from "node:test";
import assert from "node:assert/strict";
import {
  LANGUAGES,
  SAFETY_LANGUAGES,
  datasetName,
  fenceLanguage,
  isSafetyLanguage,
  languageName,
  normalizeLanguage,
  safetyLanguage,
} from "../../src/data/languages.js";

test("the safety evaluation covers the paper's four languages, all known to the table", () => {
  assert.deepEqual([...SAFETY_LANGUAGES], ["cpp", "java", "swift", "go"]);
  for (const l of SAFETY_LANGUAGES) assert.ok(LANGUAGES.includes(l), l);
  assert.deepEqual(
    LANGUAGES.filter((l) => isSafetyLanguage(l)),
    [...SAFETY_LANGUAGES],
  );
  assert.equal(isSafetyLanguage("python"), false);
});

test("every language's normalised name, dataset spelling and prose name find it again", () => {
  for (const l of LANGUAGES) {
    assert.equal(normalizeLanguage(l), l);
    assert.equal(normalizeLanguage(datasetName(l)), l, datasetName(l));
    assert.equal(normalizeLanguage(languageName(l).toUpperCase()), l, languageName(l));
  }
  assert.equal(datasetName("cpp"), "c++");
  assert.equal(datasetName("csharp"), "c#");
  assert.equal(languageName("cpp"), "C++");
  assert.equal(languageName("klingon"), "klingon");
});

test("fence-only tags are not dataset spellings: ```h and ```c are C++ code, a dataset row in c is not C++", () => {
  for (const tag of ["h", "c", "hpp", "hxx", "cplusplus", "objective-c++"]) {
    assert.equal(fenceLanguage(tag), "cpp", tag);
    assert.equal(normalizeLanguage(tag), null, tag);
  }
  assert.equal(fenceLanguage("jav"), "java");
  assert.equal(fenceLanguage("py"), "python");
  assert.equal(safetyLanguage("py"), null);
  assert.equal(safetyLanguage("H"), "cpp");
});

test("spellings that are object keys are not languages", () => {
  for (const s of ["constructor", "__proto__", "toString", "hasOwnProperty", ""]) {
    assert.equal(normalizeLanguage(s), null, s);
    assert.equal(fenceLanguage(s), null, s);
  }
});
