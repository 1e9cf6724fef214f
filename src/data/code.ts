/**
 * Finding the code in a model's or a dataset's answer: the one Markdown code extractor of the project.
 *
 * Reasoning (between <think> tags, or before a </think> the prompt opened) is dropped first (dropReasoning). Then, without a language (dataset rows, answers in other
 * languages):
 * 1. If the text has Markdown fenced blocks (``` or ~~~, optional info string such as `c++`), the code is the
 *    contents of those blocks joined by a blank line. An opening fence that is never closed (a generation cut
 *    off by the token limit) runs to the end of the text.
 * 2. Otherwise the whole text (trimmed) is the code if at least one of its lines looks like code (see
 *    `CODE_LINE_PATTERNS`: ends in `;`, `{` or `}`, starts with a declaration/import keyword, is an
 *    assignment, or ends in a call `name(...)`).
 * 3. Otherwise there is no code (null). Blocks that are empty or whitespace-only count as no code.
 * With the language the prompt asked for (the safety evaluation): the blocks tagged with that language, else the
 * untagged blocks (languageBlocks); blocks tagged with another language (```bash, ```text) and unfenced text are
 * not taken. Of several, the longest by default ("longest"), or all of them in order, joined by a blank line
 * ("all"). The paper (§4.3) says only that each generated code sample is judged, not how the code is taken from an
 * answer with several blocks: "longest" is this project's choice (a usage example or a test beside the code is not
 * judged with it), "all" judges every block of the language the answer holds.
 */
import { fenceLanguage, type Language } from "./languages.js";

/** A line looks like code when it matches one of these. Prose rarely does; a bare one-word answer never. */
export const CODE_LINE_PATTERNS: readonly RegExp[] = [
  /[;{}]\s*$/,
  /^\s*(#include|#define|import|from\s+\S+\s+import|def|class|struct|func|function|fun|fn|package|using|namespace|public|private|protected|static|let|var|const|val|program|subroutine|module|require|return|if|for|while|<\?php)\b/,
  /^\s*[A-Za-z_$@][\w$.@\[\]'"]*\s*(\+|-|\*|\/|\.|\|\||\?\?)?=(?!=)\s*\S/,
];

/**
 * The line ends in a call `name(...)`: it ends in ")" and some "(" directly follows a word that contains a letter
 * or "_". A linear scan: the regex /[A-Za-z_]\w*\(.*\)\s*$/ backtracks quadratically on long lines.
 */
export function endsInCall(line: string): boolean {
  if (!line.trimEnd().endsWith(")")) return false;
  let runHasLetter = false;
  let inRun = false;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    const isWord = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
    if (isWord) {
      if (!inRun) runHasLetter = false;
      inRun = true;
      if (c > 57) runHasLetter = true;
    } else {
      if (c === 40 && inRun && runHasLetter) return true;
      inRun = false;
    }
  }
  return false;
}

export function looksLikeCode(text: string): boolean {
  return text
    .split(/\r?\n/)
    .some((line) => endsInCall(line) || CODE_LINE_PATTERNS.some((re) => re.test(line)));
}

export interface CodeBlock {
  /** Language tag as written after the fence (first word, lower-case); "" when untagged. */
  tag: string;
  code: string;
  /** False when the answer ended before the closing fence (generation cut at max tokens). */
  closed: boolean;
}

/** An opening fence: any indentation (models indent fences inside list items), then the info string. */
const OPEN_FENCE = /^[ \t]*(`{3,}|~{3,})(.*)$/;

/** CommonMark: a closing fence has no info string and at least as many of the opening fence's characters. */
function isClosingFence(trimmed: string, opening: string): boolean {
  return /^(`{3,}|~{3,})$/.test(trimmed) && trimmed[0] === opening[0] && trimmed.length >= opening.length;
}

/**
 * Whether the end of a code line lies inside a string literal or a comment opened on that line: an odd number of
 * unescaped `"`, `` ` `` or `'` (not the `'` of `1'000` or `it's` inside a word), or a `//`, an unclosed `/*`, or a
 * `# ` comment outside quotes. A line-local look: a string opened on an earlier line is not seen.
 */
export function inStringOrComment(line: string): boolean {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote !== null) {
      if (c === "\\") i++;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "`") quote = c;
    else if (c === "'" && !/\w/.test(line[i - 1] ?? "")) quote = c;
    else if (c === "/" && line[i + 1] === "/") return true;
    else if (c === "/" && line[i + 1] === "*") {
      const end = line.indexOf("*/", i + 2);
      if (end < 0) return true;
      i = end + 1;
    } else if (c === "#" && /\s/.test(line[i + 1] ?? "") && /^\s?$/.test(line[i - 1] ?? "")) return true;
  }
  return quote !== null;
}

/**
 * All fenced blocks of a Markdown text, in order, blank ones included. An unterminated last fence runs to the
 * end. As in CommonMark, a backtick fence's info string has no backtick ("```x```" on one line is inline code).
 */
export function fencedBlocks(text: string): CodeBlock[] {
  const lines = text.split(/\r?\n/);
  const blocks: CodeBlock[] = [];
  let i = 0;
  while (i < lines.length) {
    const open = OPEN_FENCE.exec(lines[i]!);
    if (!open || (open[1]![0] === "`" && open[2]!.includes("`"))) {
      i++;
      continue;
    }
    const fence = open[1]!;
    const tag = (open[2]!.trim().split(/\s/)[0] ?? "").toLowerCase().replace(/^\{\.?|\}$/g, "");
    const body: string[] = [];
    let closed = false;
    i++;
    for (; i < lines.length; i++) {
      const line = lines[i]!;
      const trimmed = line.trim();
      if (isClosingFence(trimmed, fence)) {
        closed = true;
        i++;
        break;
      }
      // Models sometimes glue the closing fence to the last code line: "}```" (CommonMark would run on). Not when
      // the ``` is text of the code: in a string or comment opened on that line (`s = """````, `// ends in ````)
      if (
        fence.length === 3 &&
        trimmed.endsWith(fence) &&
        !trimmed.startsWith(fence) &&
        !inStringOrComment(trimmed.slice(0, -3))
      ) {
        body.push(line.slice(0, line.lastIndexOf(fence)));
        closed = true;
        i++;
        break;
      }
      body.push(line);
    }
    blocks.push({ tag, code: body.join("\n"), closed });
  }
  return blocks;
}

/**
 * An answer without its reasoning: every <think>…</think> block, a <think> never closed (reasoning cut by the
 * token limit) to the end, and text before a </think> that no <think> opened (templates that open the think block
 * in the prompt, as Qwen3's Thinking-2507 models' and DeepSeek-R1's do, so the answer starts inside it: the reading
 * of vLLM's and SGLang's deepseek_r1 reasoning parsers).
 */
export function dropReasoning(answer: string): string {
  const close = answer.indexOf("</think>");
  const open = answer.indexOf("<think>");
  const rest = close >= 0 && (open < 0 || open > close) ? answer.slice(close + "</think>".length) : answer;
  return rest.replace(/<think>[\s\S]*?(<\/think>|$)/g, "");
}

/**
 * Whether a rendered chat prompt opens a think block for the answer (it ends in "<think>": Qwen3's Thinking-2507
 * templates, DeepSeek-R1's), so that the answer starts inside the reasoning and has only its closing tag.
 */
export function promptOpensThink(renderedPrompt: string): boolean {
  return /<think>\s*$/.test(renderedPrompt);
}

/**
 * An answer to a prompt that opened a think block (promptOpensThink), with that opening tag put back in front, as
 * vLLM's deepseek_r1 reasoning parser reads such output: all of it is reasoning until a </think>. Without it, an
 * answer cut by the token limit before its </think> has no tag at all, and the code it drafted while reasoning
 * would be taken as its answer. An answer that opens its own (a server's reasoning put back between tags) is left
 * as it is.
 */
export function withOpenedThink(answer: string, opened: boolean): string {
  return opened && !/^\s*<think>/.test(answer) ? `<think>\n${answer}` : answer;
}

/** Which of an answer's blocks for the prompt's language are its code (see the file's comment). */
export type CodeBlockChoice = "longest" | "all";
export const CODE_BLOCK_CHOICES: readonly CodeBlockChoice[] = ["longest", "all"];
export const DEFAULT_CODE_BLOCKS: CodeBlockChoice = "longest";

export interface ExtractOptions {
  /** The prompt already opened a fence (e.g. ended in "```cpp\n"), so the answer starts inside code. */
  prefilled?: boolean;
  /** With a language: the longest of its blocks (default DEFAULT_CODE_BLOCKS) or all of them. */
  blocks?: CodeBlockChoice;
}

/**
 * The non-blank blocks of an answer that are code in `lang` (reasoning dropped): those tagged with it, else the
 * untagged ones; in order.
 */
export function languageBlocks(answer: string, lang: Language, opts: ExtractOptions = {}): CodeBlock[] {
  let text = dropReasoning(answer);
  if (opts.prefilled) text = "```" + lang + "\n" + text;
  const blocks = fencedBlocks(text).filter((b) => b.code.trim() !== "");
  const tagged = blocks.filter((b) => fenceLanguage(b.tag) === lang);
  return tagged.length > 0 ? tagged : blocks.filter((b) => b.tag === "");
}

/**
 * The code of an answer by the rules above, or null when it has none. With `lang`, the block for that language
 * (the prompt's); without, all of the answer's code.
 */
export function extractCode(
  answer: string,
  lang?: Language | null,
  opts: ExtractOptions = {},
): string | null {
  if (!lang) {
    const text = dropReasoning(answer);
    const blocks = fencedBlocks(text).filter((b) => b.code.trim() !== "");
    if (blocks.length > 0) return blocks.map((b) => b.code).join("\n\n");
    const trimmed = text.trim();
    return trimmed !== "" && looksLikeCode(trimmed) ? trimmed : null;
  }
  return codeOfBlocks(languageBlocks(answer, lang, opts), opts.blocks);
}

/** The code of an answer's blocks for its language (languageBlocks): the longest, or all of them joined; null: none. */
export function codeOfBlocks(
  blocks: readonly CodeBlock[],
  choice: CodeBlockChoice = DEFAULT_CODE_BLOCKS,
): string | null {
  if (blocks.length === 0) return null;
  if (choice === "all") return blocks.map((b) => b.code).join("\n\n");
  return blocks.reduce((best, b) => (b.code.length > best.code.length ? b : best)).code;
}
