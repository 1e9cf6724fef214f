/**
 * A small per-language lexer and the helpers rules share. Rules match regexes on views of the code in
 * which comments (and, where a rule must not fire inside text, string contents) are blanked with spaces;
 * every view has the same length and line breaks as the original, so an index maps to the same line.
 */
import type { SafetyLanguage } from "../../../data/languages.js";
import type { Finding, Rule } from "./types.js";

export interface StringLiteral {
  /** Index of the opening delimiter (after any prefix such as R, L, u8 or #). */
  start: number;
  /** Index just past the closing delimiter (or the line end / text end when unterminated). */
  end: number;
  /** The literal's raw content between the delimiters. */
  value: string;
  /** Swift "\(...)" interpolation inside. */
  interpolated: boolean;
}

export interface Lexed {
  /** Comments blanked; string literals kept. */
  text: string;
  /** Comments blanked and string/char contents blanked (delimiters kept). */
  masked: string;
  strings: StringLiteral[];
}

function blank(chars: string[], from: number, to: number): void {
  for (let k = from; k < to; k++) if (chars[k] !== "\n" && chars[k] !== "\r") chars[k] = " ";
}

const isWord = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_]/.test(c);

/** The identifier-like token that ends right before `i`. */
function wordBefore(code: string, i: number): string {
  let k = i - 1;
  while (k >= 0 && isWord(code[k])) k--;
  return code.slice(k + 1, i);
}

export function lex(code: string, lang: SafetyLanguage): Lexed {
  const text = code.split("");
  const masked = code.split("");
  const strings: StringLiteral[] = [];
  const n = code.length;
  let i = 0;

  const addString = (
    start: number,
    contentStart: number,
    contentEnd: number,
    end: number,
    interpolated = false,
  ) => {
    blank(masked, contentStart, contentEnd);
    strings.push({ start, end, value: code.slice(contentStart, contentEnd), interpolated });
    i = end;
  };

  // Scan a quoted string from the opening quote at `q` (escapes, Swift interpolation); stops at a
  // newline when unterminated, as compilers do, so one stray quote cannot mask the rest of the file.
  const quoted = (q: number, multiline: boolean, rawHashes: number): void => {
    const delim = multiline ? '"""' : '"';
    const close = delim + "#".repeat(rawHashes);
    const escape = "\\" + "#".repeat(rawHashes);
    let j = q + delim.length;
    let interpolated = false;
    // Swift interpolations `\( expr )` are code: they stay visible in the masked view.
    const interps: [number, number][] = [];
    while (j < n) {
      if (code.startsWith(close, j)) {
        addString(q, q + delim.length, j, j + close.length, interpolated);
        for (const [a, b] of interps) {
          let inString = false;
          for (let p = a; p < b; p++) {
            if (code[p] === '"') inString = !inString;
            if (!inString && code[p] !== '"') masked[p] = code[p]!;
          }
        }
        return;
      }
      if (!multiline && code[j] === "\n") break;
      if (code.startsWith(escape, j)) {
        const k = j + escape.length;
        if (lang === "swift" && code[k] === "(") {
          interpolated = true;
          let depth = 1;
          j = k + 1;
          const exprStart = j;
          while (j < n && depth > 0) {
            if (code[j] === "(") depth++;
            else if (code[j] === ")") depth--;
            else if (code[j] === '"') {
              j++;
              while (j < n && code[j] !== '"' && code[j] !== "\n") j += code[j] === "\\" ? 2 : 1;
            }
            j++;
          }
          interps.push([exprStart, j - 1]);
          continue;
        }
        j = rawHashes > 0 ? k : k + 1;
        continue;
      }
      j++;
    }
    addString(q, q + delim.length, Math.min(j, n), Math.min(j, n), interpolated);
    for (const [a, b] of interps) {
      let inString = false;
      for (let p = a; p < Math.min(b, n); p++) {
        if (code[p] === '"') inString = !inString;
        if (!inString && code[p] !== '"') masked[p] = code[p]!;
      }
    }
  };

  while (i < n) {
    const c = code[i]!;
    const next = code[i + 1];
    if (c === "/" && next === "/") {
      let j = code.indexOf("\n", i);
      if (j < 0) j = n;
      blank(text, i, j);
      blank(masked, i, j);
      i = j;
      continue;
    }
    if (c === "/" && next === "*") {
      // Swift block comments nest; the others end at the first "*/".
      let depth = 1;
      let j = i + 2;
      while (j < n && depth > 0) {
        if (code.startsWith("*/", j)) {
          depth--;
          j += 2;
        } else if (lang === "swift" && code.startsWith("/*", j)) {
          depth++;
          j += 2;
        } else j++;
      }
      blank(text, i, j);
      blank(masked, i, j);
      i = j;
      continue;
    }
    if (lang === "cpp" && c === '"' && /^(?:u8|u|U|L)?R$/.test(wordBefore(code, i))) {
      // Raw string R"delim( ... )delim"
      const paren = code.indexOf("(", i);
      const delim = paren > 0 ? code.slice(i + 1, paren) : "";
      if (paren > 0 && /^[^\s()\\]{0,16}$/.test(delim)) {
        const closeAt = code.indexOf(")" + delim + '"', paren);
        const end = closeAt < 0 ? n : closeAt + delim.length + 2;
        addString(i, paren + 1, closeAt < 0 ? n : closeAt, end);
        continue;
      }
    }
    if (c === '"') {
      const multiline = (lang === "java" || lang === "swift") && code.startsWith('"""', i);
      quoted(i, multiline, 0);
      continue;
    }
    if (lang === "swift" && c === "#" && /^#+"/.test(code.slice(i, i + 20))) {
      const hashes = /^#+/.exec(code.slice(i))![0].length;
      const q = i + hashes;
      const multiline = code.startsWith('"""', q);
      quoted(q, multiline, hashes);
      // Blank the leading hashes too, they belong to the literal.
      continue;
    }
    if (lang === "go" && c === "`") {
      const j = code.indexOf("`", i + 1);
      const end = j < 0 ? n : j + 1;
      addString(i, i + 1, j < 0 ? n : j, end);
      continue;
    }
    if (c === "'" && lang !== "swift") {
      // C++14 digit separators (1'000'000) are not char literals.
      if (lang === "cpp" && isWord(code[i - 1])) {
        let k = i - 1;
        while (k >= 0 && /[A-Za-z0-9_']/.test(code[k]!)) k--;
        if (/[0-9]/.test(code[k + 1]!)) {
          i++;
          continue;
        }
      }
      let j = i + 1;
      while (j < n && code[j] !== "'" && code[j] !== "\n" && j - i < 12) j += code[j] === "\\" ? 2 : 1;
      if (code[j] === "'") {
        blank(masked, i + 1, j);
        i = j + 1;
        continue;
      }
    }
    i++;
  }
  return { text: text.join(""), masked: masked.join(""), strings };
}

export interface Arg {
  start: number;
  end: number;
  /** Argument text with comments removed (strings kept), trimmed. */
  text: string;
  /** The same with string contents blanked, trimmed. */
  masked: string;
}

/** Parsed code plus the queries rules need. */
export class Source {
  readonly code: string;
  readonly lang: SafetyLanguage;
  readonly text: string;
  readonly masked: string;
  readonly strings: StringLiteral[];
  readonly lines: string[];
  private readonly lineStarts: number[];

  constructor(code: string, lang: SafetyLanguage) {
    this.code = code;
    this.lang = lang;
    const lexed = lex(code, lang);
    this.text = lexed.text;
    this.masked = lexed.masked;
    this.strings = lexed.strings;
    this.lines = code.split("\n");
    this.lineStarts = [0];
    for (let k = 0; k < code.length; k++) if (code[k] === "\n") this.lineStarts.push(k + 1);
  }

  /** 1-based line of a character index. */
  lineOf(index: number): number {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  snippet(line: number): string {
    const s = (this.lines[line - 1] ?? "").trim();
    return s.length > 200 ? s.slice(0, 197) + "..." : s;
  }

  /** All matches of a global regex over a view ("masked" by default). */
  matches(re: RegExp, view: "masked" | "text" = "masked"): RegExpExecArray[] {
    if (!re.global) throw new Error(`regex ${re} must be global`);
    re.lastIndex = 0;
    return [...(view === "masked" ? this.masked : this.text).matchAll(re)];
  }

  /** True when a regex matches the comment-free text (strings kept). */
  has(re: RegExp): boolean {
    return new RegExp(re.source, re.flags.replace("g", "")).test(this.text);
  }

  /** The string literal starting at `index` (after whitespace), if any. */
  literalAt(index: number): StringLiteral | undefined {
    while (index < this.masked.length && /\s/.test(this.masked[index]!)) index++;
    return this.strings.find((s) => s.start === index);
  }

  /** The literal that contains `index`, if any. */
  literalContaining(index: number): StringLiteral | undefined {
    return this.strings.find((s) => s.start <= index && index < s.end);
  }

  /** The call whose argument list contains `index`: its name (last identifier) and "(" index. */
  enclosingCall(index: number): { name: string; open: number } | null {
    const m = this.masked;
    let depth = 0;
    for (let k = index - 1; k >= 0 && index - k < 4000; k--) {
      const ch = m[k]!;
      if (ch === ")" || ch === "]") depth++;
      else if (ch === "(" || ch === "[") {
        if (depth === 0) {
          if (ch === "[") return null;
          const name = /([A-Za-z_]\w*)\s*$/.exec(m.slice(Math.max(0, k - 80), k));
          return name ? { name: name[1]!, open: k } : null;
        }
        depth--;
      } else if ((ch === ";" || ch === "{" || ch === "}") && depth === 0) return null;
    }
    return null;
  }

  /**
   * Arguments of the call whose "(" is at `openParen`, split at top-level commas. Brackets are
   * counted on the masked view so parentheses and commas inside strings do not count.
   */
  callArgs(openParen: number): Arg[] {
    const m = this.masked;
    const args: Arg[] = [];
    let depth = 0;
    let start = openParen + 1;
    const push = (end: number) => {
      const raw = this.text.slice(start, end);
      const lead = raw.length - raw.trimStart().length;
      const s = start + lead;
      const e = start + raw.trimEnd().length;
      if (e > s || args.length > 0 || m[end] === ",")
        args.push({ start: s, end: e, text: this.text.slice(s, e), masked: m.slice(s, e) });
    };
    for (let k = openParen + 1; k < m.length; k++) {
      const ch = m[k]!;
      if (ch === "(" || ch === "[" || ch === "{") depth++;
      else if (ch === ")" || ch === "]" || ch === "}") {
        if (depth === 0) {
          push(k);
          return args;
        }
        depth--;
      } else if (ch === "," && depth === 0) {
        push(k);
        start = k + 1;
      }
    }
    push(m.length); // truncated code: take what is there
    return args;
  }

  /**
   * The argument's shape: each string literal replaced by "S" ("I" when interpolated), the rest as
   * in the masked view. Lets rules ask "only literals?" or "literal concatenated with something?".
   */
  shape(arg: { start: number; end: number }): string {
    let out = "";
    let k = arg.start;
    while (k < arg.end) {
      const lit = this.strings.find((s) => s.start === k);
      if (lit) {
        out += lit.interpolated ? "I" : "S";
        k = Math.max(lit.end, k + 1);
      } else {
        out += this.masked[k];
        k++;
      }
    }
    return out;
  }

  /** Only string literals (concatenated or adjacent), no interpolation: text fixed at compile time. */
  isLiteral(arg: { start: number; end: number } | undefined): boolean {
    if (!arg) return false;
    return (
      /^\s*(?:(?:L|u8|u|U|R|LR|u8R|uR|UR|@|#+)?S[#\s]*\+?\s*)+$/.test(this.shape(arg)) &&
      !/\+\s*$/.test(this.shape(arg))
    );
  }

  /** The value of an argument that is exactly one plain string literal. */
  literalValue(arg: { start: number; end: number } | undefined): string | null {
    if (!arg) return null;
    const lit = this.literalAt(arg.start);
    if (!lit || lit.interpolated || !/^[\s#]*$/.test(this.code.slice(lit.end, arg.end))) return null;
    return lit.value;
  }

  finding(rule: Pick<Rule, "id" | "cwe" | "severity">, index: number, message: string): Finding {
    const line = this.lineOf(index);
    return {
      ruleId: rule.id,
      cwe: rule.cwe,
      line,
      message,
      snippet: this.snippet(line),
      severity: rule.severity,
    };
  }
}

/** Where the argument list of a call matched by a pattern ending at its "(" begins (the "(" itself). */
export const argListStart = (m: RegExpExecArray): number => m.index + m[0].length - 1;

/** Keep one finding per rule and line, in line order. */
export function dedupe(findings: Finding[]): Finding[] {
  const seen = new Set<string>();
  const out: Finding[] = [];
  for (const f of findings) {
    const key = `${f.ruleId}:${f.line}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(f);
  }
  return out.sort((a, b) => a.line - b.line || a.ruleId.localeCompare(b.ruleId));
}

// judgeCode runs every rule of a language on the same code; lex it once.
let lastSource: Source | null = null;
function sourceFor(code: string, lang: SafetyLanguage): Source {
  if (lastSource === null || lastSource.code !== code || lastSource.lang !== lang)
    lastSource = new Source(code, lang);
  return lastSource;
}

/** Build a rule from a detector that sees the parsed Source. */
export function defineRule(
  meta: Omit<Rule, "check">,
  detect: (src: Source, rule: Omit<Rule, "check">) => Finding[],
): Rule {
  return {
    ...meta,
    check(code: string): Finding[] {
      return dedupe(detect(sourceFor(code, meta.language), meta));
    },
  };
}
