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
  // a file path after the language (```cpp:src/main.cpp); a path alone names no language
  assert.equal(fenceLanguage("cpp:src/main.cpp"), "cpp");
  assert.equal(fenceLanguage("go:main.go"), "go");
  assert.equal(fenceLanguage("swift1.5:a.swift"), "swift");
  assert.equal(fenceLanguage("main.cpp"), null);
  assert.equal(fenceLanguage("klingon:main.cpp"), null);
  assert.equal(fenceLanguage(":main.cpp"), null);
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

// GitHub linguist's lib/linguist/languages.yml (github-linguist/linguist @000579b6): Go's alias is golang; Java and
// Swift have none; C++'s alias is cpp and its extensions .cpp .c++ .cc .cp .cxx .h .h++ .hh .hpp .hxx .inl .ino .ipp
// .tcc .tpp; Objective-C's aliases obj-c, objc, objectivec; Objective-C++'s obj-c++, objc++, objectivec++ (.mm).
test("fence tags after linguist: C++'s aliases and extensions, Objective-C(++) as C++, golang", () => {
  const cpp = [
    "cpp",
    "c++",
    "cc",
    "cxx",
    "cp",
    "h",
    "h++",
    "hh",
    "hpp",
    "hxx",
    "inl",
    "ino",
    "ipp",
    "tcc",
    "tpp",
  ];
  const objc = [
    "objective-c",
    "obj-c",
    "objc",
    "objectivec",
    "objective-c++",
    "obj-c++",
    "objc++",
    "objectivec++",
  ];
  for (const tag of [...cpp, ...objc, "mm"]) assert.equal(fenceLanguage(tag), "cpp", tag);
  assert.equal(fenceLanguage("golang"), "go");
  assert.equal(fenceLanguage("Go"), "go");
  // not C++: other languages' extensions that linguist also lists for C++
  for (const tag of ["inc", "re"]) assert.equal(fenceLanguage(tag), null, tag);
});

test("a version glued to a language's name is that language: ```cpp17, ```c++20, ```swift5, ```java8, ```go1.21", () => {
  const cases: [string, string][] = [
    ["cpp17", "cpp"],
    ["cpp11", "cpp"],
    ["c++17", "cpp"],
    ["c++20", "cpp"],
    ["C++14", "cpp"],
    ["cpp-17", "cpp"],
    ["swift5", "swift"],
    ["swift5.9", "swift"],
    ["java8", "java"],
    ["java17", "java"],
    ["java-21", "java"],
    ["go1.21", "go"],
    ["golang1.22", "go"],
    ["python3.11", "python"],
    ["kotlin1.9", "kotlin"],
  ];
  for (const [tag, lang] of cases) assert.equal(fenceLanguage(tag), lang, tag);
  for (const [tag, lang] of cases.filter(([, l]) => l !== "python" && l !== "kotlin"))
    assert.equal(safetyLanguage(tag), lang, tag);
  // only a name's version: fence-only tags, unknown names and bare numbers stay unknown
  for (const tag of ["h5", "mm2", "x86", "v8", "17", "1.21", "javax", "gopher"])
    assert.equal(fenceLanguage(tag), null, tag);
  // a dataset spelling is not a fence tag: "c++17" in a dataset's language column is refused, not read as C++
  assert.equal(normalizeLanguage("c++17"), null);
});
