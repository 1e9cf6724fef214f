/**
 * GOODVIBE_FUSED: 0 / 1 for every fused op, or a list of +op / -op over the per-op defaults; anything else refused
 * by name when a fused op is first chosen (not while modules load).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseFusedEnv } from "../../src/tensor/index.js";
import { InputError } from "../../src/errors.js";

const TENSOR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/tensor/index.js");

test("parseFusedEnv: 0, 1, empty, and +op / -op lists", () => {
  assert.deepEqual(parseFusedEnv("1"), { all: true, perOp: new Map() });
  assert.deepEqual(parseFusedEnv("0"), { all: false, perOp: new Map() });
  assert.deepEqual(parseFusedEnv(undefined), { all: null, perOp: new Map() });
  assert.deepEqual(parseFusedEnv(" "), { all: null, perOp: new Map() });
  assert.deepEqual(parseFusedEnv("+frozenDx"), { all: null, perOp: new Map([["frozenDx", true]]) });
  assert.deepEqual(parseFusedEnv(" -concatLinear , +frozenDx "), {
    all: null,
    perOp: new Map([
      ["concatLinear", false],
      ["frozenDx", true],
    ]),
  });
  for (const bad of ["frozenDx", "+frozendx", "+frozenDx,,-rmsNorm", "yes", "2"]) {
    assert.throws(
      () => parseFusedEnv(bad),
      (e: unknown) =>
        e instanceof InputError &&
        e.message.includes(`GOODVIBE_FUSED=${bad}`) &&
        e.message.includes("frozenDx"),
      bad,
    );
  }
});

/** fusedOps for each op in a process started with GOODVIBE_FUSED=value, after an optional setFusedOp round trip. */
function inChild(value: string, script: string): { status: number | null; out: string; err: string } {
  const r = spawnSync(
    process.execPath,
    ["--input-type=module", "-e", `const t = await import(${JSON.stringify(TENSOR)}); ${script}`],
    { env: { ...process.env, GOODVIBE_FUSED: value }, encoding: "utf8" },
  );
  return { status: r.status, out: r.stdout.trim(), err: r.stderr };
}

test("GOODVIBE_FUSED=+op / -op sets those ops over the defaults; setFusedOp overrides and null returns to it", () => {
  // each op's setting, then whether frozenDx's was given (forced on or off) rather than its budgeted default
  const show =
    `console.log(JSON.stringify(["frozenDx", "concatLinear", "rmsNorm"].map((op) => t.fusedOps(op, "cpu"))),` +
    ` t.fusedOpExplicit("frozenDx"));`;
  assert.equal(inChild("", show).out, "[true,true,true] false", "the defaults");
  assert.equal(inChild("+frozenDx", show).out, "[true,true,true] true");
  assert.equal(inChild("-frozenDx", show).out, "[false,true,true] true");
  assert.equal(inChild("+frozenDx,-concatLinear", show).out, "[true,false,true] true");
  assert.equal(inChild("-concatLinear", show).out, "[true,false,true] false");
  assert.equal(inChild("1", show).out, "[true,true,true] true");
  assert.equal(inChild("0", show).out, "[false,false,false] true");
  // on another device the listed ops apply too; the rest stay op by op there
  assert.equal(
    inChild("+frozenDx", `console.log(t.fusedOps("frozenDx", "cuda"), t.fusedOps("rmsNorm", "cuda"));`).out,
    "true false",
  );
  const roundTrip = inChild(
    "+frozenDx",
    `t.setFusedOp("frozenDx", false); const off = t.fusedOps("frozenDx"); t.setFusedOp("frozenDx", null);` +
      ` console.log(off, t.fusedOps("frozenDx"));`,
  );
  assert.equal(roundTrip.out, "false true");
});

test("a bad GOODVIBE_FUSED loads, then refuses by name at the first fused-op choice", () => {
  const r = inChild(
    "+nope",
    `console.log("loaded"); try { t.fusedOps("rmsNorm"); } catch (e) { console.log(e.name, e.message); }`,
  );
  assert.equal(r.status, 0, r.err);
  const [first, second] = r.out.split("\n");
  assert.equal(first, "loaded");
  assert.match(second!, /^InputError GOODVIBE_FUSED=\+nope: '\+nope' is not 0, 1 or a list of \+op \/ -op/);
});
