import { Option, type Command } from "commander";
import { DEFAULT_JUDGE_TRAIN } from "../../eval/judge/config.js";
import { DEFAULT_CACHE_DIR, collect, integer, list, number, shownDefault } from "../options.js";

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
    .option(
      "--lang <lang>",
      "language of the file: cpp, java, swift or go (default: from its extension, e.g. .cpp, .h, .java, .swift, .go)",
    )
    .option("--judge <dir>", "also ask this LLM judge model folder")
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe judge code server.go --judge ./judge\n  goodvibe judge code snippet.txt --lang cpp",
    )
    .action(async (file, opts) =>
      (await import("./judge-run.js")).judgeCodeCommand(program.opts(), file, opts),
    );

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
    .action(async (opts) => (await import("./judge-run.js")).judgeTrainCommand(program.opts(), opts));

  judge
    .command("check")
    .description(
      "reliability of an LLM judge on labelled pairs or code (accuracy, TPR, FPR; positive = insecure)",
    )
    .requiredOption("--judge <dir>", "judge model folder")
    .requiredOption(
      "-d, --data <file>",
      'held-out pairs JSONL, or labelled code JSONL {code, label, lang?, id?} (label 1 or "unsafe" = insecure, 0 or "safe" = secure: the paper\'s labels)',
    )
    .option(
      "--cache <dir>",
      "cache folder: the judge's scores batch by batch, so that a check stopped (Ctrl-C) or killed and run again scores only the rest (the file is removed once the check ends)",
      DEFAULT_CACHE_DIR,
    )
    .addHelpText("after", "\nExample:\n  goodvibe judge check --judge ./judge -d dev.jsonl --json")
    .action(async (opts) => (await import("./judge-run.js")).judgeCheckCommand(program.opts(), opts));
}
