/**
 * Whether a chat template can write the server's day into a prompt when a server renders it. We send every chat
 * request the day this tool renders on (chat_template_kwargs.date_string, eval/generate/http.ts), which Llama
 * 3.1/3.2's templates read; but a template that calls strftime_now where it does not first check date_string gets
 * the server's clock whatever it is sent (transformers' strftime_now on vLLM, minja's on llama-server), and we cannot
 * change a remote server's template. This reads the template's syntax tree (@huggingface/jinja's parser, the
 * engine's own, so its syntax is the one we render) and finds the calls a sent date_string does not keep from
 * running. Loads the template engine: only for a command that runs (not imported by settings or --help).
 */
import { Template } from "@huggingface/jinja";

export interface TemplateClockUse {
  /** a strftime_now(...) call that runs although date_string is given: the server's day in the prompt */
  unguardedStrftime: boolean;
  /** the template calls strftime_now at all (guarded or not) */
  callsStrftime: boolean;
  /** the template reads the variable date_string */
  readsDateString: boolean;
  /** the template could not be parsed: nothing is known (the reason) */
  unreadable?: string;
}

type Node = { type?: unknown } & Record<string, unknown>;

const isNode = (v: unknown): v is Node => typeof v === "object" && v !== null && !Array.isArray(v);

/** Whether an expression names the identifier `name` anywhere. */
function mentions(v: unknown, name: string): boolean {
  if (Array.isArray(v)) return v.some((x) => mentions(x, name));
  if (!isNode(v)) return false;
  if (v.type === "Identifier" && v.value === name) return true;
  return Object.values(v).some((x) => mentions(x, name));
}

/**
 * Which branches of a test run when date_string is given: "body" (only the body can run: `date_string is defined`),
 * "alternate" (`not date_string is defined`, `date_string is not defined`, `date_string is undefined`), "neither"
 * for another test that reads date_string (`if not date_string`: taken as a guard of both branches, as the template
 * decides by the variable we send), null for a test that does not read it.
 */
function runsWhenGiven(test: unknown): "body" | "alternate" | "neither" | null {
  if (!mentions(test, "date_string")) return null;
  let t = test as Node;
  let negate = false;
  while (t.type === "UnaryExpression" && (t.operator as { value?: unknown })?.value === "not") {
    negate = !negate;
    t = t.argument as Node;
  }
  if (
    t.type === "TestExpression" &&
    isNode(t.operand) &&
    t.operand.type === "Identifier" &&
    t.operand.value === "date_string" &&
    isNode(t.test) &&
    (t.test.value === "defined" || t.test.value === "undefined")
  ) {
    const defined = ((t.test.value === "defined") !== (t.negate === true)) !== negate;
    return defined ? "body" : "alternate";
  }
  return "neither";
}

/** What a chat template does with the day (TemplateClockUse). */
export function templateClockUse(template: string): TemplateClockUse {
  const use: TemplateClockUse = { unguardedStrftime: false, callsStrftime: false, readsDateString: false };
  let program: unknown;
  try {
    program = new Template(template).parsed;
  } catch (e) {
    return { ...use, unreadable: (e as Error).message };
  }
  // `guarded`: this code cannot run when date_string is given
  const walk = (v: unknown, guarded: boolean): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x, guarded);
      return;
    }
    if (!isNode(v)) return;
    if (v.type === "Identifier" && v.value === "date_string") use.readsDateString = true;
    if (v.type === "CallExpression" && isNode(v.callee) && v.callee.value === "strftime_now") {
      use.callsStrftime = true;
      if (!guarded) use.unguardedStrftime = true;
    }
    if (v.type === "If" || v.type === "Ternary") {
      const test = v.type === "If" ? v.test : v.condition;
      const [body, alternate] = v.type === "If" ? [v.body, v.alternate] : [v.trueExpr, v.falseExpr];
      const when = runsWhenGiven(test);
      walk(test, guarded);
      walk(body, guarded || when === "alternate" || when === "neither");
      walk(alternate, guarded || when === "body" || when === "neither");
      return;
    }
    for (const x of Object.values(v)) walk(x, guarded);
  };
  walk(program, false);
  return use;
}

/**
 * The caveat an evaluation on servers records about the prompts' day, or null when there is none: `template` is
 * the model folder's chat template (null: none there, so the servers' is not known), `dateStringSent` whether the
 * requests carry chat_template_kwargs.date_string (--extra-body can leave it out).
 */
export function serverDayCaveat(
  template: string | null,
  dateStringSent: boolean,
  whyUnknown = "the model folder has none",
): string | null {
  const after =
    "so the prompts answered may carry the server's day rather than the template day this tool renders and keys " +
    "(a run on another day, or servers on clocks set apart, can ask other prompts)";
  if (template === null)
    return (
      `the servers' chat template is not known here (${whyUnknown}), so whether it writes the server's ` +
      `day cannot be checked: a template that calls strftime_now without checking date_string would, ${after}`
    );
  const use = templateClockUse(template);
  if (use.unreadable)
    return `the model folder's chat template could not be read (${use.unreadable}), so whether it writes the server's day cannot be checked`;
  if (use.unguardedStrftime)
    return (
      "the model folder's chat template calls strftime_now where it does not check date_string first: a server " +
      `renders that with its own clock whatever date_string it is sent, ${after}`
    );
  if (!dateStringSent && (use.callsStrftime || use.readsDateString))
    return (
      "the model folder's chat template writes a day (date_string or strftime_now) and --extra-body leaves " +
      `chat_template_kwargs.date_string out of the requests: the server fills it in, ${after}`
    );
  return null;
}
