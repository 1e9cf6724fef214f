/**
 * What README.md tells a user to type exists in the CLI: every `goodvibe …` command line (fenced and indented blocks,
 * and inline `code` spans), and every inline mention of a command with flags (`eval --prompts 0`, `identify --shard`),
 * names a command of the CLI and only flags that command defines, with a listed value where the flag takes one of a
 * few. The reference is the CLI's own option definitions (src/cli/program.ts builds the tree without parsing),
 * not its help text; the README is parsed as a user reads it. The config keys the README names (`identify.topK`,
 * `train.gradientCheckpointing`, …) are checked against the harden config's defaults the same way. The examples
 * (examples/*.sh, *.yaml) are held to the same, and examples/harden.yaml, which shows every key a user would set
 * with its default, to the config's defaults.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Command, Option } from "commander";
import { buildProgram } from "../../src/cli/program.js";
import { defaultHardenConfig } from "../../src/config/harden.js";
import { REPO_ROOT } from "../evalcore/make-model.js";
import { parse as parseYaml } from "yaml";

const README = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
const program = buildProgram(false);
const TOP = new Set(program.commands.map((c) => c.name()));

/** Shell-like words of one command (quotes kept together, not interpreted). */
function words(line: string): string[] {
  return line.match(/'[^']*'|"[^"]*"|\S+/g) ?? [];
}

/** One command line: `# comment` dropped, `&&`, `;`, `|` and `&` split it into commands. */
function commandsOf(line: string): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  for (const w of words(line)) {
    if (w.startsWith("#")) break;
    if (["&&", "||", ";", "|", "&"].includes(w)) {
      out.push(cur);
      cur = [];
    } else cur.push(w);
  }
  out.push(cur);
  return out.filter((c) => c.length > 0);
}

interface Use {
  /** where in the README, for the message */
  where: string;
  /** words after `goodvibe` */
  args: string[];
}

/** `goodvibe …` invocations in the README's code blocks (``` fenced, or indented by 4+ spaces) and inline spans. */
function readmeUses(): { blocks: Use[]; inline: Use[] } {
  const blocks: Use[] = [];
  const inline: Use[] = [];
  const lines = README.split("\n");
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (!fenced && !/^ {4,}\S/.test(line)) continue;
    let text = line;
    // continuation lines ending in a backslash
    while (text.endsWith("\\") && i + 1 < lines.length) text = text.slice(0, -1) + " " + lines[++i]!;
    for (const cmd of commandsOf(text)) {
      const at = cmd.findIndex((w) => w === "goodvibe");
      if (at < 0 || (at > 0 && cmd[at - 1] !== "npx")) continue;
      blocks.push({ where: `README line ${i + 1}: ${text.trim()}`, args: cmd.slice(at + 1) });
    }
  }
  // inline code spans outside fenced blocks: `goodvibe …` or a command name followed by a flag or a subcommand
  const prose = README.replace(/^\s*```[\s\S]*?^\s*```/gm, "");
  for (const m of prose.matchAll(/`([^`]+)`/g)) {
    const span = m[1]!.replace(/\s+/g, " ").trim();
    for (const cmd of commandsOf(span)) {
      let args: string[] | null = null;
      const at = cmd.indexOf("goodvibe");
      if (at >= 0 && (at === 0 || cmd[at - 1] === "npx")) args = cmd.slice(at + 1);
      else if (TOP.has(cmd[0]!) && cmd.length > 1) {
        const sub = program.commands.find((c) => c.name() === cmd[0])!;
        if (cmd[1]!.startsWith("-") || sub.commands.some((c) => c.name() === cmd[1])) args = cmd;
      }
      if (args && args.length) inline.push({ where: `README \`${span}\``, args });
    }
  }
  return { blocks, inline };
}

const GLOBAL = ["--json", "-q", "--quiet", "-h", "--help", "-V", "--version"];

/** The command a use names (walking subcommands), and the words after it. */
function resolve(args: string[]): { cmd: Command; path: string[]; rest: string[] } | null {
  let cmd: Command = program;
  const names: string[] = [];
  let i = 0;
  // global flags may come before the command
  while (i < args.length && GLOBAL.includes(args[i]!)) i++;
  for (; i < args.length; i++) {
    const sub = cmd.commands.find((c) => c.name() === args[i] || c.aliases().includes(args[i]!));
    if (!sub) break;
    cmd = sub;
    names.push(sub.name());
  }
  return names.length ? { cmd, path: names, rest: args.slice(i) } : null;
}

/** Option a flag names on this command (or a global one), and whether it takes a value. */
function optionFor(cmd: Command, flag: string): Option | "global" | undefined {
  if (GLOBAL.includes(flag)) return "global";
  return cmd.options.find((o) => o.long === flag || o.short === flag);
}

/**
 * Problems with one use: an unknown command or flag, or a value outside a flag's choices; for a whole command line
 * (`complete`), also a required option left out.
 */
function check(use: Use, complete: boolean): string[] {
  const r = resolve(use.args);
  if (!r) return [`${use.where}: "${use.args[0]}" is no goodvibe command`];
  const problems: string[] = [];
  const rest = r.rest;
  const given = new Set<Option>();
  for (let i = 0; i < rest.length; i++) {
    const w = rest[i]!;
    if (!/^--?[A-Za-z]/.test(w)) continue;
    const [flag, inlineValue] = w.includes("=")
      ? [w.slice(0, w.indexOf("=")), w.slice(w.indexOf("=") + 1)]
      : [w];
    const opt = optionFor(r.cmd, flag!);
    if (opt === undefined) {
      problems.push(`${use.where}: goodvibe ${r.path.join(" ")} has no option ${flag}`);
      continue;
    }
    if (opt === "global") continue;
    given.add(opt);
    if (!(opt.required || opt.optional)) continue;
    const value = inlineValue ?? rest[i + 1];
    if (inlineValue === undefined) i++;
    // a value written as a placeholder or a variable is the reader's to fill in
    if (value === undefined || /^[<$.…]|…/.test(value)) continue;
    if (opt.argChoices && !opt.argChoices.includes(value.replace(/^['"]|['"]$/g, "")))
      problems.push(
        `${use.where}: ${flag} ${value} is not one of ${opt.argChoices.join(", ")} (goodvibe ${r.path.join(" ")})`,
      );
  }
  // a command that only prints (--help) needs nothing
  if (complete && !rest.some((w) => w === "--help" || w === "-h"))
    for (const o of r.cmd.options)
      if (o.mandatory && !given.has(o))
        problems.push(`${use.where}: goodvibe ${r.path.join(" ")} requires ${o.long}, which is not given`);
  return problems;
}

test("every goodvibe command line in the README names a command and only its flags", () => {
  const { blocks, inline } = readmeUses();
  // the parse must have found the README's examples, or an empty list would pass
  const named = new Set(blocks.map((u) => resolve(u.args)?.path.join(" ")));
  for (const cmd of [
    "harden",
    "judge train",
    "eval",
    "export",
    "identify",
    "identify merge",
    "cluster",
    "train",
  ])
    assert.ok(named.has(cmd), `no README block runs goodvibe ${cmd} (found: ${[...named].join(", ")})`);
  assert.ok(blocks.length >= 10, `only ${blocks.length} command lines found in the README's blocks`);
  const problems = blocks.flatMap((u) => check(u, true));
  assert.deepEqual(problems, [], problems.join("\n"));
});

test("every inline mention of a command with flags in the README uses flags that command has", () => {
  const { inline } = readmeUses();
  const named = new Set(inline.map((u) => resolve(u.args)?.path.join(" ")));
  for (const cmd of ["eval", "generate", "export", "experiment run", "identify", "fold", "harden"])
    assert.ok(
      named.has(cmd),
      `no inline README mention of ${cmd} with a flag (found: ${[...named].join(", ")})`,
    );
  const problems = inline.flatMap((u) => check(u, false));
  assert.deepEqual(problems, [], problems.join("\n"));
});

test("the harden config keys the README names exist, with the defaults it states", () => {
  const cfg = defaultHardenConfig({ model: "m", data: "d", out: "o" }) as unknown as Record<string, unknown>;
  const at = (key: string): unknown =>
    key.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], cfg);
  const keys = new Set<string>();
  for (const m of README.matchAll(/`((?:identify|cluster|train|lora)\.[A-Za-z.]+)(?:[:=][^`]*)?`/g))
    keys.add(m[1]!);
  // not harden config keys: goodvibe-stats.json's record of the training's builds, an experiment judge's base
  for (const other of ["train.builds", "train.base"]) keys.delete(other);
  assert.ok(keys.size >= 8, `only ${keys.size} config keys found in the README`);
  const missing = [...keys].filter((k) => at(k) === undefined);
  assert.deepEqual(missing, [], `README names config keys that do not exist: ${missing.join(", ")}`);
  // the defaults the README states in words ("Defaults follow the paper", "Clusters per module", the judge's)
  const stated: [string, unknown][] = [
    ["identify.topK", 50],
    ["cluster.threshold", 0.05],
    ["train.lr", 1e-4],
    ["train.schedule", "cosine"],
    ["train.warmupRatio", 0.1],
    ["train.epochs", 2],
    ["train.batchSize", 1],
    ["train.gradientCheckpointing", "auto"],
    ["cluster.fallback", "shared"],
    ["cluster.features", "profile-normalized"],
    ["identify.lmHead", false],
    ["lora.dropout", 0.05],
    ["dtype", "bfloat16"],
  ];
  for (const [key, value] of stated) assert.deepEqual(at(key), value, `default of ${key}`);
});

/** `goodvibe …` (or `$GOODVIBE …`) lines of a script or a YAML file's comments, continuation lines joined. */
function fileUses(file: string): Use[] {
  const lines = fs
    .readFileSync(path.join(REPO_ROOT, file), "utf8")
    .split("\n")
    .map((l) => l.replace(/^\s*#\s?/, ""));
  const uses: Use[] = [];
  for (let i = 0; i < lines.length; i++) {
    let text = lines[i]!;
    const at = i + 1;
    while (text.trimEnd().endsWith("\\") && i + 1 < lines.length)
      text = text.trimEnd().slice(0, -1) + " " + lines[++i]!;
    for (const span of [text, ...[...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)])
      for (const cmd of commandsOf(span)) {
        const k = cmd.findIndex((w) => w === "goodvibe" || w === "$GOODVIBE");
        if (k >= 0 && resolve(cmd.slice(k + 1)))
          uses.push({ where: `${file}:${at}: ${text.trim()}`, args: cmd.slice(k + 1) });
      }
  }
  return uses;
}

test("the examples' goodvibe command lines name real commands and only their flags", () => {
  const uses = ["examples/slurm-array.sh", "examples/k8s-indexed-job.yaml", "examples/harden.yaml"].flatMap(
    fileUses,
  );
  const named = new Set(uses.map((u) => resolve(u.args)?.path.join(" ")));
  for (const cmd of ["identify", "identify merge", "cluster", "train", "experiment run", "harden"])
    assert.ok(named.has(cmd), `no example runs goodvibe ${cmd} (found: ${[...named].join(", ")})`);
  const problems = uses.flatMap((u) => check(u, false));
  assert.deepEqual(problems, [], problems.join("\n"));
});

test("examples/harden.yaml holds only config keys, each at its default", () => {
  const file = parseYaml(fs.readFileSync(path.join(REPO_ROOT, "examples/harden.yaml"), "utf8")) as Record<
    string,
    unknown
  >;
  const cfg = defaultHardenConfig({ model: "m", data: "d", out: "o" }) as unknown as Record<string, unknown>;
  const problems: string[] = [];
  const walk = (o: Record<string, unknown>, d: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      const key = prefix + k;
      // the user's own: which model, data, output and languages (all, when absent)
      if (["model", "data", "out", "languages"].includes(key)) continue;
      if (!(k in d)) problems.push(`${key}: not a config key`);
      else if (v !== null && typeof v === "object" && !Array.isArray(v))
        walk(v as Record<string, unknown>, d[k] as Record<string, unknown>, key + ".");
      else if (JSON.stringify(v) !== JSON.stringify(d[k]))
        problems.push(`${key}: ${JSON.stringify(v)} in the file, default ${JSON.stringify(d[k])}`);
    }
  };
  walk(file, cfg, "");
  assert.deepEqual(problems, [], problems.join("\n"));
});
