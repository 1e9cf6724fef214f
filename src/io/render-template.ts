/**
 * Rendering a chat template as this tool does everywhere (io/tokenizer.ts, io/tokenizer-json.ts): @huggingface/jinja
 * with our strftime_now (io/chat-template.ts's fixed day). Apart from chat-template.ts, whose settings are read at
 * start-up, so that only a command that renders loads the template engine.
 */
import { Environment, Interpreter, type Template } from "@huggingface/jinja";

/**
 * Render `template` as Template.render does (@huggingface/jinja 0.5: its globals, then the context), but with our
 * strftime_now: render() declares the library's own (this machine's clock, locale and time zone) and refuses a
 * context that declares it again ("Variable already declared").
 */
export function renderTemplate(
  template: Template,
  context: Record<string, unknown>,
  strftimeNow: (format: unknown) => string,
): string {
  const env = new Environment();
  // setupGlobals of @huggingface/jinja 0.5.11, strftime_now aside (test/io/tokenizer-llama31 checks them)
  const globals: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    raise_exception: (message: unknown) => {
      throw new Error(String(message));
    },
    range: (start: number, stop?: number, step = 1): number[] => {
      if (stop === undefined) [start, stop] = [0, start];
      if (step === 0) throw new Error("range() step must not be zero");
      const out: number[] = [];
      for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
      return out;
    },
    strftime_now: strftimeNow,
    True: true,
    False: false,
    None: null,
  };
  for (const [k, v] of Object.entries({ ...globals, ...context })) env.set(k, v);
  return String(new Interpreter(env).run(template.parsed).value);
}
