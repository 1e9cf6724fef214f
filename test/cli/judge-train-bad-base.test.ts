/**
 * `goodvibe judge train` on a base model folder it cannot use (no tokenizer.json; a config.json of a model_type the
 * tool does not support): refused with exit 2, the error naming the folder or file, no stack trace, and nothing
 * written beside the output — neither the output nor its run folder (.<out>.run), which the training's claim would
 * create. README: "Input checks (before any work, and before anything is allocated or written)".
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeCliFixture, runCli, showRun } from "./cli-helpers.js";

const fx = makeCliFixture({ perLanguage: 6 });
after(() => fx.cleanup());

/** A copy of the fixture's model folder under `name`, changed by `edit`. */
function brokenBase(name: string, edit: (dir: string) => void): string {
  const dir = path.join(fx.work, name);
  fs.cpSync(fx.model.dir, dir, { recursive: true });
  edit(dir);
  return dir;
}

const cases: [string, string, (dir: string) => void, RegExp][] = [
  [
    "no tokenizer.json",
    "sans tokenizer é",
    (d) => fs.rmSync(path.join(d, "tokenizer.json")),
    /sans tokenizer é: no tokenizer\.json/,
  ],
  [
    "a model_type the tool does not support",
    "arch inconnue ü",
    (d) => {
      const file = path.join(d, "config.json");
      const cfg = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
      fs.writeFileSync(
        file,
        JSON.stringify({ ...cfg, model_type: "mamba", architectures: ["MambaForCausalLM"] }),
      );
    },
    /arch inconnue ü[/\\]config\.json: model_type "mamba" is not supported/,
  ],
];

for (const [what, name, edit, message] of cases)
  test(`judge train on a base model with ${what}: exit 2, the file named, no output and no run folder left`, async () => {
    const base = brokenBase(name, edit);
    const out = path.join(fx.work, `juge ${name}`);
    const r = await runCli([
      "judge",
      "train",
      "-m",
      base,
      "-d",
      fx.pairsFile,
      "-o",
      out,
      "--epochs",
      "1",
      "--dev-fraction",
      "0.25",
    ]);
    assert.equal(r.code, 2, showRun(r));
    assert.match(r.stderr, message, showRun(r));
    assert.doesNotMatch(r.stderr, /\n\s+at /, "a stack trace");
    const left = fs.readdirSync(fx.work).filter((n) => n.includes(`juge ${name}`));
    assert.deepEqual(left, [], `left beside the output: ${left.join(", ")}`);
  });
