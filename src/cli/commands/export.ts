import { Option, type Command } from "commander";

export function registerExport(program: Command): void {
  program
    .command("export")
    .description("export a model folder as GGUF (llama.cpp, Ollama) or as safetensors in another dtype")
    .option(
      "-m, --model <dir>",
      "Hugging Face model folder (required; with --adapter the base model, by default the one the delta names)",
    )
    .requiredOption(
      "-o, --out <path>",
      "output .gguf file, or folder for safetensors or a PEFT adapter (must not exist; never inside -m)",
    )
    .option("--overwrite", "move an existing output aside (renamed to <out>.old-<time>, never deleted)")
    .addOption(new Option("--format <fmt>", "output format").choices(["gguf", "safetensors"]).default("gguf"))
    .option(
      "--outtype <t>",
      "tensor type: f32, f16, bf16 or q8_0 for gguf; float32, bfloat16 or float16 for safetensors and a PEFT adapter " +
        "(default: f16 for gguf, bfloat16 for safetensors, float32 for a PEFT adapter; a LoRA GGUF takes f32, f16 or bf16, default f32)",
    )
    .addOption(
      new Option(
        "--adapter <kind>",
        "export the GoodVibe delta as a LoRA adapter instead of a model: peft (PEFT / vLLM folder) or gguf (llama.cpp LoRA)",
      ).choices(["peft", "gguf"]),
    )
    .option(
      "--delta <path>",
      "with --adapter: the GoodVibe delta (goodvibe-delta.safetensors) or the harden output folder holding it",
    )
    .option("--peft <dir>", "with --adapter gguf: a PEFT LoRA adapter folder to convert")
    .option(
      "--gguf-pre <name>",
      "gguf: llama.cpp's pre-tokenizer (tokenizer.ggml.pre, e.g. deepseek-coder) for a byte-level tokenizer whose " +
        "splits this tool does not recognise (refused without it; not checked)",
    )
    .option(
      "--base-model-name <name>",
      "with --adapter peft: base_model_name_or_path (default: config.json's _name_or_path, else the base folder's name)",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  goodvibe export -m ./hardened -o hardened-q8.gguf --outtype q8_0\n  ollama create hardened -f Modelfile   # with FROM ./hardened-q8.gguf\n  goodvibe export -m ./hardened -o ./hardened-bf16 --format safetensors --outtype bfloat16\n" +
        "  goodvibe export --adapter peft --delta ./hardened -o ./goodvibe-lora          # vLLM: --lora-modules goodvibe=./goodvibe-lora\n" +
        "  goodvibe export --adapter gguf --delta ./hardened -m ./base -o goodvibe-lora.gguf   # llama.cpp: --lora goodvibe-lora.gguf",
    )
    // whether --format was given (its default is gguf): with --adapter, a --format the adapter is not is refused
    .action(async (opts, cmd: Command) =>
      (await import("./export-run.js")).exportCommand(program.opts(), {
        ...opts,
        formatGiven: cmd.getOptionValueSource("format") === "cli",
      }),
    );
}
