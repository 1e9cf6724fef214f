/**
 * What a chat template is rendered with everywhere (io/tokenizer.ts for prompts and answers, the keys of finished
 * work in io/tokenizer-json.ts): a fixed day for templates that write the date, and Qwen3's thinking switch, the
 * setting every rendering is given, with what keys finished work by it (at the end). No template engine here:
 * settings, --help and planning import this module without loading @huggingface/jinja (test/cli/lazy-start);
 * io/render-template.ts renders.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.js";
import { filesVersion } from "../util/file-identity.js";
import { isPlainObject } from "../util/keys.js";

/**
 * The day chat templates are rendered on: what `strftime_now` gives them. Why a fixed day: Llama 3.2's template
 * writes "Today Date: " + strftime_now("%d %b %Y") into every prompt's system turn where the renderer defines it
 * (transformers and @huggingface/jinja do, with the machine's clock), so judge prompts, fine-tuning examples and
 * held-out losses would change from one day to the next and a run resumed tomorrow would mix two prompts. 26 Jul
 * 2024 is the day Llama 3.1's template writes when nothing is passed ("{%- set date_string = \"26 Jul 2024\" %}")
 * and 3.2's when strftime_now is not defined, so both families render the same system turn, as Meta's own
 * fallback does. A template that names no date (Qwen, Gemma, CodeLlama) renders the same whatever the setting.
 * "today" renders the machine's day (in UTC), as transformers would; keys of finished work then carry that day
 * (io/tokenizer-json.ts answerTokensKey), so tomorrow's run computes again.
 */
export const DEFAULT_TEMPLATE_DATE = "2024-07-26";

/**
 * The day setting of this process: GOODVIBE_TEMPLATE_DATE ("YYYY-MM-DD" or "today"), else DEFAULT_TEMPLATE_DATE.
 * Read by both the rendering (loadTokenizer) and the keys of finished work (answerTokensKey), so that another day
 * keys its work apart.
 */
export function templateDateSetting(env: NodeJS.ProcessEnv = process.env): string {
  const v = env.GOODVIBE_TEMPLATE_DATE;
  return v === undefined || v === "" ? DEFAULT_TEMPLATE_DATE : v;
}

/** "YYYY-MM-DD" or "today": the day of `templateDate` (UTC midnight), `now` being the clock "today" reads. */
export function templateDay(templateDate: string, now: () => Date = () => new Date()): Date {
  if (templateDate === "today") {
    const d = now();
    return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  }
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(templateDate);
  const day = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
  if (!day || day.toISOString().slice(0, 10) !== templateDate)
    throw new InputError(
      `template date (GOODVIBE_TEMPLATE_DATE) ${JSON.stringify(templateDate)}: must be a day as YYYY-MM-DD (default ${DEFAULT_TEMPLATE_DATE}) or "today"`,
    );
  return day;
}

/** The setting's day as "YYYY-MM-DD" ("today" read from the clock): what keys name. */
export function templateDayIso(templateDate: string = templateDateSetting(), now?: () => Date): string {
  return templateDay(templateDate, now).toISOString().slice(0, 10);
}

/**
 * How Llama 3.1's and 3.2's templates write the day (their `date_string` variable, and 3.2's
 * strftime_now("%d %b %Y")): what an OpenAI-compatible server is sent as chat_template_kwargs.date_string, so that
 * the server's template writes the day this tool's rendering writes instead of the server's own (vLLM renders
 * 3.2 with the server's clock through transformers' strftime_now; llama-server sets date_string to its clock's
 * day for every template, 3.1's too).
 */
export const TEMPLATE_DATE_STRING_FORMAT = "%d %b %Y";

/** The setting's day as the templates write it ("26 Jul 2024", C locale): chat_template_kwargs.date_string. */
export function templateDateString(templateDate: string = templateDateSetting(), now?: () => Date): string {
  return strftimeOn(templateDay(templateDate, now), TEMPLATE_DATE_STRING_FORMAT);
}

const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/**
 * Python's strftime on `day` in the C locale (English names, whatever this machine's locale: transformers renders
 * with Python's datetime.now(), which hands the format to glibc's strftime; @huggingface/jinja's own strftime_now
 * would follow this machine's locale and time zone and knows only %Y %m %d %b %B %H %M %%); the day's time is 00:00
 * and, as for datetime.now(), naive (%z and %Z empty). glibc's codes and its `-`, `_` and `0` padding flags (%-d,
 * %0e); a code glibc does not know is kept as written, and so are %s (seconds since the epoch in the machine's time
 * zone), glibc's case flags (%^a, %#b), field widths (%5d) and the E/O modifiers, which chat templates do not use.
 */
export function strftimeOn(day: Date, format: string): string {
  const y = day.getUTCFullYear();
  const mon = day.getUTCMonth();
  const d = day.getUTCDate();
  const wd = day.getUTCDay();
  const H = day.getUTCHours();
  const I = H % 12 === 0 ? 12 : H % 12;
  const yday = Math.round((Date.UTC(y, mon, d) - Date.UTC(y, 0, 1)) / 86_400_000); // 0-based
  // ISO 8601 week: the week with the year's first Thursday is week 1
  const thursday = new Date(Date.UTC(y, mon, d + 3 - ((wd + 6) % 7)));
  const isoYear = thursday.getUTCFullYear();
  const isoWeek = 1 + Math.floor((thursday.getTime() - Date.UTC(isoYear, 0, 1)) / (7 * 86_400_000));
  const num = (n: number, width: number, pad: string, flag: string): string =>
    flag === "-" ? String(n) : String(n).padStart(width, flag === "_" ? " " : flag === "0" ? "0" : pad);
  const codes = (c: string, flag: string): string | null => {
    switch (c) {
      case "a":
        return DAYS[wd]!.slice(0, 3);
      case "A":
        return DAYS[wd]!;
      case "w":
        return String(wd);
      case "u":
        return String(wd === 0 ? 7 : wd);
      case "d":
        return num(d, 2, "0", flag);
      case "e":
        return num(d, 2, " ", flag);
      case "b":
      case "h":
        return MONTHS[mon]!.slice(0, 3);
      case "B":
        return MONTHS[mon]!;
      case "m":
        return num(mon + 1, 2, "0", flag);
      case "y":
        return num(y % 100, 2, "0", flag);
      case "Y":
        return String(y);
      case "C":
        return num(Math.floor(y / 100), 2, "0", flag);
      case "G":
        return String(isoYear);
      case "g":
        return num(isoYear % 100, 2, "0", flag);
      case "V":
        return num(isoWeek, 2, "0", flag);
      case "H":
        return num(H, 2, "0", flag);
      case "k":
        return num(H, 2, " ", flag);
      case "I":
        return num(I, 2, "0", flag);
      case "l":
        return num(I, 2, " ", flag);
      case "p":
        return H < 12 ? "AM" : "PM";
      case "P":
        return H < 12 ? "am" : "pm";
      case "M":
        return num(day.getUTCMinutes(), 2, "0", flag);
      case "S":
        return num(day.getUTCSeconds(), 2, "0", flag);
      case "f":
        return "000000";
      case "z":
      case "Z":
        return "";
      case "j":
        return num(yday + 1, 3, "0", flag);
      case "U":
        return num(Math.floor((yday + 7 - wd) / 7), 2, "0", flag);
      case "W":
        return num(Math.floor((yday + 7 - ((wd + 6) % 7)) / 7), 2, "0", flag);
      case "D":
        return strftimeOn(day, "%m/%d/%y");
      case "F":
        return strftimeOn(day, "%Y-%m-%d");
      case "T":
        return strftimeOn(day, "%H:%M:%S");
      case "R":
        return strftimeOn(day, "%H:%M");
      case "r":
        return strftimeOn(day, "%I:%M:%S %p");
      case "c":
        return strftimeOn(day, "%a %b %e %H:%M:%S %Y");
      case "x":
        return strftimeOn(day, "%m/%d/%y");
      case "X":
        return strftimeOn(day, "%H:%M:%S");
      case "n":
        return "\n";
      case "t":
        return "\t";
      case "%":
        return "%";
      default:
        return null;
    }
  };
  return format.replace(/%([-_0]?)(.)/gs, (whole, flag: string, c: string) => codes(c, flag) ?? whole);
}

/**
 * What chat templates are given as strftime_now: Python's strftime on `day` (strftimeOn), whatever format they
 * ask; one closure for every rendering (io/tokenizer.ts's prompts and probe, io/tokenizer-json.ts's keys).
 */
export function strftimeNowOn(day: Date): (format: unknown) => string {
  return (format) => strftimeOn(day, String(format));
}

/**
 * A chat template's source as Jinja reads it: jinja2's lexer turns every \r\n and \r into \n (Lexer.tokeniter,
 * newline_sequence "\n"), and transformers reads chat_template.jinja in text mode; @huggingface/jinja keeps them, so a
 * template saved with Windows line endings would put \r into every prompt that transformers renders without.
 */
export function jinjaSource(template: string): string {
  return template.replace(/\r\n?/g, "\n");
}

/** transformers' folder of a model's named chat templates besides the default (`<name>.jinja`, saved since 4.5x). */
export const NAMED_TEMPLATES_DIR = "additional_chat_templates";

/** The named templates' files of a model folder, relative to it (`additional_chat_templates/<name>.jinja`), sorted. */
export function namedTemplateFiles(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(path.join(dir, NAMED_TEMPLATES_DIR));
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith(".jinja") && n.length > ".jinja".length)
    .sort()
    .map((n) => `${NAMED_TEMPLATES_DIR}/${n}`);
}

/**
 * A model folder's chat templates other than the default, by name, as transformers loads them: the named entries of
 * tokenizer_config.json's "chat_template" list, then additional_chat_templates/<name>.jinja (the file's stem names
 * it; a file replaces a list entry of its name), each as Jinja reads it (jinjaSource).
 */
export function namedChatTemplates(dir: string, config: Record<string, unknown>): Map<string, string> {
  const named = new Map<string, string>();
  const t = config.chat_template;
  if (Array.isArray(t))
    for (const e of t as unknown[])
      if (
        isPlainObject(e) &&
        typeof e.name === "string" &&
        typeof e.template === "string" &&
        e.name !== "default"
      )
        named.set(e.name, jinjaSource(e.template));
  for (const rel of namedTemplateFiles(dir)) {
    const file = path.join(dir, rel);
    try {
      named.set(path.basename(rel, ".jinja"), jinjaSource(fs.readFileSync(file, "utf8")));
    } catch (e) {
      throw new InputError(`${file}: cannot read chat template (${(e as Error).message})`, { cause: e });
    }
  }
  named.delete("default"); // chat_template.jinja is the default
  return named;
}

/**
 * The chat template of a model folder as text, found as io/tokenizer.ts finds it (chat_template.jinja wins over
 * tokenizer_config.json's "chat_template", a string or the entry named "default" of a list) as Jinja reads it
 * (jinjaSource), or null; for the keys of finished work, which must not stop on a file loading the tokenizer
 * reports (null then).
 */
export function chatTemplateText(jinjaFile: string, config: Record<string, unknown>): string | null {
  const text = rawChatTemplateText(jinjaFile, config);
  return text === null ? null : jinjaSource(text);
}

function rawChatTemplateText(jinjaFile: string, config: Record<string, unknown>): string | null {
  try {
    return fs.readFileSync(jinjaFile, "utf8");
  } catch {
    // none: tokenizer_config.json's
  }
  const t = config.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const def = (t as unknown[]).find(
      (e): e is { template: string } =>
        typeof e === "object" && e !== null && (e as Record<string, unknown>).name === "default",
    );
    return typeof def?.template === "string" ? def.template : null;
  }
  return null;
}

export /** The special-token attributes transformers passes to chat templates. */
const SPECIAL_TOKEN_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
];

/** A special token in tokenizer_config.json is a string or an AddedToken object `{content, ...}`. */
export function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (isPlainObject(v) && typeof v.content === "string") return v.content;
  return null;
}

/** What transformers passes a chat template besides the conversation: the special tokens' texts. */
export function templateSpecialTokens(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const content = tokenContent(config[key]);
    if (content !== null) out[key] = content;
  }
  if (Array.isArray(config.additional_special_tokens))
    out.additional_special_tokens = config.additional_special_tokens.map(tokenContent);
  return out;
}

/** Stands for an assistant's answer when the chat template is rendered to find what follows one. */
export const END_OF_TURN_PROBE = "goodvibe end of turn probe";
/** The conversation rendered to find what follows an answer: one user turn, one assistant turn. */
export const END_OF_TURN_PROBE_CONTEXT: Readonly<Record<string, unknown>> = {
  messages: [
    { role: "user", content: "x" },
    { role: "assistant", content: END_OF_TURN_PROBE },
  ],
  add_generation_prompt: false,
};

// ---------------------------------------------------------------- Qwen3's thinking switch

/**
 * Qwen3's thinking switch (`enable_thinking`, a variable its chat template reads): the one setting that says how
 * every prompt the tool makes is rendered (identification's judge prompts, fine-tuning examples, the LLM judge's
 * prompts, generation by every backend, and what an OpenAI-compatible server is asked for). The paper evaluates
 * Qwen3-8B and Qwen3-14B and does not say which mode it used: off is this project's reading (README "Qwen3's
 * thinking switch"), stated in every experiment's departures. Off, a template with the switch puts Qwen3's empty
 * think block into the prompt and the answer is the reply alone: an answer's token budget goes to the answer, as for
 * every model without the switch.
 */
export const DEFAULT_ENABLE_THINKING = false;

/**
 * A model folder's chat template as text (chatTemplateText's search: chat_template.jinja, else tokenizer_config.json),
 * or null where there is none or it cannot be read (loading the tokenizer says why).
 */
export function folderChatTemplate(dir: string): string | null {
  // planning asks once per cell and judge (thinkingKey): experiments/paper.yaml with thinking on read
  // tokenizer_config.json 663 times (Gemma 3's is 1.2 MB, 5.6 ms a read); each version of the two files once now
  const files = ["tokenizer_config.json", "chat_template.jinja"].map((f) => path.join(dir, f));
  const id = filesVersion(files);
  if (templateMemo.has(id)) return templateMemo.get(id)!;
  const template = readFolderChatTemplate(dir);
  templateMemo.set(id, template);
  return template;
}
const templateMemo = new Map<string, string | null>();

function readFolderChatTemplate(dir: string): string | null {
  let config: Record<string, unknown> = {};
  try {
    const v: unknown = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
    if (isPlainObject(v)) config = v;
  } catch {
    // none or unreadable: chat_template.jinja alone
  }
  return chatTemplateText(path.join(dir, "chat_template.jinja"), config);
}

/**
 * Whether a chat template has the thinking switch: its text names the variable `enable_thinking` (Qwen3's tests
 * `enable_thinking is defined and enable_thinking is false`). A template that does not name it renders the same
 * text whatever the setting, so the setting changes nothing for it.
 */
export function hasThinkingSwitch(template: string | null): boolean {
  return template !== null && /\benable_thinking\b/.test(template);
}

/**
 * Whether the thinking setting reaches the prompts a model's answers are made from: where a server renders them
 * (its template is not known here) it is taken to; else where the folder's chat template has the switch. The one
 * decision behind keying answers by the setting (recipes/evaluate.ts), eval's summary line on it
 * (cli/commands/eval-run.ts), thinkingKey and the experiment's departures.
 */
export function thinkingSwitchReaches(dir: string, opts: { server?: boolean } = {}): boolean {
  return opts.server === true || hasThinkingSwitch(folderChatTemplate(dir));
}

/**
 * What keys finished work (harden stages, trained judges, experiment cells, cached answers) by the thinking setting
 * the model folder `dir` renders prompts with: `{ enableThinking: value }` only where it is not the default and the
 * folder's chat template has the switch, else nothing, so work keyed before the setting existed (rendered with
 * thinking off) and work on models without the switch keep their keys.
 */
export function thinkingKey(dir: string, enableThinking: boolean): { enableThinking?: boolean } {
  if (enableThinking === DEFAULT_ENABLE_THINKING) return {};
  return thinkingSwitchReaches(dir) ? { enableThinking } : {};
}
