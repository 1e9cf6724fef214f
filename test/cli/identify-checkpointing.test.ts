/**
 * identify records its gradient checkpointing as asked and as used (the neuron map, --json, the text), as harden does
 * training's: "auto" is decided by the rule of method/checkpointing.ts (on the CPU, off while the largest batch's
 * activations fit in half the memory: kilobytes here), and what was used is checked against what was computed: a
 * checkpointed pass runs each layer's forward twice, so its FLOPs' forward count is larger and its backward the same.
 * Merged shards keep the record when every shard has the same one, and say so when not.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 4 });
after(() => fx.cleanup());

const common = [
  ...["-m", fx.model.dir, "-d", fx.pairsFile, "--top-k", "4"],
  ...["--set", "identify.maxPairs=4", "--set", "identify.batchSize=4"],
];

interface Map {
  gradientCheckpointing?: { requested: boolean | "auto"; used: boolean };
  flops: { forward: number; backward: number; total: number };
}

async function identifyWith(setting: string, name: string) {
  const out = path.join(fx.work, name, "neurons.json");
  const r = await runCli([
    "identify",
    ...common,
    "--set",
    `identify.gradientCheckpointing=${setting}`,
    "-o",
    out,
  ]);
  assert.equal(r.code, 0, showRun(r));
  return { text: r.stdout, map: JSON.parse(fs.readFileSync(out, "utf8")) as Map, out };
}

test("identify: the neuron map and the output say what checkpointing was asked and what was used", async () => {
  const auto = await identifyWith("auto", "auto");
  const on = await identifyWith("true", "on");
  const off = await identifyWith("false", "off");
  assert.deepEqual(auto.map.gradientCheckpointing, { requested: "auto", used: false });
  assert.deepEqual(on.map.gradientCheckpointing, { requested: true, used: true });
  assert.deepEqual(off.map.gradientCheckpointing, { requested: false, used: false });
  assert.match(auto.text, /^gradient checkpointing \(identification\): auto → off$/m);
  assert.match(on.text, /^gradient checkpointing \(identification\): on \(as set\)$/m);
  // what was used is what was computed: "auto" counted the FLOPs of the pass without checkpointing, "true" a second
  // forward of every layer on top
  assert.deepEqual(auto.map.flops, off.map.flops);
  assert.ok(on.map.flops.forward > off.map.flops.forward);
  assert.equal(on.map.flops.backward, off.map.flops.backward);
  // --json carries the record
  const j = await runCli(["identify", ...common, "-o", path.join(fx.work, "json", "neurons.json"), "--json"]);
  assert.equal(j.code, 0, showRun(j));
  assert.deepEqual(JSON.parse(j.stdout).gradientCheckpointing, { requested: "auto", used: false });
});

test("identify merge: the shards' record when they agree; not recorded, and said, when they do not", async () => {
  const dirs = [1, 2].map((i) => path.join(fx.work, "shards", `shard-${i}`));
  for (const [k, dir] of dirs.entries()) {
    const s = await runCli(["identify", ...common, "--shard", `${k + 1}/2`, "-o", dir, "--json"]);
    assert.equal(s.code, 0, showRun(s));
    assert.deepEqual(JSON.parse(s.stdout).gradientCheckpointing, { requested: "auto", used: false });
  }
  const merged = path.join(fx.work, "merged.json");
  const m = await runCli(["identify", "merge", "-o", merged, ...dirs, "--json"]);
  assert.equal(m.code, 0, showRun(m));
  assert.deepEqual(JSON.parse(m.stdout).gradientCheckpointing, { requested: "auto", used: false });
  assert.deepEqual(JSON.parse(fs.readFileSync(merged, "utf8")).gradientCheckpointing, {
    requested: "auto",
    used: false,
  });
  // one shard decided otherwise (another machine): the merged map keeps no record and the merge says why
  const info = path.join(dirs[1]!, "shard.json");
  const j = JSON.parse(fs.readFileSync(info, "utf8"));
  fs.writeFileSync(info, JSON.stringify({ ...j, gradientCheckpointing: { requested: "auto", used: true } }));
  const mixed = path.join(fx.work, "mixed.json");
  const x = await runCli(["identify", "merge", "-o", mixed, ...dirs]);
  assert.equal(x.code, 0, showRun(x));
  assert.match(
    x.stdout,
    /gradient checkpointing \(identification\): not recorded \(the shards did not all record/,
  );
  assert.equal(JSON.parse(fs.readFileSync(mixed, "utf8")).gradientCheckpointing, undefined);
});
