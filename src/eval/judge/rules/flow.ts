/**
 * A small intra-snippet structure and data-flow layer over the masked source (comments and string
 * contents blanked, so nothing inside text can look like code): functions and their parameters,
 * assignments, conditions with the blocks they guard, and a taint analysis that follows untrusted input
 * (stdin, arguments, environment, request parameters...) through assignments, concatenation and
 * formatting to a sink, stopping at sanitizers (numeric conversion, encoders, in-snippet validators) and
 * at guards that validate the value before the sink. It is flow-insensitive per variable name (snippets
 * are small and rarely reuse a name for something else), which keeps it predictable and explainable.
 */
import type { SafetyLanguage } from "../../../data/languages.js";
import type { Source, StringLiteral } from "./source.js";

const OPEN: Record<string, string> = { "(": ")", "[": "]", "{": "}" };
const CLOSE = new Set([")", "]", "}"]);
const CONTINUES_LINE = new Set("+-*/%&|^<>=,.(");
/** `\s` (what trimEnd removes), without a regular expression for the common ASCII characters. */
function isBlank(ch: string): boolean {
  const c = ch.charCodeAt(0);
  return c <= 32 ? c === 32 || (c >= 9 && c <= 13) : c >= 0x80 && /\s/.test(ch);
}

/** Index of the bracket closing the one at `open` (masked view); the text end when unbalanced. */
export function matchBracket(src: Source, open: number): number {
  const m = src.masked;
  const stack: string[] = [];
  for (let k = open; k < m.length; k++) {
    const ch = m[k]!;
    if (OPEN[ch]) stack.push(OPEN[ch]!);
    else if (CLOSE.has(ch)) {
      // Tolerate mismatched brackets in broken code: pop until the matching kind.
      while (stack.length > 0 && stack[stack.length - 1] !== ch) stack.pop();
      stack.pop();
      if (stack.length === 0) return k;
    }
  }
  return m.length;
}

/** End (exclusive) of the expression starting at `from`: the first top-level `;`, newline-statement end or closing bracket. */
export function expressionEnd(src: Source, from: number, opts: { newlineEnds?: boolean } = {}): number {
  const m = src.masked;
  let depth = 0;
  // the last character before k that is not blank: kept as the scan goes (slicing and trimming the expression
  // at every line break took time quadratic in the lines of a long expression or a run of blank lines)
  let lastSolid = "";
  for (let k = from; k < m.length; k++) {
    const ch = m[k]!;
    if (OPEN[ch]) depth++;
    else if (CLOSE.has(ch)) {
      if (depth === 0) return k;
      depth--;
    } else if (depth === 0 && (ch === ";" || (ch === "," && false))) return k;
    else if (depth === 0 && ch === "\n" && opts.newlineEnds) {
      // A line ending in an operator continues the expression (Go/Swift): one of + - * / % & | ^ < > = , . (
      // (so also && and ||).
      if (!CONTINUES_LINE.has(lastSolid) && !/^\s*[.+]/.test(m.slice(k + 1, k + 80))) return k;
    }
    if (!isBlank(ch)) lastSolid = ch;
  }
  return m.length;
}

export interface Param {
  name: string;
  type: string;
  index: number;
}

export interface FunctionDef {
  name: string;
  params: Param[];
  /** Index of the body's "{" and of its "}". */
  bodyStart: number;
  bodyEnd: number;
  start: number;
}

export interface Assignment {
  name: string;
  /** Index of the assigned name. */
  index: number;
  rhsStart: number;
  rhsEnd: number;
  /** A declaration (`int x = ...`, `x := ...`, `let x = ...`) rather than a re-assignment. */
  decl: boolean;
  /** Declared type when written (`String`, `char*`, `[]byte`, `Int?`). */
  type: string;
  /** "=", "+=", ":=" ... or "in" for `for x in xs` / `for (T x : xs)`. */
  op: string;
}

export interface Condition {
  kind: "if" | "guard" | "while" | "for" | "switch" | "catch";
  /** The condition's text range. */
  start: number;
  end: number;
  /** The guarded block (`{`..`}` or a single statement), and the else block when present. */
  bodyStart: number;
  bodyEnd: number;
  elseEnd: number;
  /** The block leaves the function or loop (return, throw, break, continue, exit, panic, fatalError). */
  exits: boolean;
}

const KEYWORDS = new Set([
  "if",
  "for",
  "while",
  "switch",
  "catch",
  "return",
  "new",
  "else",
  "do",
  "try",
  "sizeof",
  "synchronized",
  "throw",
  "case",
  "defer",
  "go",
  "func",
  "guard",
  "in",
  "let",
  "var",
  "delete",
  "using",
  "typeof",
  "static_cast",
  "reinterpret_cast",
  "const_cast",
  "dynamic_cast",
  "decltype",
  "assert",
]);

const EXIT =
  /\b(?:return|throw|break|continue|exit|_exit|abort|panic|fatalError|preconditionFailure|os\s*\.\s*Exit|log\s*\.\s*Fatal\w*|System\s*\.\s*exit)\b/;
/**
 * Go calls that do not return to the caller besides EXIT's: a *testing.T/B/F's Fatal/Fatalf/FailNow/Skip/SkipNow/
 * Skipf (runtime.Goexit underneath), a log.Logger's Fatal*, runtime.Goexit itself.
 */
export const GO_EXIT =
  /\.\s*(?:Fatal|Fatalf|Fatalln|FailNow|Skip|Skipf|SkipNow)\s*\(|\bruntime\s*\.\s*Goexit\s*\(/;

/** Split a parameter list on top-level commas (angle brackets included). */
function splitTop(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if ("(<[{".includes(ch)) depth++;
    else if (")>]}".includes(ch)) depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) parts.push(cur);
  return parts;
}

function parseParams(lang: SafetyLanguage, text: string, offset: number): Param[] {
  const out: Param[] = [];
  let pos = offset;
  const parts = splitTop(text);
  let pendingGo: Param[] = [];
  for (const raw of parts) {
    const at = pos + (raw.length - raw.trimStart().length);
    pos += raw.length + 1;
    const p = raw.trim().replace(/\s*=.*$/s, "");
    if (!p || p === "void" || p === "...") continue;
    if (lang === "swift") {
      // [label] name: Type
      const m = /^(?:@\w+\s+)*(?:(\w+)\s+)?(\w+)\s*:\s*(.+)$/s.exec(p);
      if (m) out.push({ name: m[2]!, type: m[3]!.trim(), index: at });
    } else if (lang === "go") {
      // a, b string  |  a string  |  string (unnamed)
      const m = /^(\w+)\s+(.+)$/s.exec(p);
      if (m) {
        const param = { name: m[1]!, type: m[2]!.trim(), index: at };
        for (const q of pendingGo) q.type = param.type;
        out.push(...pendingGo, param);
        pendingGo = [];
      } else if (/^\w+$/.test(p)) pendingGo.push({ name: p, type: "", index: at });
    } else {
      // Java / C++: type name, type* name, type name[], Type<...> name, final Type name
      const m = /^(.*?)([A-Za-z_]\w*)\s*(\[[^\]]*\]\s*)*$/s.exec(p);
      if (m && m[1]!.trim()) out.push({ name: m[2]!, type: (m[1]! + (m[3] ?? "")).trim(), index: at });
    }
  }
  return out;
}

/*
 * Java's and C++'s headers start after a statement boundary (`;`, `{`, `}`, a line break or the text's start) and
 * the blanks after it. Only the boundary that is last before the header's first character is tried (the
 * `(?![^\S\n]*\n)` after it): trying each line break of a run of blank lines made every one scan the rest of the
 * run, time quadratic in its length (32,000 blank lines: 1.5 s of C++'s 3.1 s). Every boundary of one run leads
 * to the same header, so this finds the same headers; findFunctions computes the start the first boundary gave.
 */
const FUNCTION_RE: Record<SafetyLanguage, RegExp> = {
  // [modifiers] [<T>] Type name(params) [throws X] {
  java: /(?:^|[;{}\n])(?![^\S\n]*\n)\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|protected|static|final|synchronized|abstract|native|default)\s+)*(?:<[^>]*>\s*)?(?:[\w.<>[\],?]+(?:\s*\[\s*\])*\s+)?([A-Za-z_]\w*)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*(?:throws\s+[\w.,\s]+)?\{/g,
  // Type name(params) [const] [noexcept] [override] { , Class::name(params) {  (not `namespace std MACRO(x) {`)
  cpp: /(?:^|[;{}\n])(?![^\S\n]*\n)\s*(?!namespace\b)(?:template\s*<[^>]*>\s*)?(?:(?:static|inline|virtual|explicit|constexpr|extern)\s+)*(?:[\w:<>,]+[\s*&]+)*?((?:\w+::)*~?[A-Za-z_]\w*)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*(?:const\s*)?(?:noexcept\s*)?(?:override\s*)?(?::[^{;]*)?\{/g,
  // func name(params) results {  |  func (r T) name(params) results {  |  func(params) results {
  go: /\bfunc\s*(?:\([^)]*\)\s*)?(\w*)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)[^{\n]*\{/g,
  // func name<T>(params) [throws] [-> T] {  |  init?(params) {
  swift: /\b(?:func\s+(\w+)|(init)\??)\s*(?:<[^>]*>)?\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)[^{\n]*\{/g,
};

export interface Flow {
  functions: FunctionDef[];
  assignments: Assignment[];
  conditions: Condition[];
  /** The innermost function containing an index, if any. */
  functionAt(index: number): FunctionDef | undefined;
  /** Assignments to a name, in source order. */
  assignmentsTo(name: string): Assignment[];
}

function findFunctions(src: Source): FunctionDef[] {
  const out: FunctionDef[] = [];
  const re = new RegExp(FUNCTION_RE[src.lang].source, "g");
  const masked = src.masked;
  let lastEnd = 0;
  for (const m of masked.matchAll(re)) {
    const matchEnd = m.index + m[0].length;
    // Java and C++ (see FUNCTION_RE): where the match would have begun with every boundary tried, the first
    // boundary at or after the previous match's end among the blanks before the header (and the boundary
    // character just before them); its start is that character when it is `;`, `{` or `}`, else the header's
    // first character
    let start = m.index + (m[0].length - m[0].trimStart().length);
    if (src.lang === "java" || src.lang === "cpp") {
      let first = m.index + (";{}".includes(masked[m.index]!) ? 1 : 0);
      while (/\s/.test(masked[first]!)) first++;
      let k = first - 1;
      while (k >= 0 && /\s/.test(masked[k]!)) k--;
      const punct = k >= 0 && ";{}".includes(masked[k]!) && k >= lastEnd;
      start = punct ? k : first;
    }
    lastEnd = matchEnd;
    const name = src.lang === "swift" ? (m[1] ?? m[2] ?? "") : m[1]!;
    const params = src.lang === "swift" ? m[3]! : m[2]!;
    const base = name.split("::").pop()!;
    if (KEYWORDS.has(base)) continue;
    const bodyStart = m.index + m[0].length - 1;
    const paramsAt = m.index + m[0].indexOf("(", m[0].indexOf(name) + name.length) + 1;
    out.push({
      name: base,
      params: parseParams(src.lang, params, paramsAt),
      bodyStart,
      bodyEnd: matchBracket(src, bodyStart),
      start,
    });
  }
  if (src.lang === "swift" || src.lang === "cpp")
    for (const m of src.masked.matchAll(
      src.lang === "swift" ? /\bdeinit\s*\{/g : /~\s*([A-Za-z_]\w*)\s*\(\s*\)\s*\{/g,
    )) {
      const bodyStart = m.index + m[0].length - 1;
      if (out.some((f) => f.bodyStart === bodyStart)) continue;
      out.push({
        name: src.lang === "swift" ? "deinit" : "~" + m[1],
        params: [],
        bodyStart,
        bodyEnd: matchBracket(src, bodyStart),
        start: m.index,
      });
    }
  // Swift/Go closures with named parameters: `{ (a: T, b) in` / `{ a, b in` and Go func literals are
  // found above; Swift closure parameters are bound by their first use only.
  return out;
}

function findAssignments(src: Source): Assignment[] {
  const m = src.masked;
  const out: Assignment[] = [];
  const lang = src.lang;
  const newlineEnds = lang === "go" || lang === "swift";
  const push = (name: string, index: number, rhsStart: number, decl: boolean, type: string, op: string) => {
    let rhsEnd = expressionEnd(src, rhsStart, { newlineEnds });
    if (lang === "swift" || lang === "go") {
      // `if let x = f() {` / `if x := f(); ...` / `guard let x = f() else`: the RHS stops before the block.
      const brace = /\s(?:else\s*)?\{|,\s*(?:let|var)\b|;/.exec(m.slice(rhsStart, rhsEnd));
      if (brace && /\b(?:if|guard|while|for)\b[^\n]*$/.test(m.slice(Math.max(0, index - 200), index)))
        rhsEnd = rhsStart + brace.index;
    }
    out.push({ name, index, rhsStart, rhsEnd, decl, type: type.trim(), op });
  };
  // A declaration with a type and no value (`var buf [10]byte`, `var name: String`): an empty right-hand side.
  const typedDecl = (mm: RegExpMatchArray) =>
    out.push({
      name: mm[1]!,
      index: mm.index! + mm[0].indexOf(mm[1]!),
      rhsStart: mm.index! + mm[0].length,
      rhsEnd: mm.index! + mm[0].length,
      decl: true,
      type: mm[2]!.trim(),
      op: "",
    });

  if (lang === "go") {
    // a, b := f()   |   a = b   |   a += b   |   var a T = f()
    for (const mm of m.matchAll(/(?<![\w.])((?:[A-Za-z_]\w*\s*,\s*)*[A-Za-z_]\w*)\s*(:=|[+\-*/]?=)(?!=)/g)) {
      const names = mm[1]!.split(",").map((s) => s.trim());
      const varDecl = /\bvar\s+$/.test(m.slice(Math.max(0, mm.index - 10), mm.index));
      const rhsStart = mm.index + mm[0].length;
      names.forEach((n, k) => {
        if (n !== "_")
          push(
            n,
            mm.index + mm[0].indexOf(n),
            rhsStart,
            mm[2] === ":=" || varDecl,
            "",
            k === 0 ? mm[2]! : "=",
          );
      });
    }
    for (const mm of m.matchAll(/\bvar\s+([A-Za-z_]\w*)\s+([^=\n]+?)\s*=(?!=)/g))
      push(mm[1]!, mm.index + mm[0].indexOf(mm[1]!), mm.index + mm[0].length, true, mm[2]!, "=");
    // Declarations without a value carry a type: `var buf [10]byte`
    for (const mm of m.matchAll(/\bvar\s+([A-Za-z_]\w*)\s+([^=\n]+?)\s*$/gm)) typedDecl(mm);
    // for i, v := range xs
    for (const mm of m.matchAll(/\bfor\s+((?:[A-Za-z_]\w*\s*,\s*)?[A-Za-z_]\w*)\s*:?=\s*range\s+/g)) {
      const names = mm[1]!.split(",").map((s) => s.trim());
      const target = names[names.length - 1]!;
      if (target !== "_")
        push(target, mm.index + mm[0].lastIndexOf(target), mm.index + mm[0].length, true, "", "in");
    }
  } else if (lang === "swift") {
    // let x = ..., var x: T = ..., x = ..., x += ...
    for (const mm of m.matchAll(
      /(?:\b(let|var)\s+)?(?<![\w.])([A-Za-z_]\w*)\s*(?::\s*([^=\n{]+?))?\s*([+\-*/]?=)(?!=)/g,
    )) {
      if (mm[4] !== "=" && mm[1]) continue;
      push(
        mm[2]!,
        mm.index + mm[0].indexOf(mm[2]!, mm[1] ? mm[1].length : 0),
        mm.index + mm[0].length,
        !!mm[1],
        mm[3] ?? "",
        mm[4]!,
      );
    }
    // Also one-line type bodies: `class Node { var next: Node?; var value = 0 }`.
    for (const mm of m.matchAll(/\b(?:let|var)\s+([A-Za-z_]\w*)\s*:\s*([^=\n{};]+?)\s*(?:$|(?=[;}]))/gm))
      typedDecl(mm);
    for (const mm of m.matchAll(/\bfor\s+(?:\(\s*\w+\s*,\s*)?([A-Za-z_]\w*)\)?\s+in\s+/g))
      push(mm[1]!, mm.index + mm[0].indexOf(mm[1]!), mm.index + mm[0].length, true, "", "in");
  } else {
    // Java / C++: [Type] name [= | += ...] rhs;   (not ==, <=, >=, !=)
    for (const mm of m.matchAll(
      /(?:\b((?:const\s+|final\s+|unsigned\s+|signed\s+|static\s+|volatile\s+)*[A-Za-z_][\w:.]*(?:\s*<[^;=()]*?>)?(?:\s*[*&]+\s*|\s+)(?:\[\s*\]\s*)?))?(?<![\w.>])([A-Za-z_]\w*)\s*(\[[^\]]*\]\s*)?([+\-*/|&^]?=|<<=|>>=)(?!=)/g,
    )) {
      const before = m[mm.index - 1];
      if (before === "=" || before === "!" || before === "<" || before === ">") continue;
      const type = (mm[1] ?? "").trim();
      if (/^(?:return|else|case|new|delete|throw)$/.test(type)) continue;
      push(
        mm[2]!,
        mm.index + mm[0].indexOf(mm[2]!, type.length),
        mm.index + mm[0].length,
        !!type,
        type + (mm[3] ? "[]" : ""),
        mm[4]!,
      );
    }
    // Declarations without initialiser: `char buf[10];`, `String s;`. Only the last boundary before the type is
    // tried (as in FUNCTION_RE: each line start of a run of blank lines scanned the rest of the run); the
    // positions used are the groups', which do not depend on it.
    for (const mm of m.matchAll(
      /(?:^|[;{(,])(?![^\S\n]*\n)\s*((?:const\s+|final\s+|unsigned\s+|static\s+)*[A-Za-z_][\w:.]*(?:\s*<[^;=()]*?>)?(?:\s*[*&]+\s*|\s+))([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)(?=[;,)])/gm,
    )) {
      const type = mm[1]!.trim();
      if (/^(?:return|else|case|new|delete|throw|goto|break|continue)$/.test(type)) continue;
      out.push({
        name: mm[2]!,
        index: mm.index + mm[0].indexOf(mm[2]!, mm[0].indexOf(mm[1]!) + mm[1]!.length),
        rhsStart: mm.index + mm[0].length,
        rhsEnd: mm.index + mm[0].length,
        decl: true,
        type: type + (mm[3] ?? ""),
        op: "",
      });
    }
    // for (T x : xs)
    for (const mm of m.matchAll(
      /\bfor\s*\(\s*(?:final\s+)?([\w:.<>,\s*&]+?)\s*[&*]?\s*([A-Za-z_]\w*)\s*:(?!:)\s*/g,
    ))
      push(mm[2]!, mm.index + mm[0].lastIndexOf(mm[2]!), mm.index + mm[0].length, true, mm[1]!, "in");
  }
  return out.sort((a, b) => a.index - b.index);
}

function blockAfter(src: Source, from: number): { start: number; end: number } {
  const m = src.masked;
  let k = from;
  while (k < m.length && /\s/.test(m[k]!)) k++;
  if (m[k] === "{") return { start: k, end: matchBracket(src, k) };
  // A single statement.
  const end = expressionEnd(src, k, { newlineEnds: src.lang === "go" || src.lang === "swift" });
  return { start: k, end };
}

function findConditions(src: Source): Condition[] {
  const m = src.masked;
  const out: Condition[] = [];
  const parenLangs = src.lang === "java" || src.lang === "cpp";
  const re = parenLangs ? /\b(if|while|for|switch|catch)\s*\(/g : /\b(if|guard|while|for|switch)\b/g;
  for (const mm of m.matchAll(re)) {
    const kind = mm[1] as Condition["kind"];
    let start: number;
    let end: number;
    let after: number;
    if (parenLangs) {
      start = mm.index + mm[0].length;
      end = matchBracket(src, start - 1);
      after = end + 1;
    } else {
      start = mm.index + mm[0].length;
      // Up to the block's "{" at depth 0 (Swift guard: up to "else").
      let depth = 0;
      let k = start;
      for (; k < m.length; k++) {
        const ch = m[k]!;
        if (ch === "(" || ch === "[") depth++;
        else if (ch === ")" || ch === "]") depth--;
        else if (depth === 0 && ch === "{") {
          // Swift/Go composite literals in conditions are rare; a "{" preceded by an identifier or ")"
          // after "else" or at the end of the condition opens the block.
          break;
        }
      }
      end = k;
      after = k;
      if (kind === "guard") {
        const e = m.slice(start, k).lastIndexOf("else");
        if (e >= 0) end = start + e;
      }
    }
    const body = blockAfter(src, after);
    let elseEnd = body.end;
    const elseMatch = /^\s*else\b\s*/.exec(m.slice(body.end + 1, body.end + 40));
    if (kind === "if" && elseMatch) elseEnd = blockAfter(src, body.end + 1 + elseMatch[0].length).end;
    out.push({
      kind,
      start,
      end,
      bodyStart: body.start,
      bodyEnd: body.end,
      elseEnd,
      exits:
        EXIT.test(m.slice(body.start, body.end + 1)) ||
        (src.lang === "go" && GO_EXIT.test(m.slice(body.start, body.end + 1))),
    });
  }
  return out;
}

const flowCache = new WeakMap<Source, Flow>();

export function flowOf(src: Source): Flow {
  let f = flowCache.get(src);
  if (f) return f;
  const functions = findFunctions(src);
  const assignments = findAssignments(src);
  const conditions = findConditions(src);
  const byName = new Map<string, Assignment[]>();
  for (const a of assignments) {
    const list = byName.get(a.name) ?? [];
    list.push(a);
    byName.set(a.name, list);
  }
  f = {
    functions,
    assignments,
    conditions,
    functionAt(index: number) {
      let best: FunctionDef | undefined;
      for (const fn of functions)
        if (fn.bodyStart <= index && index <= fn.bodyEnd && (!best || fn.bodyStart > best.bodyStart))
          best = fn;
      return best;
    },
    assignmentsTo(name: string) {
      return byName.get(name) ?? [];
    },
  };
  flowCache.set(src, f);
  return f;
}

/** Identifiers read in a range of the masked view (not member names after "." and not call names). */
export function identifiersIn(src: Source, start: number, end: number): string[] {
  const text = src.masked.slice(start, end);
  const out: string[] = [];
  for (const mm of text.matchAll(/(?<![\w.$])(?<!->)(?<!::)([A-Za-z_]\w*)\b(?!\s*::)/g)) out.push(mm[1]!);
  return out;
}

/** A regex that matches `name` as a whole identifier (not a member after "." or "->"). */
export function identRe(name: string, flags = ""): RegExp {
  return new RegExp(`(?<![\\w.$])(?<!->)${name.replace(/\$/g, "\\$")}\\b`, flags);
}

// ------------------------------------------------------------------------------------------------
// Taint

export type TaintKind = "text" | "number";

export interface TaintConfig {
  /** Expressions that yield untrusted text (a match inside a right-hand side taints the variable). */
  sources: RegExp;
  /** Expressions that yield untrusted numbers (array indexes, sizes). */
  numberSources?: RegExp;
  /** Calls that read untrusted input into their argument: `cin >> x`, `fmt.Scan(&x)`, `fgets(x, ...)`. */
  outSources?: RegExp;
  /** Calls whose result is a number even from text (parseInt, atoi, Int(x), strconv.Atoi). */
  toNumber?: RegExp;
  /** Calls that make text safe for every sink here (encoders, escapers, basename). */
  sanitizers?: RegExp;
  /** Treat parameters of these functions as untrusted (entry points: main's args, handlers' requests). */
  paramSources?: (fn: FunctionDef, p: Param, src: Source) => TaintKind | null;
  /**
   * Calls through which taint flows from an argument to the result (string building, conversion,
   * path joining). Other calls stop it: an unknown function's result is not the caller's input.
   * Matched against the callee as written (`strings.TrimSpace`, `String.format`, `substr`).
   */
  propagators?: RegExp;
  /** Sources that depend on the snippet, e.g. reads on the variables that hold a Scanner over stdin. */
  dynamicSources?: (src: Source) => { text?: RegExp; number?: RegExp };
  /** Propagation through out-parameters: `strcpy(dst, src)` taints dst when src is tainted. */
  copyCalls?: RegExp;
}

export interface Taint {
  /**
   * Taint of a variable name (null when clean): where it is visible at `at` when given (a name is tainted in
   * the scope of its declaration: `n` tainted as a parameter of one function is not the `n` of another), else
   * anywhere in the snippet.
   */
  of(name: string, at?: number): TaintKind | null;
  /** Is the text range tainted: a source inside it, or a tainted variable read in it? */
  range(start: number, end: number, kinds?: TaintKind[]): boolean;
  /** The tainted variables read in a range. */
  varsIn(start: number, end: number): string[];
  /** Is one of `names` (or a variable derived from it) validated by a condition that guards `at`? */
  guarded(names: string[], at: number, check: RegExp): boolean;
}

const taintCache = new WeakMap<Source, Map<TaintConfig, Taint>>();

/** Names that a variable is derived from, transitively (for guards on an earlier or later copy). */
function related(flow: Flow, src: Source, names: string[]): Set<string> {
  const out = new Set(names);
  for (let changed = true, guard = 0; changed && guard < 10; guard++) {
    changed = false;
    for (const a of flow.assignments) {
      const reads = identifiersIn(src, a.rhsStart, a.rhsEnd);
      if (out.has(a.name) && reads.some((r) => !out.has(r) && r.length > 1)) {
        for (const r of reads) if (!out.has(r) && !KEYWORDS.has(r)) out.add(r);
        changed = true;
      } else if (!out.has(a.name) && reads.some((r) => out.has(r))) {
        out.add(a.name);
        changed = true;
      }
    }
  }
  return out;
}

export function taintOf(src: Source, cfg: TaintConfig): Taint {
  let perSrc = taintCache.get(src);
  if (!perSrc) taintCache.set(src, (perSrc = new Map()));
  const cached = perSrc.get(cfg);
  if (cached) return cached;

  const flow = flowOf(src);
  const m = src.masked;
  /**
   * Per name, the scopes where it holds untrusted data: the body of the function that declares it (a
   * parameter, a local declaration) or the whole snippet (a field, a package-level or top-level variable).
   * Library code reuses short names (`n`, `i`, `path`) across hundreds of functions; a caller's parameter
   * taints only its own function's `n`.
   */
  interface Scoped {
    start: number;
    end: number;
    kind: TaintKind;
  }
  const tainted = new Map<string, Scoped[]>();
  const whole = { start: 0, end: m.length };
  const functionsAround = (at: number) =>
    flow.functions
      .filter((f) => f.bodyStart <= at && at <= f.bodyEnd)
      .sort((a, b) => a.bodyEnd - a.bodyStart - (b.bodyEnd - b.bodyStart));
  /** The scope of the declaration of `name` seen from `at`: the innermost function declaring it, else all. */
  const scopes = new Map<string, { start: number; end: number }>();
  const scopeOf = (name: string, at: number): { start: number; end: number } => {
    const key = `${name}@${at}`;
    let scope = scopes.get(key);
    if (!scope) scopes.set(key, (scope = declarationScope(name, at)));
    return scope;
  };
  const declarationScope = (name: string, at: number): { start: number; end: number } => {
    for (const f of functionsAround(at))
      if (
        f.params.some((p) => p.name === name) ||
        flow.assignmentsTo(name).some((a) => a.decl && f.bodyStart < a.index && a.index < f.bodyEnd)
      )
        return { start: f.bodyStart, end: f.bodyEnd };
    return whole;
  };
  const set = (name: string, kind: TaintKind, scope: { start: number; end: number }) => {
    const list = tainted.get(name) ?? [];
    const prev = list.find((e) => e.start === scope.start && e.end === scope.end);
    if (prev && (prev.kind === "text" || prev.kind === kind)) return false;
    if (prev) prev.kind = kind;
    else list.push({ ...scope, kind });
    tainted.set(name, list);
    return true;
  };
  /** The strongest taint of `name` visible at `at` (anywhere when `at` is undefined). */
  const kindOf = (name: string, at?: number): TaintKind | null => {
    let kind: TaintKind | null = null;
    for (const e of tainted.get(name) ?? []) {
      if (at !== undefined && (at < e.start || at > e.end)) continue;
      if (e.kind === "text") return "text";
      kind = e.kind;
    }
    return kind;
  };
  const re = (r: RegExp | undefined) => (r ? new RegExp(r.source, r.flags.replace("g", "")) : null);
  const dyn = cfg.dynamicSources?.(src) ?? {};
  const either = (a: RegExp | undefined, b: RegExp | undefined) =>
    a && b ? new RegExp(`${a.source}|${b.source}`) : re(a ?? b);
  const sources = either(cfg.sources, dyn.text)!;
  const numberSources = either(cfg.numberSources, dyn.number);
  const toNumber = re(cfg.toNumber);
  const sanitizers = re(cfg.sanitizers);
  const propagators = re(cfg.propagators);

  /** Does the value at `at` reach the end of the expression starting at `start`, through the calls around it? */
  const flowsOut = (start: number, at: number): boolean => {
    let depth = 0;
    for (let k = at - 1; k >= start; k--) {
      const ch = m[k]!;
      if (ch === ")" || ch === "]" || ch === "}") depth++;
      else if (ch === "(" || ch === "[" || ch === "{") {
        if (depth > 0) {
          depth--;
          continue;
        }
        if (ch !== "(") continue;
        const callee = /((?:new\s+)?[A-Za-z_][\w.:]*(?:\s*<[^<>()]*>)?)\s*$/.exec(
          m.slice(Math.max(start, k - 80), k),
        );
        if (!callee) continue; // a parenthesised expression or a cast
        const name = callee[1]!.replace(/\s+/g, " ");
        if (/^(?:if|for|while|switch|return|new)$/.test(name)) continue;
        if (!propagators!.test(name)) return false;
      }
    }
    return true;
  };

  if (cfg.paramSources)
    for (const fn of flow.functions)
      for (const p of fn.params) {
        const kind = cfg.paramSources(fn, p, src);
        if (kind) set(p.name, kind, { start: fn.bodyStart, end: fn.bodyEnd });
      }
  if (cfg.outSources)
    for (const mm of src.matches(new RegExp(cfg.outSources.source, "g"))) {
      const at = mm.index + mm[0].length;
      // Targets: identifiers after `>>`, `&x` arguments, or the first argument.
      const end = expressionEnd(src, at);
      const seg = m.slice(mm.index, end);
      const targets = [...seg.matchAll(/(?:>>|&)\s*([A-Za-z_]\w*)/g)].map((t) => t[1]!);
      if (targets.length === 0) {
        const first = /^\s*([A-Za-z_]\w*)/.exec(m.slice(at, end));
        if (first) targets.push(first[1]!);
      }
      for (const t of targets) {
        const decl = flow.assignmentsTo(t).find((a) => a.decl);
        const numeric =
          decl &&
          /^(?:(?:unsigned|signed|const)\s+)*(?:int|long|short|size_t|unsigned|float|double|u?int\d*_t|Int\d*|UInt\d*|int\d*|uint\d*)\b/.test(
            decl.type,
          );
        set(t, numeric ? "number" : "text", scopeOf(t, mm.index));
      }
    }

  const exprKind = (start: number, end: number): TaintKind | null => {
    const text = m.slice(start, end);
    // Text of the expression with literals shown, for source patterns on strings (e.g. Swift keys).
    const full = src.text.slice(start, end);
    let kind: TaintKind | null = null;
    if (sources.test(text) || sources.test(full)) kind = "text";
    else if (numberSources?.test(text)) kind = "number";
    else {
      for (const occ of text.matchAll(/(?<![\w.$])(?<!->)(?<!::)([A-Za-z_]\w*)\b(?!\s*::)/g)) {
        const id = occ[1]!;
        const k = kindOf(id, start + occ.index!);
        if (!k) continue;
        if (propagators && !flowsOut(start, start + occ.index!)) continue;
        if (k === "text") {
          kind = "text";
          break;
        }
        if (k === "number") kind = "number";
      }
    }
    if (!kind) return null;
    if (sanitizers?.test(text)) return null;
    if (toNumber?.test(text)) return "number";
    return kind;
  };

  const fieldWrites = [...memberWrites(src)].flatMap(([name, ws]) => ws.map((w) => ({ name, ...w })));
  for (let changed = true, guard = 0; changed && guard < 12; guard++) {
    changed = false;
    for (const a of flow.assignments) {
      if (a.rhsEnd <= a.rhsStart) continue;
      const k = exprKind(a.rhsStart, a.rhsEnd);
      if (k && set(a.name, k, scopeOf(a.name, a.index))) changed = true;
    }
    // `this.x = v` / `self.x = v` (not among the assignments): the field x, visible in every method.
    for (const f of fieldWrites) {
      const k = exprKind(f.rhsStart, f.rhsEnd);
      if (k && set(f.name, k, whole)) changed = true;
    }
    if (cfg.copyCalls)
      for (const mm of src.matches(new RegExp(cfg.copyCalls.source, "g"))) {
        const args = src.callArgs(mm.index + mm[0].length - 1);
        if (args.length >= 2 && args.slice(1).some((x) => exprKind(x.start, x.end))) {
          const dst = /^\s*&?\s*([A-Za-z_]\w*)/.exec(args[0]!.masked);
          if (dst && set(dst[1]!, "text", scopeOf(dst[1]!, mm.index))) changed = true;
        }
      }
  }

  const taint: Taint = {
    of: (name, at) => kindOf(name, at),
    range(start, end, kinds = ["text"]) {
      // Flow-sensitive at the sink: a variable whose last assignment before the sink (in the same
      // function) is clean, e.g. `x = html.EscapeString(x)`, is clean here.
      const fn = flow.functionAt(start);
      const cleanHere = new Set<string>();
      for (const id of new Set(identifiersIn(src, start, end))) {
        if (!kindOf(id, start)) continue;
        const defs = flow
          .assignmentsTo(id)
          .filter((a) => a.index < start && a.rhsEnd > a.rhsStart && flow.functionAt(a.index) === fn);
        let last: Assignment | undefined = defs[defs.length - 1];
        // Only a definition on every path to the sink counts (not one inside an `if` the sink is outside of).
        if (
          last &&
          flow.conditions.some(
            (c) =>
              c.bodyStart < last!.index &&
              last!.index < c.elseEnd &&
              !(c.bodyStart < start && start < c.elseEnd),
          )
        )
          last = undefined;
        if (
          last &&
          /^:?=$/.test(last.op) &&
          !/^\s*$/.test(m.slice(last.rhsStart, last.rhsEnd)) &&
          exprKind(last.rhsStart, last.rhsEnd) === null
        )
          cleanHere.add(id);
      }
      if (cleanHere.size === 0) {
        const k = exprKind(start, end);
        return k !== null && kinds.includes(k);
      }
      const saved = new Map([...cleanHere].map((id) => [id, tainted.get(id)!] as const));
      for (const id of cleanHere) tainted.delete(id);
      const k = exprKind(start, end);
      for (const [id, v] of saved) tainted.set(id, v);
      return k !== null && kinds.includes(k);
    },
    varsIn(start, end) {
      return identifiersIn(src, start, end).filter((id) => kindOf(id, start) !== null);
    },
    guarded(names, at, check) {
      if (names.length === 0) return false;
      const rel = related(flow, src, names);
      const fn = flow.functionAt(at);
      const ids = [...rel].map((n) => identRe(n));
      // A condition validates when its own text does, or when it tests a variable holding a check
      // (`boolean ok = input.matches(...); if (ok)`).
      // Emptiness and nil tests say nothing about what the value contains.
      const neutral = (text: string) =>
        text.replace(
          /(?:[!=]==?)\s*(?:""|''|nil|null|nullptr|NULL|0)(?![\w.])|(?<![\w.])(?:""|nil|null|nullptr|NULL)\s*[!=]==?|\.\s*(?:isEmpty|isBlank)\b(?:\s*\(\s*\))?|\blen\s*\([^()]*\)\s*(?:[=!<>]=?|>)\s*0\b|\.\s*(?:length|size)\s*\(\s*\)\s*(?:[=!<>]=?|>)\s*0\b/g,
          " ",
        );
      const validates = (start: number, end: number) => {
        const cond = neutral(m.slice(start, end));
        if (check.test(cond) || check.test(neutral(src.text.slice(start, end)))) return true;
        return [...rel].some(
          (v) =>
            identRe(v).test(cond) &&
            flow
              .assignmentsTo(v)
              .some(
                (a) =>
                  a.rhsEnd > a.rhsStart &&
                  (check.test(m.slice(a.rhsStart, a.rhsEnd)) ||
                    check.test(src.text.slice(a.rhsStart, a.rhsEnd))),
              ),
        );
      };
      // `sink(ok ? value : fallback)` on the sink's own statement.
      const stmtEnd = expressionEnd(src, at);
      const stmt = m.slice(at, stmtEnd);
      const q = stmt.indexOf("?");
      if (q > 0 && ids.some((r) => r.test(stmt.slice(0, q))) && validates(at, at + q)) return true;
      for (const c of flow.conditions) {
        if (c.start > at) continue;
        if (fn && c.start < fn.bodyStart) continue;
        const cond = m.slice(c.start, c.end);
        if (!ids.some((r) => r.test(cond))) continue;
        if (!validates(c.start, c.end)) continue;
        const inside = c.bodyStart <= at && at <= c.elseEnd;
        const after = (c.exits || c.kind === "guard") && c.bodyEnd < at;
        // `if (!valid(x)) x = fallback;` replaces a bad value before the sink.
        const replaced =
          c.bodyEnd < at &&
          [...rel].some((v) =>
            new RegExp(`(?<![\\w.])${v}\\s*=(?!=)`).test(m.slice(c.bodyStart, c.bodyEnd + 1)),
          );
        if (inside || after || replaced) return true;
      }
      return false;
    },
  };
  perSrc.set(cfg, taint);
  return taint;
}

/**
 * Is the code at `at` guarded by a condition matching `check`: inside its block (or else block), or
 * after a block that leaves (return/throw/break...), or an early-exit guard? Conditions of other
 * functions do not count.
 */
export function guardedBy(src: Source, at: number, check: RegExp): boolean {
  const flow = flowOf(src);
  const fn = flow.functionAt(at);
  const re = new RegExp(check.source, check.flags.replace("g", ""));
  for (const c of flow.conditions) {
    if (c.start > at) continue;
    if (fn && c.start < fn.bodyStart) continue;
    if (!re.test(src.masked.slice(c.start, c.end)) && !re.test(src.text.slice(c.start, c.end))) continue;
    const inside = c.bodyStart <= at && at <= c.elseEnd;
    const after = (c.exits || c.kind === "guard") && c.bodyEnd < at;
    if (inside || after) return true;
  }
  // A ternary `cond ? a : b` on the same statement.
  const stmtStart =
    Math.max(
      src.masked.lastIndexOf(";", at),
      src.masked.lastIndexOf("{", at),
      src.masked.lastIndexOf("}", at),
    ) + 1;
  const stmt = src.masked.slice(stmtStart, at);
  return /\?/.test(stmt) && re.test(stmt);
}

// ------------------------------------------------------------------------------------------------
// Constants

/** A value fixed in the snippet: string literals (joined by `+`), or a list of number literals (key bytes). */
export interface ConstantValue {
  /** The string literals it is made of, in order; empty for a list of numbers. */
  parts: StringLiteral[];
  /** The literals' contents joined; the list's text for numbers. */
  value: string;
  /** A list of number literals (`{0x01, 0x02}`, `[]byte{1, 2}`, `[0x01, 0x02]`). */
  bytes: boolean;
  /** The variables and constants followed to reach it, nearest first (empty: a literal written at the use). */
  via: string[];
}

/**
 * Value-preserving wrappers each language writes around a string: conversions to bytes, characters or
 * C strings, casts, a force unwrap. Stripped before asking what an expression holds.
 */
const WRAP_CALL: Record<SafetyLanguage, RegExp> = {
  cpp: /^(?:std\s*::\s*)?(?:string|string_view|wstring|reinterpret_cast\s*<[^<>]*>|static_cast\s*<[^<>]*>|const_cast\s*<[^<>]*>|\((?:const\s+)?(?:unsigned\s+)?(?:char|uint8_t|u_char|byte|void|BYTE|UCHAR)\s*(?:const\s*)?\*\s*\))\s*$/,
  java: /^(?:String\s*\.\s*valueOf|new\s+String|\(\s*(?:byte|char)\s*\[\s*\]\s*\)|(?:java\s*\.\s*util\s*\.\s*)?Base64\s*\.\s*get(?:Mime|Url)?(?:En|De)coder\s*\(\s*\)\s*\.\s*(?:encodeToString|encode|decode))\s*$/,
  go: /^(?:\[\]\s*byte|string|\[\]\s*rune|base64\s*\.\s*(?:Std|URL|RawStd|RawURL)Encoding\s*\.\s*EncodeToString)\s*$/,
  swift: /^(?:Data|Array|\[UInt8\]|String|ContiguousArray)\s*$/,
};
const WRAP_SUFFIX =
  /\s*(?:\.\s*(?:getBytes|toCharArray|c_str|data|utf8|bytes|utf8CString|toByteArray|encodeToByteArray|base64EncodedString)\b(?:\s*\((?:[^()]|\([^()]*\))*\))?|!)\s*$/;
/** Calls that read into an argument or take its address: the variable's value then comes from elsewhere. */
const WRITES_ARG =
  /\b(?:getline|gets|fgets|scanf|sscanf|fscanf|strn?cpy|strn?cat|strlcpy|strlcat|memcpy|memmove|sprintf|snprintf|read|fread|recv|Scan\w*|Read\w*|Unmarshal|Decode|swap)\s*\(/;

/** The "(" of the outermost call: past empty `()` pairs of a chain (`Base64.getEncoder().encode(`). */
function wrapOpen(text: string): number {
  const chain = /^[\w.\s]*(?:\(\s*\)[\w.\s]*)*/.exec(text)![0];
  return text[chain.length] === "(" ? chain.length : text.indexOf("(");
}

/**
 * A Swift interpolated literal whose interpolations are all fixed (`"Bearer \(k)"`, k a constant): the
 * literal's text pieces and the values' parts, joined.
 */
function interpolatedValue(src: Source, lit: StringLiteral, depth: number): ConstantValue | null {
  const t = src.text;
  const contentStart = lit.start + (t.startsWith('"""', lit.start) ? 3 : 1);
  if (t.slice(contentStart, contentStart + lit.value.length) !== lit.value) return null; // raw #"..."# strings
  const parts: StringLiteral[] = [];
  const via: string[] = [];
  let value = "";
  let k = contentStart;
  let from = k;
  const contentEnd = contentStart + lit.value.length;
  const piece = (a: number, b: number) => {
    if (b > a) parts.push({ start: a, end: b, value: t.slice(a, b), interpolated: false });
    value += t.slice(a, b);
  };
  while (k < contentEnd) {
    if (t[k] === "\\" && t[k + 1] === "(") {
      piece(from, k);
      let d = 1;
      let j = k + 2;
      while (j < contentEnd && d > 0) {
        if (t[j] === "(") d++;
        else if (t[j] === ")") d--;
        j++;
      }
      const v = constantValue(src, k + 2, j - 1, depth + 1);
      if (!v || v.bytes) return null;
      parts.push(...v.parts);
      via.push(...v.via);
      value += v.value;
      k = from = j;
      continue;
    }
    k += t[k] === "\\" ? 2 : 1;
  }
  piece(from, contentEnd);
  return { parts, value, bytes: false, via: [...new Set(via)] };
}

/** Fixed strings one after the other: their parts and texts in order, the names followed to any of them. */
function joinValues(vs: ConstantValue[]): ConstantValue {
  return {
    parts: vs.flatMap((v) => v.parts),
    value: vs.map((v) => v.value).join(""),
    bytes: false,
    via: [...new Set(vs.flatMap((v) => v.via))],
  };
}

/** Calls that build a string from a format and arguments, per language; `label` is Swift's `format:`. */
const FORMAT_CALL: Record<SafetyLanguage, RegExp> = {
  cpp: /^(?:std\s*::\s*|fmt\s*::\s*)format$/,
  java: /^String\s*\.\s*format$/,
  go: /^fmt\s*\.\s*Sprintf$/,
  swift: /^(?:String|NSString)$/,
};
/** Calls that join their arguments: absl::StrCat("Bearer ", k). */
const CONCAT_CALL = /^(?:absl\s*::\s*)?StrCat$/;
/** printf-style placeholders (`%s`, `%1$s`, `%@`, `%%`); std::format's (`{}`, `{0}`, `{:>8}`, `{{`) in C++. */
const PRINTF_SPEC = /%%|%(?:(\d+)\$)?[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t|L|q)?[sdiuvxXfFeEgGcq@]/g;
const BRACE_SPEC = /\{\{|\}\}|\{()(\d*)(?::[^{}]*)?\}/g;

/**
 * A string formatted from a fixed format and fixed arguments (`fmt.Sprintf("Bearer %s", k)`,
 * `String.format("Bearer %s", TOKEN)`, `String(format: "Bearer %@", k)`, `std::format("Bearer {}", k)`,
 * `absl::StrCat("Bearer ", k)`): the text it builds. `undefined` when the expression is no such call,
 * null when it is one but something in it is not fixed.
 */
export function formattedValue(
  src: Source,
  start: number,
  end: number,
  depth: number,
): ConstantValue | null | undefined {
  const m = src.masked;
  const open = m.indexOf("(", start);
  if (open < 0 || open >= end || m[end - 1] !== ")") return undefined;
  const head = /^([A-Za-z_][\w.:\s]*?)\s*\($/.exec(m.slice(start, open + 1));
  if (!head || matchBracket(src, open) !== end - 1) return undefined;
  const callee = head[1]!;
  const concat = src.lang === "cpp" && CONCAT_CALL.test(callee);
  if (!concat && !FORMAT_CALL[src.lang].test(callee)) return undefined;
  let args = src.callArgs(open);
  if (src.lang === "swift") {
    const label = args[0] && /^\s*format\s*:\s*/.exec(args[0].masked);
    if (!label) return undefined;
    args = [{ ...args[0]!, start: args[0]!.start + args[0]!.masked.indexOf(":") + 1 }, ...args.slice(1)];
  }
  if (args.length === 0) return null;
  const vals = args.map((a) => constantValue(src, a.start, a.end, depth + 1));
  if (vals.some((v) => v === null || v.bytes)) return null;
  if (concat) return joinValues(vals as ConstantValue[]);
  const [format, ...rest] = vals as ConstantValue[];
  return applyFormat(src, format!, rest, start);
}

/** The text a format builds from fixed arguments; null when a placeholder has no argument. */
function applyFormat(
  src: Source,
  format: ConstantValue,
  rest: ConstantValue[],
  start: number,
): ConstantValue | null {
  const at = format.parts[0]?.start ?? start;
  const pieces: ConstantValue[] = [];
  const text = (value: string): ConstantValue => ({
    parts: value ? [{ start: at, end: at, value, interpolated: false }] : [],
    value,
    bytes: false,
    via: [],
  });
  let next = 0;
  let from = 0;
  const braces = src.lang === "cpp" && !/%/.test(format.value);
  for (const spec of format.value.matchAll(braces ? BRACE_SPEC : PRINTF_SPEC)) {
    pieces.push(text(format.value.slice(from, spec.index)));
    from = spec.index + spec[0].length;
    if (spec[0] === "%%") pieces.push(text("%"));
    else if (spec[0] === "{{" || spec[0] === "}}") pieces.push(text(spec[0][0]!));
    else {
      // `%2$s` counts from 1, `{1}` from 0.
      const arg = spec[1] ? rest[Number(spec[1]) - 1] : spec[2] ? rest[Number(spec[2])] : rest[next++];
      if (!arg) return null;
      pieces.push(arg);
    }
  }
  pieces.push(text(format.value.slice(from)));
  return { ...joinValues(pieces), via: [...new Set([...format.via, ...rest.flatMap((v) => v.via)])] };
}

function trimRange(m: string, start: number, end: number): [number, number] {
  while (start < end && /\s/.test(m[start]!)) start++;
  while (end > start && /[\s;]/.test(m[end - 1]!)) end--;
  return [start, end];
}

/** Split [start, end) at top-level occurrences of `sep` (masked view). */
function splitTopAt(src: Source, start: number, end: number, sep: string): [number, number][] {
  const m = src.masked;
  const out: [number, number][] = [];
  let depth = 0;
  let from = start;
  for (let k = start; k < end; k++) {
    const ch = m[k]!;
    if (OPEN[ch]) depth++;
    else if (CLOSE.has(ch)) depth--;
    else if (depth === 0 && ch === sep && m[k + 1] !== sep && m[k - 1] !== sep && m[k + 1] !== "=") {
      out.push([from, k]);
      from = k + 1;
    }
  }
  out.push([from, end]);
  return out;
}

/**
 * What the expression in [start, end) holds when it is fixed by the snippet itself: a string literal, a
 * concatenation of them, a list of number literals, or a variable or constant whose every assignment
 * that can reach `start` is one of those (followed through further variables, through value-preserving
 * wrappers such as `.getBytes()`, `[]byte(...)`, `.c_str()`, `Data(....utf8)`, `self.`/`this.`). A
 * variable assigned anything else before the use (an environment read, a parameter, a call), read into
 * (`cin >> x`, `fgets(x, ...)`, `&x`), a loop variable or a parameter is not constant. Within a function,
 * the assignments before the use decide (all must be constant; the last gives the value); a name with
 * none there is looked up outside functions (fields, package constants, `#define`), and every
 * re-assignment of it in a function must then be constant too.
 */
export function constantValue(src: Source, start: number, end: number, depth = 0): ConstantValue | null {
  if (depth > 12) return null; // a cycle guard: wrappers, parentheses and variables each take a level
  const m = src.masked;
  [start, end] = trimRange(m, start, end);
  if (end <= start) return null;
  // Outer parentheses.
  if (m[start] === "(" && matchBracket(src, start) === end - 1)
    return constantValue(src, start + 1, end - 1, depth + 1);
  // A literal, optionally with a C++/Objective-C prefix.
  const lit = src.literalAt(start + (/^(?:u8|[LuU@])(?=")/.exec(m.slice(start, start + 3))?.[0].length ?? 0));
  if (lit && lit.end === end)
    return lit.interpolated
      ? interpolatedValue(src, lit, depth)
      : { parts: [lit], value: lit.value, bytes: false, via: [] };
  const text = m.slice(start, end);
  // Formatted strings: fmt.Sprintf("Bearer %s", k), String.format(...), String(format:...), std::format(...).
  const formatted = formattedValue(src, start, end, depth);
  if (formatted !== undefined) return formatted;
  // Suffix wrappers: "k".getBytes(), key.c_str(), s.data(using: .utf8)!, s.utf8
  const suffix = WRAP_SUFFIX.exec(text);
  if (suffix && suffix.index > 0) return constantValue(src, start, start + suffix.index, depth + 1);
  // Call or cast wrappers: []byte("k"), std::string("k"), Data("k".utf8), (unsigned char*)key
  const open = wrapOpen(text);
  if (open > 0 && WRAP_CALL[src.lang].test(text.slice(0, open))) {
    const close = matchBracket(src, start + open);
    if (close === end - 1) {
      const args = src.callArgs(start + open);
      return args.length === 1 ? constantValue(src, args[0]!.start, args[0]!.end, depth + 1) : null;
    }
  }
  const cast =
    /^\((?:const\s+)?(?:unsigned\s+)?(?:char|uint8_t|u_char|byte|void|BYTE|UCHAR)\s*(?:const\s*)?\*\s*\)\s*/.exec(
      text,
    );
  if (cast && src.lang === "cpp") return constantValue(src, start + cast[0].length, end, depth + 1);
  // A list of number literals: {0x00, 0x01}, []byte{1, 2}, new byte[]{...}, [0x01, 0x02], [UInt8] = [...]
  const list = /^(?:new\s+byte\s*\[\s*\]\s*|\[\]\s*(?:byte|uint8)\s*)?([{[])([\s\S]*)[}\]]$/.exec(text);
  if (
    list &&
    /^\s*(?:\(?\s*(?:byte|uint8_t|char)\s*\)\s*)?(?:0[xX][0-9a-fA-F]+|\d+|'.'|''|'\s*')(?:\s*,\s*(?:\(?\s*(?:byte|uint8_t|char)\s*\)\s*)?(?:0[xX][0-9a-fA-F]+|\d+|'.?'|'\s*'))*\s*,?\s*$/.test(
      list[2]!,
    )
  )
    return { parts: [], value: src.text.slice(start, end), bytes: true, via: [] };
  // Concatenation of constants.
  if (!/^[\w.]+$/.test(text)) {
    const pieces = splitTopAt(src, start, end, "+");
    if (pieces.length < 2) return null;
    const vals = pieces.map(([a, b]) => constantValue(src, a, b, depth + 1));
    if (vals.some((v) => v === null || v.bytes)) return null;
    return joinValues(vals as ConstantValue[]);
  }
  // A variable or constant: `key`, `self.key`, `this.KEY`, `Config.KEY` is not followed (another type).
  const ident = /^(?:(?:self|this)\s*\.\s*)?([A-Za-z_]\w*)$/.exec(text);
  if (!ident || /^(?:null|nil|nullptr|NULL|true|false|None|undefined|iota)$/.test(ident[1]!)) return null;
  const name = ident[1]!;
  const v = constantOfName(src, name, start, depth);
  return v && { ...v, via: [name, ...v.via] };
}

const writtenCache = new WeakMap<Source, Set<string>>();

/** Names read into or passed by address anywhere: `cin >> key`, `fgets(key, ...)`, `&key`, `Scan(&key)`. */
function writtenInPlace(src: Source): Set<string> {
  let out = writtenCache.get(src);
  if (out) return out;
  out = new Set<string>();
  for (const w of src.masked.matchAll(/(?:>>|(?<!&)&)\s*([A-Za-z_]\w*)\b/g)) out.add(w[1]!);
  for (const call of src.matches(new RegExp(WRITES_ARG.source, "g"))) {
    const args = src.callArgs(call.index + call[0].length - 1);
    // These write their first argument only; the rest (a format's arguments, a copy's source) are read.
    const destFirst = /^(?:sn?printf|str[nl]?cpy|str[nl]?cat|memcpy|memmove)\s*\($/.test(
      call[0].replace(/^\W*/, ""),
    );
    for (const a of destFirst ? args.slice(0, 1) : args) {
      const arg = /^(?:&\s*)?([A-Za-z_]\w*)$/.exec(a.masked.trim());
      if (arg) out.add(arg[1]!);
    }
  }
  writtenCache.set(src, out);
  return out;
}

/**
 * A C buffer filled once by sprintf/snprintf before `at` (`snprintf(h, sizeof h, "Authorization: Bearer %s",
 * TOKEN)`) and written no other way: the text it holds when the format and its arguments are fixed.
 * `undefined` when no sprintf writes it.
 */
function printedInto(src: Source, name: string, at: number, depth: number): ConstantValue | null | undefined {
  if (src.lang !== "cpp") return undefined;
  const calls = src
    .matches(/\b(?:std\s*::\s*)?(sn?printf)(_s)?\s*\(/g)
    .map((c) => ({ c, args: src.callArgs(c.index + c[0].length - 1) }))
    .filter(({ args }) => args[0]?.masked.trim() === name);
  if (calls.length === 0) return undefined;
  const m = src.masked;
  // Other writes: `>> h`, `&h`, any other reading call given `h`, an assignment with a value.
  if (new RegExp(`(?:>>|(?<!&)&)\\s*${name}\\b`).test(m)) return null;
  for (const w of src.matches(new RegExp(WRITES_ARG.source, "g")))
    if (
      !calls.some(({ c }) => c.index === w.index) &&
      src
        .callArgs(w.index + w[0].length - 1)
        .some((a) => /^(?:&\s*)?([A-Za-z_]\w*)$/.exec(a.masked.trim())?.[1] === name)
    )
      return null;
  const flow = flowOf(src);
  if (flow.assignmentsTo(name).some((a) => a.rhsEnd > a.rhsStart)) return null;
  if (
    calls.length !== 1 ||
    calls[0]!.c.index > at ||
    flow.functionAt(calls[0]!.c.index) !== flow.functionAt(at)
  )
    return null;
  const { c, args } = calls[0]!;
  const sized = c[1] === "snprintf" || c[2] === "_s";
  const vals = args.slice(sized ? 2 : 1).map((a) => constantValue(src, a.start, a.end, depth + 1));
  if (vals.length === 0 || vals.some((v) => v === null || v.bytes)) return null;
  const [format, ...rest] = vals as ConstantValue[];
  return applyFormat(src, format!, rest, c.index);
}

/** Each assignment's value, or null at the first one that is not fixed (without evaluating the rest). */
function allValues<A>(defs: A[], value: (a: A) => ConstantValue | null): ConstantValue[] | null {
  const out: ConstantValue[] = [];
  for (const a of defs) {
    const v = value(a);
    if (v === null) return null;
    out.push(v);
  }
  return out;
}

const memberWriteCache = new WeakMap<Source, Map<string, { rhsStart: number; rhsEnd: number }[]>>();

/** Per member name, the right-hand sides of `self.x = ...` / `this.x = ...` anywhere in the snippet (one scan). */
export function memberWrites(src: Source): Map<string, { rhsStart: number; rhsEnd: number }[]> {
  let out = memberWriteCache.get(src);
  if (out) return out;
  out = new Map();
  const newlineEnds = src.lang === "swift" || src.lang === "go";
  for (const w of src.masked.matchAll(/\b(?:self|this)\s*\.\s*([A-Za-z_]\w*)\s*=(?!=)/g)) {
    const rhsStart = w.index + w[0].length;
    const list = out.get(w[1]!) ?? [];
    list.push({ rhsStart, rhsEnd: expressionEnd(src, rhsStart, { newlineEnds }) });
    out.set(w[1]!, list);
  }
  memberWriteCache.set(src, out);
  return out;
}

const constantOfNameCache = new WeakMap<Source, Map<string, ConstantValue | null>>();

/** constantOfNameUncached, remembered per snippet: rules ask for the same names at the same places many times. */
function constantOfName(src: Source, name: string, at: number, depth: number): ConstantValue | null {
  let cache = constantOfNameCache.get(src);
  if (!cache) constantOfNameCache.set(src, (cache = new Map()));
  const key = `${name}\0${at}\0${depth}`;
  if (cache.has(key)) return cache.get(key)!;
  const v = constantOfNameUncached(src, name, at, depth);
  cache.set(key, v);
  return v;
}

function constantOfNameUncached(src: Source, name: string, at: number, depth: number): ConstantValue | null {
  const m = src.masked;
  const flow = flowOf(src);
  const id = name.replace(/\$/g, "\\$");
  const printed = printedInto(src, name, at, depth);
  if (printed !== undefined) return printed;
  if (writtenInPlace(src).has(name)) return null;
  // Swift/Java/C++ members written as `self.key = ...` / `this.key = ...` anywhere.
  const memberWritesOfName = memberWrites(src).get(name) ?? [];
  const value = (a: { rhsStart: number; rhsEnd: number }) =>
    a.rhsEnd > a.rhsStart ? constantValue(src, a.rhsStart, a.rhsEnd, depth + 1) : null;
  const defs = flow.assignmentsTo(name);
  if (defs.some((a) => a.op === "in" || (a.op !== "=" && a.op !== ":=" && a.op !== ""))) return null;
  const fn = flow.functionAt(at);
  if (fn) {
    const local = defs.filter(
      (a) => a.index < at && flow.functionAt(a.index) === fn && a.rhsEnd > a.rhsStart,
    );
    // A parameter of this function (or of one around it) holds the caller's value.
    const param = flow.functions.some(
      (f) => f.bodyStart <= at && at <= f.bodyEnd && f.params.some((p) => p.name === name),
    );
    if (local.length > 0) {
      if (memberWritesOfName.length > 0) return null;
      const vals = allValues(local, value);
      if (!vals) return null;
      // `if (iv == null) iv = ZERO_IV;` on a parameter: the caller's value still reaches the use.
      const last = local[local.length - 1]!;
      const onOnePath = flow.conditions.some(
        (c) => c.bodyStart < last.index && last.index <= c.elseEnd && !(c.bodyStart < at && at <= c.elseEnd),
      );
      return param && onOnePath ? null : vals[vals.length - 1]!;
    }
    if (param) return null;
    // Declared here without a value and filled some other way.
    if (defs.some((a) => a.decl && flow.functionAt(a.index) === fn && a.index < at)) return null;
  }
  // Fields, globals, package constants, C macros.
  if (src.lang === "cpp") {
    const macro = new RegExp(`#[ \\t]*define[ \\t]+${id}[ \\t]+([^\\n]+)`).exec(m);
    if (macro) {
      const s = macro.index + macro[0].length - macro[1]!.length;
      return constantValue(src, s, s + macro[1]!.trimEnd().length, depth + 1);
    }
  }
  const outside = defs.filter((a) => flow.functionAt(a.index) === undefined && a.rhsEnd > a.rhsStart);
  // Re-assignments (not new local declarations) inside functions write the same field or global.
  const inside = defs.filter(
    (a) => flow.functionAt(a.index) !== undefined && !a.decl && a.rhsEnd > a.rhsStart,
  );
  if (outside.length === 0) return null;
  return allValues([...outside, ...inside, ...memberWritesOfName], value)?.[0] ?? null;
}
