/**
 * The report's note on which builds computed the cells (CellResult.build): one build named; several (an experiment
 * resumed after an upgrade, or sharded over machines whose addons take other bf16 routes) counted cell by cell with
 * the remedy; a float32 base cell (no bf16 route) agrees with any route; results without records say nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { CellResult } from "../../src/report/schema.js";
import { parseExperimentResults } from "../../src/report/schema.js";
import { buildsNote, mixedBuilds } from "../../src/report/builds.js";
import { reportNotes } from "../../src/report/render.js";
import { handMadeResults } from "./fixture.js";

const A = {
  goodvibe: "0.1.0",
  commit: "aaaaaaaaaaaa",
  addon: "sources 111111111111",
  libtorch: "1.13.0",
  device: "cpu",
};
const routeF32 = { ...A, bf16Products: "float32, rounded once" };
const routeOwn = { ...A, bf16Products: "libtorch's own" };

function withBuilds(builds: (CellResult["build"] | undefined)[]) {
  const r = handMadeResults();
  r.cells = r.cells.map((c, i) => {
    const b = builds[i % builds.length];
    const { build: _drop, ...rest } = c;
    return b ? { ...rest, build: b } : rest;
  });
  // the schema accepts the record
  return parseExperimentResults(JSON.parse(JSON.stringify(r)), "results.json");
}

test("one build: named once; a float32 base (no bf16 route) beside bf16 cells of one route is one build", () => {
  const r = withBuilds([A, routeF32]);
  assert.equal(mixedBuilds(r.cells), null);
  assert.equal(
    buildsNote(r.cells),
    "Every cell was computed by goodvibe 0.1.0 (commit aaaaaaaaaaaa, addon sources 111111111111, libtorch 1.13.0, cpu, " +
      "bf16 products: float32, rounded once) (the bf16 route where a model computes in bf16 on the CPU).",
  );
  assert.ok(reportNotes(r).includes(buildsNote(r.cells)!));
});

test("two bf16 routes, or another version, or cells without a record beside recorded ones: counted, with the remedy", () => {
  const routes = withBuilds([routeF32, routeOwn]);
  const n = routes.cells.length;
  const w = mixedBuilds(routes.cells)!;
  assert.match(w, /computed by more than one build/);
  assert.ok(
    w.includes(
      `${Math.ceil(n / 2)} cells by goodvibe 0.1.0 (commit aaaaaaaaaaaa, addon sources 111111111111, libtorch 1.13.0, cpu, bf16 products: float32, rounded once)`,
    ),
    w,
  );
  assert.ok(w.includes(`bf16 products: libtorch's own)`), w);
  assert.match(
    w,
    /delete the other builds' cells \(cells\/<id>\.json\) and rerun; .*GOODVIBE_F32_PRODUCTS=1/,
  );
  assert.match(buildsNote(routes.cells)!, /^Builds: the cells were computed by more than one build/);
  const upgraded = withBuilds([A, { ...A, goodvibe: "0.2.0" }]);
  assert.match(mixedBuilds(upgraded.cells)!, /computed by more than one build/);
  const partly = withBuilds([A, undefined]);
  assert.match(mixedBuilds(partly.cells)!, /by an earlier goodvibe that did not record its build/);
});

test("several builds: a float32 base cell is counted with its own build's bf16 cells, not as a build of its own", () => {
  const B = { ...routeOwn, goodvibe: "0.2.0" };
  // every third cell each: A (no route), routeOwn (A's build with its route), B (another version)
  const r = withBuilds([A, routeOwn, B]);
  const n = r.cells.length;
  const nB = r.cells.filter((c) => c.build?.goodvibe === "0.2.0").length;
  const w = mixedBuilds(r.cells)!;
  assert.match(w, /computed by more than one build/);
  const counted = [...w.matchAll(/(\d+) cells? by goodvibe/g)].map((m) => Number(m[1]));
  // two builds, not three: A's cells and routeOwn's are one
  assert.deepEqual(
    counted,
    [n - nB, nB].sort((a, b) => b - a),
  );
  assert.ok(
    w.includes(
      `${n - nB} cells by goodvibe 0.1.0 (commit aaaaaaaaaaaa, addon sources 111111111111, libtorch 1.13.0, cpu, bf16 products: libtorch's own)`,
    ),
    w,
  );
  // a build whose every cell lacks a route stays a group of its own
  const noRoute = withBuilds([A, { ...A, goodvibe: "0.2.0" }]);
  assert.equal([...mixedBuilds(noRoute.cells)!.matchAll(/cells? by goodvibe/g)].length, 2);
});

test("results made before the record: no note", () => {
  const r = withBuilds([undefined]);
  assert.equal(buildsNote(r.cells), null);
  assert.equal(mixedBuilds(r.cells), null);
  assert.ok(!reportNotes(r).some((n) => /build/i.test(n)));
});

test("cells of two commits that run the same code (a docs-only commit between them) are one build; other code is not", () => {
  const withCode = { ...A, code: "c0dec0dec0de" };
  const docsOnly = withBuilds([withCode, { ...withCode, commit: "bbbbbbbbbbbb" }]);
  assert.equal(mixedBuilds(docsOnly.cells), null);
  assert.match(
    buildsNote(docsOnly.cells)!,
    /^Every cell was computed by goodvibe 0\.1\.0 \(commit .*, code c0dec0dec0de,/,
  );
  const otherCode = withBuilds([withCode, { ...withCode, commit: "bbbbbbbbbbbb", code: "0ther0ther0th" }]);
  assert.match(mixedBuilds(otherCode.cells)!, /computed by more than one build/);
  // records made before the code hash are compared by commit, as they were
  const old = withBuilds([A, { ...A, commit: "bbbbbbbbbbbb" }]);
  assert.match(mixedBuilds(old.cells)!, /computed by more than one build/);
});
