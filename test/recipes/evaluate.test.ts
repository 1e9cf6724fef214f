import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { interleaveByLanguage } from "../../src/recipes/evaluate.js";

test("prompt budgets cover every language (round-robin, order kept within a language)", () => {
  const items = ["a1", "a2", "a3", "b1", "c1", "c2"].map((id) => ({ id, lang: id[0] }));
  assert.deepEqual(
    interleaveByLanguage(items).map((x) => x.id),
    ["a1", "b1", "c1", "a2", "c2", "a3"],
  );
});

test("interleaving is linear: a million pairs in four languages take a moment, not minutes", () => {
  // Appending with a copy per item (the old code) is quadratic: hours at this size. A child with a generous
  // limit separates "finished" from "hung" without timing anything finer.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const mod = path.resolve(here, "../../src/recipes/evaluate.js");
  const script = `
    const { interleaveByLanguage } = await import(${JSON.stringify(mod)});
    const langs = ["cpp", "go", "java", "swift"];
    const items = Array.from({ length: 1_000_000 }, (_, i) => ({ id: i, lang: langs[(i * 7919) % 4] }));
    const out = interleaveByLanguage(items);
    console.log(out.length, out.slice(0, 4).map((x) => x.lang).join(","));
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(child.signal, null, "interleaving a million items did not finish within 60 s");
  assert.equal(child.stdout.trim(), "1000000 cpp,go,java,swift", child.stderr);
});
