/**
 * `judge check` on held-out data that overlaps the judge's training data: a trained judge records the code it was
 * trained on (judge_training.json trainingCode: the first 16 hex digits of SHA-256 of each sample's code, whitespace
 * and case aside), and the check counts the held-out samples and pairs whose code is among it and gives the
 * reliability on the others. References: SHA-256 from node:crypto on a normalisation written here, and confusion
 * counts worked by hand.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { codeFingerprint, trainingOverlap } from "../../src/eval/judge/llm.js";
import { trainJudge } from "../../src/recipes/train-judge.js";
import { extractCode } from "../../src/data/code.js";
import type { LabelledSample } from "../../src/data/pairs.js";
import { makeTinyChatModel, scratchDir } from "./make-model.js";
import { runCli, showRun } from "../cli/cli-helpers.js";

const hash16 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex").slice(0, 16);

test("codeFingerprint: SHA-256 of the code with whitespace runs made one space, trimmed, lower case", () => {
  assert.equal(codeFingerprint("  X  =\n\t1 "), hash16("x = 1"));
  assert.equal(codeFingerprint("x = 1"), codeFingerprint("X =   1\n"));
  assert.notEqual(codeFingerprint("x = 1"), codeFingerprint("x = 2"));
});

test("trainingOverlap: seen samples and pairs counted, the reliability on the others by hand", () => {
  const s = (id: string, code: string, secure: boolean): LabelledSample => ({ id, code, secure });
  const samples = [
    s("p1/secure", "a = safe(x)", true),
    s("p1/insecure", "a = eval(x)", false),
    s("p2/secure", "b = int(x)", true),
    s("p2/insecure", "b = eval(x)", false),
    s("p3/secure", "c = quote(x)", true),
    s("p3/insecure", "c = raw(x)", false),
  ];
  // judged: p1 right, right; p2 wrong (FP), right (TP); p3 right (TN), wrong (FN)
  const pUnsafe = [0.2, 0.9, 0.7, 0.8, 0.1, 0.3];
  const rel = { perItem: samples.map((x, i) => ({ id: x.id, secure: x.secure, pUnsafe: pUnsafe[i]! })) };
  // the judge trained on p1's secure code (re-indented, other case) and p3's insecure code
  const training = new Set([hash16("a = safe(x)"), hash16("c = raw(x)")]);
  const o = trainingOverlap(
    rel,
    samples,
    new Set([codeFingerprint("  A = SAFE(x)\n"), codeFingerprint("c = raw(x)")]),
  );
  assert.deepEqual(training, new Set([codeFingerprint("a = safe(x)"), codeFingerprint("c = raw(x)")]));
  assert.equal(o.samples, 2);
  assert.equal(o.pairs, 2);
  assert.equal(o.ofPairs, 3);
  // unseen: p1/insecure TP, p2/secure FP, p2/insecure TP, p3/secure TN
  const u = o.unseen!;
  assert.equal(u.n, 4);
  assert.deepEqual([u.confusion.tp, u.confusion.fp, u.confusion.tn, u.confusion.fn], [2, 1, 1, 0]);
  assert.equal(u.accuracy, 3 / 4);
  assert.equal(u.tpr, 1);
  assert.equal(u.fpr, 1 / 2);
  // Wilson 3/4 (z = 1.96) by hand: [30.1, 95.4]
  assert.ok(
    Math.abs(u.accuracyInterval.low - 0.3006) < 1e-3 && Math.abs(u.accuracyInterval.high - 0.9544) < 1e-3,
  );
  // labelled code, not pairs: samples only; all seen: nothing left to measure
  const code = samples.map((x, i) => ({ ...x, id: `row${i}` }));
  const all = trainingOverlap(rel, code, new Set(samples.map((x) => codeFingerprint(x.code))));
  assert.equal(all.pairs, undefined);
  assert.equal(all.samples, 6);
  assert.equal(all.unseen, null);
});

test("a trained judge records its training code; judge check reports the overlap and the rest's reliability", async () => {
  const made = makeTinyChatModel({ seed: 5 });
  const work = scratchDir("gv-judge-overlap-");
  const train = made.pairs.filter((_, i) => i % 12 === 0).slice(0, 4);
  const others = made.pairs.filter((_, i) => i % 12 === 6).slice(0, 3);
  const outDir = path.join(work, "judge");
  await trainJudge({
    baseModelDir: made.dir,
    pairs: train,
    outDir,
    method: "full",
    cfg: { epochs: 1, batchSize: 4, gradAccum: 1, gradientCheckpointing: false },
  });
  const norm = (t: string) => t.replace(/\s+/g, " ").trim().toLowerCase();
  const codeOf = (a: string) => norm(extractCode(a) ?? a);
  const trainCodes = new Set(train.flatMap((p) => [codeOf(p.chosen), codeOf(p.rejected)]));
  const recFile = path.join(outDir, "judge_training.json");
  const rec = JSON.parse(fs.readFileSync(recFile, "utf8"));
  assert.equal(rec.trainingPairs, 4);
  assert.deepEqual(rec.trainingCode, [...trainCodes].map(hash16).sort());

  // held out: two training pairs and three others
  const heldOut = [...train.slice(0, 2), ...others];
  const dataFile = path.join(work, "held-out.jsonl");
  fs.writeFileSync(dataFile, heldOut.map((p) => JSON.stringify(p)).join("\n") + "\n");
  const seenSamples = heldOut
    .flatMap((p) => [p.chosen, p.rejected])
    .filter((a) => trainCodes.has(codeOf(a))).length;
  const seenPairs = heldOut.filter(
    (p) => trainCodes.has(codeOf(p.chosen)) || trainCodes.has(codeOf(p.rejected)),
  ).length;
  assert.ok(seenSamples >= 4 && seenSamples < 10, `the data must hold both kinds (${seenSamples} seen)`);
  const r = await runCli(["judge", "check", "--judge", outDir, "-d", dataFile, "--json"]);
  assert.equal(r.code, 0, showRun(r));
  const json = JSON.parse(r.stdout);
  assert.equal(json.trainingOverlap.samples, seenSamples);
  assert.equal(json.trainingOverlap.pairs, seenPairs);
  assert.equal(json.trainingOverlap.ofPairs, 5);
  assert.equal(json.trainingOverlap.unseen.n, 10 - seenSamples);
  // the unseen confusion is the full one less the seen samples' verdicts
  const seenIds = new Set(
    heldOut.flatMap((p) =>
      [
        [`${p.id}/secure`, p.chosen],
        [`${p.id}/insecure`, p.rejected],
      ]
        .filter(([, a]) => trainCodes.has(codeOf(a!)))
        .map(([id]) => id),
    ),
  );
  const rest = json.perItem.filter((x: { id: string }) => !seenIds.has(x.id));
  const correct = rest.filter(
    (x: { secure: boolean; pUnsafe: number }) => x.pUnsafe <= 0.5 === x.secure,
  ).length;
  assert.equal(json.trainingOverlap.unseen.accuracy, correct / rest.length);
  const text = await runCli(["judge", "check", "--judge", outDir, "-d", dataFile]);
  assert.match(
    text.stdout,
    new RegExp(
      `${seenSamples} of 10 samples \\(${seenPairs} of 5 pairs\\) have code the judge was trained on.*on the other ${10 - seenSamples}: accuracy`,
    ),
  );
  // a judge trained before the record listed its code: the overlap is said to be unknown
  delete rec.trainingCode;
  fs.writeFileSync(recFile, JSON.stringify(rec));
  const old = await runCli(["judge", "check", "--judge", outDir, "-d", dataFile]);
  assert.equal(old.code, 0, showRun(old));
  assert.match(old.stdout, /lists no training code .* unknown/);
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(made.dir, { recursive: true, force: true });
});
