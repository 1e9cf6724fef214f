import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "../../src/errors.js";
import { parseJson, refuseForbiddenKeys } from "../../src/util/keys.js";

test("a forbidden key is refused with its full key path, at any depth and inside arrays", () => {
  const cases: [string, string][] = [
    ['{"constructor": 1}', "constructor"],
    ['{"a": [1, {"b": {"prototype": {}}}]}', "a[1].b.prototype"],
    ['[[{"x": 1}], [[{"y": {"__proto__": 2}}]]]', "[1][0][0].y.__proto__"],
    ['{"a": {"b": 1}, "c": [{"d": [{"e.constructor.f": 0}]}]}', "c[0].d[0].e.constructor.f"],
  ];
  for (const [text, keyPath] of cases)
    assert.throws(
      () => parseJson(text, "f.json"),
      (e: unknown) =>
        e instanceof InputError &&
        e.message.startsWith(`f.json: key "`) &&
        e.message.includes(` at ${keyPath} `),
      text,
    );
  assert.doesNotThrow(() =>
    parseJson('{"a": [{"b": {"c": [1, {"d": null}]}}], "e": "constructor"}', "ok.json"),
  );
});

test("skipKeysAt sees every object's own key path, siblings and cousins included", () => {
  const value = JSON.parse('{"a": {"b": [{"c": {}}, 5, [{"d": {}}]], "e": {}}, "f": [[{}]]}') as unknown;
  const seen: string[] = [];
  refuseForbiddenKeys(value, "f.json", {
    skipKeysAt: (p) => {
      seen.push(JSON.stringify(p));
      return false;
    },
  });
  // the objects of `value`, by hand (arrays are walked, not asked about)
  const expected = [
    [],
    ["a"],
    ["a", "b", 0],
    ["a", "b", 0, "c"],
    ["a", "b", 2, 0],
    ["a", "b", 2, 0, "d"],
    ["a", "e"],
    ["f", 0, 0],
  ];
  assert.deepEqual(seen.sort(), expected.map((p) => JSON.stringify(p)).sort());
  // a skipped object's own keys may be anything; its values are still checked
  const vocab = JSON.parse('{"model": {"vocab": {"constructor": 1, "x": {"__proto__": 1}}}}') as unknown;
  assert.throws(
    () => refuseForbiddenKeys(vocab, "t.json", { skipKeysAt: (p) => p.at(-1) === "vocab" }),
    (e: unknown) => e instanceof InputError && e.message.includes(" at model.vocab.x.__proto__ "),
  );
});

test("the key check is linear in the nesting depth (100,000 nested arrays and objects finish)", () => {
  // A copied key path per value made this quadratic: 20,000 nested arrays took 16 s, 100,000 would take minutes.
  // The child's generous limit only separates "finished" from "hung"; a linear walk takes milliseconds.
  const keysModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/util/keys.js");
  const script = `
    const { parseJson } = await import(${JSON.stringify(keysModule)});
    const depth = 100000;
    parseJson("[".repeat(depth) + "]".repeat(depth), "arrays.json");
    try {
      parseJson('{"a":'.repeat(depth) + '{"constructor":1}' + "}".repeat(depth), "objects.json");
      console.log("accepted");
    } catch (e) {
      console.log(e.name, e.message.includes(" at " + "a.".repeat(depth) + "constructor "));
    }
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(child.signal, null, "the key check did not finish within 20 s at depth 100,000");
  assert.equal(child.stdout.trim(), "InputError true", child.stderr);
});
