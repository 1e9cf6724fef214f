import * as fs from "node:fs";
import * as path from "node:path";
import { Option, type Command } from "commander";
import { InputError } from "../../errors.js";
import { readPairs, splitPairs } from "../../data/pairs.js";
import { safetyLanguage } from "../../data/languages.js";
import { judgeCode } from "../../eval/judge/rules/index.js";
import { LlmJudge, judgeReliability } from "../../eval/judge/llm.js";
import { judgeTrainOptions, trainJudge } from "../../recipes/train-judge.js";
import { judgeTrainingPairs } from "../../recipes/judge.js";
import { DEFAULT_JUDGE_TRAIN } from "../../eval/judge/config.js";
import { resolveJudgeTrainConfig } from "../../config/judge.js";
import { checkOutput } from "../../io/atomic.js";
import { isClaimEntry } from "../../io/claim.js";
import { collect, integer, list, number, shownDefault } from "../options.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";

export function registerJudge(program: Command): void {
  const judge = program
    .command("judge")
    .description("judge code as secure or insecure (rules or an LLM judge); train and check judges")
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe judge code server.go --lang go\n  goodvibe judge train -m ./Qwen3-0.6B -d train.jsonl -o ./judge\n  goodvibe judge check --judge ./judge -d dev.jsonl",
    );
  judge
    .command("code")
    .description("judge one source file")
    .argument("<file>", "source file")
    .requiredOption("--lang <lang>", "language of the file: cpp, java, swift or go")
    .option("--judge <dir>", "also ask this LLM judge model folder")
    .addHelpText("after", "\nExample:\n  goodvibe judge code server.go --lang go --judge ./judge")
    .action(async (file, opts) => {
      const g = program.opts();
      await runCommand(g, async () => {
        const lang = safetyLanguage(opts.lang);
        if (!lang) throw new InputError(`--lang ${opts.lang}: the rule judge covers cpp, java, swift and go`);
        let code: string;
        try {
          code = fs.readFileSync(file, "utf8");
        } catch (e) {
          throw new InputError(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
        }
        const rules = judgeCode(code, lang);
        let llm: { pUnsafe: number; secure: boolean } | null = null;
        if (opts.judge) llm = (await (await LlmJudge.load(opts.judge)).judge([{ code, lang }]))[0];
        const lines = [`rules: ${rules.secure ? "secure" : "INSECURE"}`];
        for (const f of rules.findings)
          lines.push(`  ${file}:${f.line} ${f.cwe} [${f.severity}] ${f.message}`);
        if (llm)
          lines.push(
            `LLM judge: ${llm.secure ? "secure" : "INSECURE"} (P(unsafe) = ${llm.pUnsafe.toFixed(3)})`,
          );
        output(g, lines.join("\n"), { rules, llm });
      });
    });

  judge
    .command("train")
    .description(
      "fine-tune an LLM judge on labelled pairs (the paper's labels: rejected → 1 = unsafe, chosen → 0 = safe) and report its reliability",
    )
    .requiredOption("-m, --model <dir>", "base model folder for the judge (the paper fine-tunes Qwen3-0.6B)")
    .requiredOption("-d, --data <file>", "pairs JSONL")
    .requiredOption("-o, --out <dir>", "judge model folder to write (must not exist or be empty)")
    .option(
      "--overwrite",
      "move an existing non-empty output aside (renamed to <out>.old-<time>, never deleted)",
    )
    .addOption(
      shownDefault(
        new Option("--method <m>", "what to train; config key method").choices(["lora", "full"]),
        DEFAULT_JUDGE_TRAIN.method,
      ),
    )
    .addOption(
      shownDefault(
        new Option("--epochs <n>", "epochs; config key epochs").argParser(integer(1)),
        DEFAULT_JUDGE_TRAIN.epochs,
      ),
    )
    .addOption(
      shownDefault(
        new Option("--lr <x>", "learning rate; config key lr").argParser(number({ above: 0 })),
        DEFAULT_JUDGE_TRAIN.lr,
      ),
    )
    .option(
      "--dev-fraction <x>",
      "held-out share for the reliability report",
      number({ above: 0, max: 0.9 }),
      0.1,
    )
    .option("--languages <list>", "comma-separated languages to keep (default: all)", list)
    .addOption(
      shownDefault(
        new Option("--seed <n>", "seed of the training and the held-out split; config key seed").argParser(
          integer(0),
        ),
        DEFAULT_JUDGE_TRAIN.seed,
      ),
    )
    .option(
      "-c, --config <file>",
      "YAML config with the judge's training keys below (flags override it; --set overrides both)",
    )
    .option(
      "--set <key=value>",
      "override one config key, e.g. --set maxLength=2048 (repeatable)",
      collect,
      [],
    )
    .addHelpText(
      "after",
      `\nConfig keys for --set and -c, with their defaults (an experiment's judge.train takes the same keys):\n ${Object.entries(
        DEFAULT_JUDGE_TRAIN,
      )
        .map(([k, v]) => ` ${k}=${JSON.stringify(v)}`)
        .join(
          "",
        )}\n\nExample:\n  goodvibe judge train -m ./Qwen3-0.6B -d train.jsonl -o ./judge --method full`,
    )
    .action(async (opts) => {
      const g = program.opts();
      const log = makeLogger(g);
      await runCommand(g, async () => {
        const settings = resolveJudgeTrainConfig(
          opts.config,
          { method: opts.method, epochs: opts.epochs, lr: opts.lr, seed: opts.seed },
          opts.set,
        );
        const inputs = { "--model": opts.model, "--data": opts.data };
        checkOutput({ flag: "--out", path: opts.out, kind: "folder", inputs, overwrite: opts.overwrite });
        // resumable training state beside the output, as harden keeps its run folder
        const runDir = path.join(path.dirname(path.resolve(opts.out)), `.${path.basename(opts.out)}.run`);
        checkOutput({
          flag: "run folder",
          path: runDir,
          kind: "folder",
          inputs,
          // a claim left by a run that was killed is its own too (taken over by trainJudge)
          ownEntry: (n) => n === "checkpoint" || isClaimEntry(n),
        });
        const pairs = readPairs(opts.data, { languages: opts.languages });
        const { train, dev } = splitPairs(pairs, { devFraction: opts.devFraction, seed: settings.seed });
        // the reliability report needs held-out pairs: refused now, not after the judge is trained and written
        if (dev.length === 0)
          throw new InputError(
            `--dev-fraction ${opts.devFraction} holds out no pair of ${opts.data} (${pairs.length} pairs; the share is ` +
              `rounded per language, and each language keeps one pair to train on): raise --dev-fraction or give more pairs`,
          );
        await trainJudge({
          baseModelDir: opts.model,
          pairs: judgeTrainingPairs({ pairs: () => train, settings }),
          outDir: opts.out,
          runDir,
          overwrite: opts.overwrite,
          ...judgeTrainOptions(settings),
          hooks: {
            signal: interruptSignal(log),
            onStep: (l, total) => log.progress("judge", l.step, total, `loss ${l.loss.toFixed(4)}`),
          },
        });
        const j = await LlmJudge.load(opts.out);
        const rel = await judgeReliability(j, dev);
        log.done();
        output(
          g,
          `judge → ${path.resolve(opts.out)}\nheld-out reliability (${rel.n} samples; positive = insecure): accuracy ${(100 * rel.accuracy).toFixed(1)}%, TPR ${(100 * rel.tpr).toFixed(1)}%, FPR ${(100 * rel.fpr).toFixed(1)}%`,
          rel,
        );
      });
    });

  judge
    .command("check")
    .description("reliability of an LLM judge on labelled pairs (accuracy, TPR, FPR; positive = insecure)")
    .requiredOption("--judge <dir>", "judge model folder")
    .requiredOption("-d, --data <file>", "held-out pairs JSONL")
    .addHelpText("after", "\nExample:\n  goodvibe judge check --judge ./judge -d dev.jsonl --json")
    .action(async (opts) => {
      const g = program.opts();
      await runCommand(g, async () => {
        const rel = await judgeReliability(await LlmJudge.load(opts.judge), readPairs(opts.data));
        output(
          g,
          `accuracy ${(100 * rel.accuracy).toFixed(1)}%, TPR ${(100 * rel.tpr).toFixed(1)}%, FPR ${(100 * rel.fpr).toFixed(1)}% (n=${rel.n})`,
          rel,
        );
      });
    });
}
